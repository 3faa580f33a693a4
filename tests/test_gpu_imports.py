"""What runs on a GPU machine imports without the crawl's and the UI's libraries: the GPU image
has torch, triton, transformers, numpy, scipy and pyarrow, but no dagster, polars, fasttext,
wandb, matplotlib, resiliparse or fastwarc."""

import subprocess
import sys

ABSENT = ("dagster", "polars", "fasttext", "wandb", "matplotlib", "resiliparse", "fastwarc",
          "datasketch")
GPU_MODULES = ("lmlib.align", "lmlib.eval", "lmlib.tasks", "lmlib.hf", "lmlib.infer",
               "lmlib.train", "lmlib.kernels", "lmlib.model", "lmlib.optim", "lmlib.tokenizer")


def test_gpu_side_modules_import_without_the_cpu_side_libraries():
    script = (f"import sys\nfor name in {ABSENT!r}:\n    sys.modules[name] = None\n"
              + "".join(f"import {module}\n" for module in GPU_MODULES))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
