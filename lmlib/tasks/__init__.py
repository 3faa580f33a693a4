"""Tasks to train and evaluate on: benchmark loaders and a synthetic task of our own.

Notable:
- benchmarks from local files in their published formats: MMLU's original CSVs
  (`load_mmlu`), GSM8K's jsonl (`load_gsm8k`), MATH and MATH-500 in any of their jsonl shapes
  (`load_math`, with `last_boxed_answer` for answers inside \\boxed{...});
- prompts character for character as EleutherAI's lm-evaluation-harness builds them
  (`mmlu_prompt` with `MMLU_CONTINUATIONS`, `gsm8k_prompt`, `math_prompt` with the four Minerva
  shots); each module quotes the harness templates it follows and names their files;
- `download_mmlu`, `download_gsm8k`, `download_math`, `download_math500`: the published files,
  atomically and checksummed where a pin is known, from a `base_url` that tests point at a
  local server; the loaders never touch the network;
- `make_arithmetic`: multi-digit arithmetic generated from a seed, train/val/test disjoint by
  operand pair, with the exact checker `check_arithmetic`; small enough for a tiny model to
  learn, so the embedded default and the post-training work share one verifiable task.
Loaders, prompts and the synthetic task use the standard library alone; downloads go through
`lmlib.download.download_file`, the resumable, verified download the crawl uses too.
"""

from lmlib.download import DownloadError
from lmlib.tasks.arithmetic import (
    ArithmeticConfig,
    ArithmeticExample,
    arithmetic_example,
    check_arithmetic,
    make_arithmetic,
)
from lmlib.tasks.competition_math import (
    MATH_STOP_SEQUENCES,
    MINERVA_SHOTS,
    MathExample,
    last_boxed_answer,
    load_math,
    math_prompt,
)
from lmlib.tasks.download import (
    GSM8K_URL,
    MATH500_URL,
    MATH_URL,
    MMLU_URL,
    download,
    download_gsm8k,
    download_math,
    download_math500,
    download_mmlu,
    extract_mmlu,
)
from lmlib.tasks.gsm8k import GSM8K_STOP_SEQUENCES, GSM8KExample, gsm8k_prompt, load_gsm8k
from lmlib.tasks.mmlu import (
    MMLU_CONTINUATIONS,
    MMLU_SPLITS,
    MMLU_SUBJECTS,
    MMLUExample,
    load_mmlu,
    mmlu_prompt,
    mmlu_shots,
)

__all__ = [
    "ArithmeticConfig", "ArithmeticExample", "arithmetic_example", "check_arithmetic",
    "make_arithmetic",
    "MATH_STOP_SEQUENCES", "MINERVA_SHOTS", "MathExample", "last_boxed_answer", "load_math",
    "math_prompt",
    "DownloadError", "GSM8K_URL", "MATH500_URL", "MATH_URL", "MMLU_URL", "download",
    "download_gsm8k", "download_math", "download_math500", "download_mmlu", "extract_mmlu",
    "GSM8K_STOP_SEQUENCES", "GSM8KExample", "gsm8k_prompt", "load_gsm8k",
    "MMLU_CONTINUATIONS", "MMLU_SPLITS", "MMLU_SUBJECTS", "MMLUExample", "load_mmlu",
    "mmlu_prompt", "mmlu_shots",
]
