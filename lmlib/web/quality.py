"""Quality classifier: fastText trained to tell reference-quality text ("wiki") from crawl ("cc").

- Positives are high-quality reference documents (the embedded reference set by default),
  negatives a sample of crawled documents; both are lower-cased and cut to their first
  `max_chars` characters, so long pages do not dominate training and prediction stays fast.
- Training is reproducible: a seeded shuffle, a seeded held-out split, one fastText thread.
  `QualityClassifierConfig` holds the one set of training defaults.
- `classify_quality(text, model_path)` returns ("wiki" | "cc", probability of that label); the
  model is always explicit (an argument, or a default set with `use_quality_model`); the filter
  uses p(wiki) against a threshold.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from lmlib.formats import QUALITY_MODEL_FILE, QUALITY_REFERENCE_FILE
from lmlib.stage import StageResult, check_positive
from lmlib.web.fasttext_models import (
    label_probability,
    load_fasttext_model,
    predict_top_label,
    train_fasttext_classifier,
)

HIGH_QUALITY_LABEL = "wiki"
LOW_QUALITY_LABEL = "cc"
DEFAULT_MAX_CHARS = 10_000


def prepare_quality_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    return text[:max_chars].lower().replace("\n", " ")


class QualityClassifier:
    """A trained quality model; loaded once per process and path."""

    def __init__(self, model_path: str | Path, max_chars: int = DEFAULT_MAX_CHARS):
        self.model_path = Path(model_path)
        self.max_chars = max_chars
        self.model = load_fasttext_model(self.model_path)

    def predict(self, text: str) -> tuple[str, float]:
        return predict_top_label(self.model, prepare_quality_text(text, self.max_chars))

    def high_quality_probability(self, text: str) -> float:
        return label_probability(
            self.model, prepare_quality_text(text, self.max_chars), HIGH_QUALITY_LABEL
        )


def _binary_metrics(truth: list[bool], predicted: list[bool]) -> dict[str, float]:
    true_pos = sum(t and p for t, p in zip(truth, predicted))
    false_pos = sum((not t) and p for t, p in zip(truth, predicted))
    false_neg = sum(t and not p for t, p in zip(truth, predicted))
    correct = sum(t == p for t, p in zip(truth, predicted))
    return {
        "precision": true_pos / (true_pos + false_pos) if true_pos + false_pos else 0.0,
        "recall": true_pos / (true_pos + false_neg) if true_pos + false_neg else 0.0,
        "accuracy": correct / len(truth) if truth else 0.0,
    }


@dataclass
class QualityClassifierConfig:
    """How `build_quality_classifier` trains the wiki-vs-cc model: the one source of its
    fastText parameters (the rest are `fasttext_models.DEFAULT_TRAIN_PARAMS`).

    Few epochs, a low rate and unigrams give graded scores. The negatives are the very documents
    the filter then scores, so a model that separates the sets perfectly (lr 0.5, 50 epochs,
    bigrams reached held-out accuracy 1.0 on 106 enwiki articles vs 129 crawl pages, 4 of 4
    seeds) memorizes them and scores every crawled page near 0."""

    reference_path: str | None = None  # JSONL(.gz), a "text" per line; None: the crawl's own
    negative_sample: int = 1000  # crawled documents drawn as negatives (seeded)
    held_out_fraction: float = 0.2  # of each class, for the held-out precision/recall
    seed: int = 0  # the sample, the split and the shuffle
    epoch: int = 5
    lr: float = 0.1
    word_ngrams: int = 1  # fastText's wordNgrams

    def __post_init__(self) -> None:
        check_positive(self, "negative_sample", "epoch", "lr", "word_ngrams")
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(f"QualityClassifierConfig.held_out_fraction must be in (0, 1), "
                             f"got {self.held_out_fraction}")


@dataclass
class QualityClassifierResult(StageResult):
    """The trained model and how well it tells the held-out documents apart."""

    MANIFEST_COUNTS = ("positives", "negatives", "held_out_documents")

    positives: int
    negatives: int
    train_documents: int
    held_out_documents: int
    held_out_precision: float  # of the "wiki" label
    held_out_recall: float
    held_out_accuracy: float
    train_seconds: float
    model_bytes: int
    model_path: Path
    reference_path: str | None = None


_DEFAULTS = QualityClassifierConfig


def train_quality_classifier(
    positive_texts: Iterable[str],
    negative_texts: Iterable[str],
    out_path: str | Path,
    *,
    held_out_fraction: float = _DEFAULTS.held_out_fraction,
    seed: int = _DEFAULTS.seed,
    epoch: int = _DEFAULTS.epoch,
    lr: float = _DEFAULTS.lr,
    word_ngrams: int = _DEFAULTS.word_ngrams,
    max_chars: int = DEFAULT_MAX_CHARS,
    **fasttext_params: Any,
) -> QualityClassifierResult:
    """Train wiki-vs-cc fastText on a seeded split and save it to `out_path`; returns sizes and
    held-out precision/recall (of "wiki", on documents the saved model never saw).

    Defaults are `QualityClassifierConfig`'s; other fastText parameters (dim, bucket, ...) pass
    through. The model is only saved: classifiers take its path explicitly."""
    QualityClassifierConfig(held_out_fraction=held_out_fraction, seed=seed, epoch=epoch, lr=lr,
                            word_ngrams=word_ngrams)  # validates
    positives = [t for t in positive_texts if t and t.strip()]
    negatives = [t for t in negative_texts if t and t.strip()]
    if len(positives) < 2 or len(negatives) < 2:
        raise ValueError(
            f"need at least 2 positive and 2 negative non-empty texts, got {len(positives)} "
            f"positive and {len(negatives)} negative"
        )
    rng = random.Random(seed)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "held_out": []}
    for label, texts in ((HIGH_QUALITY_LABEL, positives), (LOW_QUALITY_LABEL, negatives)):
        order = list(range(len(texts)))
        rng.shuffle(order)
        n_held_out = max(1, round(len(texts) * held_out_fraction))
        for rank, index in enumerate(order):
            split = "held_out" if rank < n_held_out else "train"
            splits[split].append((label, prepare_quality_text(texts[index], max_chars)))
    rng.shuffle(splits["train"])

    started = time.perf_counter()
    train_fasttext_classifier(splits["train"], out_path,
                              **{"lr": lr, "epoch": epoch, "wordNgrams": word_ngrams,
                                 **fasttext_params})
    train_seconds = time.perf_counter() - started
    classifier = QualityClassifier(out_path, max_chars=max_chars)
    truth = [label == HIGH_QUALITY_LABEL for label, _ in splits["held_out"]]
    predicted = [classifier.predict(text)[0] == HIGH_QUALITY_LABEL
                 for _, text in splits["held_out"]]
    metrics = _binary_metrics(truth, predicted)
    return QualityClassifierResult(
        positives=len(positives),
        negatives=len(negatives),
        train_documents=len(splits["train"]),
        held_out_documents=len(splits["held_out"]),
        held_out_precision=metrics["precision"],
        held_out_recall=metrics["recall"],
        held_out_accuracy=metrics["accuracy"],
        train_seconds=round(train_seconds, 3),
        model_bytes=Path(out_path).stat().st_size,
        model_path=Path(out_path),
    )


_default_model_path: Path | None = None


def use_quality_model(model_path: str | Path | None) -> None:
    """Set (or, with None, clear) the model `classify_quality` uses when given no path.
    Nothing else sets it: training only saves a model."""
    global _default_model_path
    _default_model_path = Path(model_path) if model_path is not None else None


def classify_quality(text: str, model_path: str | Path | None = None) -> tuple[str, float]:
    """("wiki" | "cc", probability) from the given model or the one set by `use_quality_model`."""
    path = model_path or _default_model_path
    if path is None:
        raise RuntimeError(
            "no quality model: pass model_path (e.g. the out_path given to "
            "train_quality_classifier) or set a default with use_quality_model(path)"
        )
    return QualityClassifier(path).predict(text)


def read_reference_texts(path: str | Path) -> list[str]:
    """Texts of a JSONL(.gz) reference set with a "text" field per line (title prepended if any)."""
    import gzip
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"quality reference set not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not JSON: {error}") from error
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f'{path}:{number} needs a "text" string field')
            texts.append(record["text"])
    return texts


def build_quality_classifier(
    document_parquets: list[Path],
    output_dir: Path,
    config: QualityClassifierConfig | None = None,
    *,
    default_reference: str | Path | None = None,
) -> QualityClassifierResult:
    """The `quality_classifier` stage: the reference set (`config.reference_path`, else
    `default_reference`, the crawl directory's own) as positives, a seeded sample of the crawled
    documents as negatives; writes output_dir/quality.bin."""
    config = config or QualityClassifierConfig()
    reference = config.reference_path or default_reference
    if reference is None:
        raise ValueError("no quality reference set: set QualityClassifierConfig.reference_path "
                         f"to a JSONL(.gz) file, or put {QUALITY_REFERENCE_FILE} in the crawl "
                         "directory")
    positives = read_reference_texts(reference)
    crawled = [text for path in sorted(document_parquets)
               for text in pq.read_table(path, columns=["text"]).column("text").to_pylist()]
    negatives = random.Random(config.seed).sample(crawled,
                                                  min(config.negative_sample, len(crawled)))
    result = train_quality_classifier(
        positives, negatives, Path(output_dir) / QUALITY_MODEL_FILE,
        held_out_fraction=config.held_out_fraction, seed=config.seed, epoch=config.epoch,
        lr=config.lr, word_ngrams=config.word_ngrams)
    return dataclasses.replace(result, reference_path=str(reference))
