"""fastText plumbing shared by language ID, harmful-content and quality classifiers.

- One loaded model per path per process (`load_fasttext_model`), so a worker pays the load once.
- `predict_top_label` calls the C++ predictor directly: the Python wrapper's numpy conversion is
  the slow part for one-document calls, and it fails under numpy 2 in some fasttext builds.
- `train_fasttext_classifier` writes the `__label__x text` file fastText wants and trains with
  one thread and a fixed seed, so the same inputs give the same model bytes. fastText 0.9.2
  initializes only the first 10% of the input matrix when thread < 10 (its uniform init splits
  the matrix into 10 blocks, one per thread) and leaves the rest as whatever malloc returns:
  recycled heap memory made training random and often fail with "Encountered NaN". While
  training we lower glibc's mmap threshold so the matrix comes from fresh, zero-filled pages:
  the rest starts at zero (as fastText's output matrix does), deterministically. Even so, this
  build fails at random with "Encountered NaN" when the input matrix is tiny (measured: bucket
  1000-2000 at dim 16 on a 40-word vocabulary; bucket >= 5000 never did), so training retries
  up to three times on NaN and the error says to enlarge `bucket`.
- `download_file` is a plain, resumable-free HTTP(S) download with a tqdm progress bar, a sha256
  check when the digest is known, written through `lmlib.artifacts.atomic_file`: a
  half-downloaded model never sits at the final path.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lmlib.artifacts import atomic_file, sha256_file
from lmlib.home import lmpipe_home

_LOADED_MODELS: dict[str, Any] = {}

# Small enough to train in seconds and to keep the model file in the tens of MB; callers override.
DEFAULT_TRAIN_PARAMS: dict[str, Any] = {
    "lr": 0.1,  # higher rates diverge (NaN) on small, repetitive training sets
    "epoch": 25,
    "wordNgrams": 2,
    "dim": 32,
    "bucket": 100_000,
    "minCount": 1,
    "loss": "softmax",
    "thread": 1,  # more threads make fastText training non-deterministic
    "seed": 0,
    "verbose": 0,
}


def default_model_cache_dir() -> Path:
    """Where downloaded models live: $LMPIPE_MODEL_CACHE, else $LMPIPE_HOME/models."""
    if os.environ.get("LMPIPE_MODEL_CACHE"):
        return Path(os.environ["LMPIPE_MODEL_CACHE"])
    return lmpipe_home() / "models"


def load_fasttext_model(path: str | Path) -> Any:
    """Load a fastText model once per process and path."""
    key = str(Path(path).resolve())
    model = _LOADED_MODELS.get(key)
    if model is None:
        if not Path(key).is_file():
            raise FileNotFoundError(f"fastText model not found: {key}")
        import fasttext  # lazy: lmlib.web must import without fasttext for the readers

        fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load_model warning
        model = fasttext.load_model(key)
        _LOADED_MODELS[key] = model
    return model


def to_single_line(text: str) -> str:
    """fastText predicts on one line: newlines become spaces (fastText splits on other whitespace
    itself; a newline would otherwise end the input or count as an end-of-sentence token)."""
    return text.replace("\n", " ")


def predict_top_label(model: Any, text: str) -> tuple[str, float]:
    """Top label without the `__label__` prefix and its probability as a float in [0, 1]."""
    predictions = model.f.predict(to_single_line(text) + "\n", 1, 0.0, "replace")
    if not predictions:  # empty text: fastText returns nothing
        return "", 0.0
    probability, label = predictions[0]
    return label.removeprefix("__label__"), min(1.0, max(0.0, float(probability)))


def label_probability(model: Any, text: str, label: str) -> float:
    """Probability of one label (0.0 when fastText does not rank it at all)."""
    for probability, name in model.f.predict(to_single_line(text) + "\n", -1, 0.0, "replace"):
        if name.removeprefix("__label__") == label:
            return min(1.0, max(0.0, float(probability)))
    return 0.0


def train_fasttext_classifier(
    examples: Iterable[tuple[str, str]], out_path: str | Path, **fasttext_params: Any
) -> Any:
    """Train a supervised fastText model on (label, text) pairs and save it to `out_path`."""
    import fasttext

    params = {**DEFAULT_TRAIN_PARAMS, **fasttext_params}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fasttext-train-") as tmp:
        train_file = Path(tmp) / "train.txt"
        lines = 0
        with train_file.open("w", encoding="utf-8") as handle:
            for label, text in examples:
                line = to_single_line(text).strip()
                if line:
                    handle.write(f"__label__{label} {line}\n")
                    lines += 1
        if lines == 0:
            raise ValueError("no non-empty training texts given to the fastText classifier")
        # A fresh interpreter: see lmlib/web/fasttext_train_worker.py for why.
        result = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("fasttext_train_worker.py")),
             str(train_file), str(out_path), json.dumps(params)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"fastText training failed with {params}: {result.stderr.strip()}")
    model = fasttext.load_model(str(out_path))
    _LOADED_MODELS.pop(str(out_path.resolve()), None)  # a retrained file must be reloaded
    return model


def download_file(
    url: str,
    destination: str | Path,
    *,
    sha256: str | None = None,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `destination` atomically; verify sha256 when given. Returns the path.

    An existing file with the right digest (or any existing file when no digest is known) is
    reused without touching the network.
    """
    destination = Path(destination)
    if destination.is_file() and (sha256 is None or sha256_file(destination) == sha256):
        return destination
    from tqdm import tqdm

    digest = hashlib.sha256()
    with atomic_file(destination) as temporary, open(temporary, "wb") as out, \
            urllib.request.urlopen(url, timeout=timeout_s) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name,
                  disable=not progress) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
        if total is not None and out.tell() != total:
            raise OSError(f"download of {url} stopped at {out.tell()} of {total} bytes")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(
                f"sha256 mismatch for {url}: got {digest.hexdigest()}, expected {sha256}; "
                "the file was not kept"
            )
    return destination
