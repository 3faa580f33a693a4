"""Harmful-content classifiers: NSFW and toxic speech, backed by fastText models.

- Default models: Dolma's Jigsaw bigram classifiers (about 1 GB each), labels
  nsfw / non-nsfw and toxic / non-toxic. `resolve_harmful_model` finds a configured path or a
  cached download, and downloads only when asked (`download=True`); their sha256 is not
  published, so none is checked unless the caller passes one.
- When no model can be had, `resolve_harmful_model` raises `HarmfulModelUnavailable` with the
  reason; the filter chain then reports the step as skipped. It never invents a verdict.
- Users can train their own with `train_harmful_classifier` (same labels, same fastText helper
  as the quality classifier).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmlib.web.fasttext_models import (
    default_model_cache_dir,
    download_file,
    load_fasttext_model,
    predict_top_label,
    train_fasttext_classifier,
)

_DOLMA_BASE = "https://dolma-artifacts.org/fasttext_models/jigsaw_fasttext_bigrams_20230515/"


@dataclass(frozen=True)
class HarmfulModelSpec:
    kind: str  # "nsfw" or "toxic"
    positive_label: str
    negative_label: str
    url: str
    filename: str
    sha256: str | None = None  # Dolma publishes none


NSFW_MODEL = HarmfulModelSpec(
    "nsfw", "nsfw", "non-nsfw",
    _DOLMA_BASE + "jigsaw_fasttext_bigrams_nsfw_final.bin", "jigsaw_fasttext_bigrams_nsfw_final.bin",
)
TOXIC_MODEL = HarmfulModelSpec(
    "toxic", "toxic", "non-toxic",
    _DOLMA_BASE + "jigsaw_fasttext_bigrams_hatespeech_final.bin",
    "jigsaw_fasttext_bigrams_hatespeech_final.bin",
)
HARMFUL_MODELS = {spec.kind: spec for spec in (NSFW_MODEL, TOXIC_MODEL)}


class HarmfulModelUnavailable(RuntimeError):
    """No model file for a harmful-content classifier; the message says why and what to do."""


def resolve_harmful_model(
    spec: HarmfulModelSpec,
    model_path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    url: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Path of a usable model file: the configured one, a cached download, or a fresh download."""
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise HarmfulModelUnavailable(f"{spec.kind} model path {path} does not exist")
        return path
    cached = Path(cache_dir or default_model_cache_dir()) / spec.filename
    if cached.is_file():
        return cached
    if not download:
        raise HarmfulModelUnavailable(
            f"no {spec.kind} model: none configured and none cached at {cached}; set the model "
            f"path, or allow the download of {url or spec.url} (about 1 GB)"
        )
    try:
        return download_file(url or spec.url, cached, sha256=sha256 or spec.sha256)
    except Exception as error:  # no network, HTTP error, checksum mismatch: all mean "skip"
        raise HarmfulModelUnavailable(
            f"{spec.kind} model download from {url or spec.url} failed: {error}"
        ) from error


class HarmfulContentClassifier:
    """One fastText harmful-content model; `predict` returns (label, probability)."""

    def __init__(self, spec: HarmfulModelSpec, model_path: str | Path):
        self.spec = spec
        self.model_path = Path(model_path)
        self.model = load_fasttext_model(self.model_path)
        labels = {label.removeprefix("__label__") for label in self.model.get_labels()}
        expected = {spec.positive_label, spec.negative_label}
        if labels != expected:
            raise ValueError(
                f"{self.model_path} has labels {sorted(labels)}, expected {sorted(expected)} "
                f"for a {spec.kind} classifier"
            )

    def predict(self, text: str) -> tuple[str, float]:
        return predict_top_label(self.model, text)

    def positive_probability(self, text: str) -> float:
        """Probability of the harmful label (binary model: 1 - p(other) when that one wins)."""
        label, probability = self.predict(text)
        return probability if label == self.spec.positive_label else 1.0 - probability


_CLASSIFIERS: dict[tuple[str, str], HarmfulContentClassifier] = {}


def _classifier(spec: HarmfulModelSpec, model_path: str | Path | None) -> HarmfulContentClassifier:
    path = resolve_harmful_model(spec, model_path)
    key = (spec.kind, str(path.resolve()))
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = HarmfulContentClassifier(spec, path)
    return _CLASSIFIERS[key]


def classify_nsfw(text: str, model_path: str | Path | None = None) -> tuple[str, float]:
    """("nsfw" | "non-nsfw", probability). Raises HarmfulModelUnavailable without a model."""
    return _classifier(NSFW_MODEL, model_path).predict(text)


def classify_toxic_speech(text: str, model_path: str | Path | None = None) -> tuple[str, float]:
    """("toxic" | "non-toxic", probability). Raises HarmfulModelUnavailable without a model."""
    return _classifier(TOXIC_MODEL, model_path).predict(text)


def train_harmful_classifier(
    kind: str,
    harmful_texts: Iterable[str],
    harmless_texts: Iterable[str],
    out_path: str | Path,
    **fasttext_params: Any,
) -> Path:
    """Train your own NSFW or toxic-speech model with the labels the wrappers expect."""
    if kind not in HARMFUL_MODELS:
        raise ValueError(f"kind must be one of {sorted(HARMFUL_MODELS)}, got {kind!r}")
    spec = HARMFUL_MODELS[kind]
    examples = [(spec.positive_label, t) for t in harmful_texts]
    examples += [(spec.negative_label, t) for t in harmless_texts]
    train_fasttext_classifier(examples, out_path, **fasttext_params)
    return Path(out_path)
