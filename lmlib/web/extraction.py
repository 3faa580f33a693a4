"""The first stage: one crawl file in, one Parquet file of extracted text documents out.

Reading is sequential (it is cheap); HTML extraction, which is most of the time, runs on a
process pool over batches of records, and batches come back in order so the output is identical
for any number of workers. Every record is accounted for: it becomes a document, is a record
type that holds no document (request, metadata, warcinfo...), or is skipped with a reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lmlib.formats import DOCUMENTS_FILE
from lmlib.parallel import ordered_map
from lmlib.stage import StageResult, check_positive
from lmlib.web.html_text import extract_text_from_html_bytes
from lmlib.web.warc import ReadReport, iter_warc_records

DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("url", pa.string()),
        ("record_id", pa.string()),
        ("date", pa.string()),
        ("content_type", pa.string()),
        ("text", pa.string()),
        ("payload_bytes", pa.int64()),
        ("text_bytes", pa.int64()),
        ("source_file", pa.string()),
    ]
)
HTML_TYPES = ("text/html", "application/xhtml+xml")
CRAWL_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz")


def is_crawl_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(CRAWL_SUFFIXES)


@dataclass
class ExtractConfig:
    """How `extract_documents` turns records into documents."""

    workers: int = 2  # processes for HTML extraction; 1 runs in this process
    batch_records: int = 64  # records sent to a worker at a time
    keep_http_errors: bool = False  # also extract pages with a non-2xx status
    max_payload_bytes: int = 8 * 1024 * 1024  # larger payloads are skipped, not parsed

    def __post_init__(self):
        check_positive(self, "workers", "batch_records", "max_payload_bytes")


@dataclass
class ExtractResult(StageResult):
    """What one crawl file gave: every record accounted for, bytes in and out, a preview."""

    MANIFEST_COUNTS = ("records", "documents", "records_skipped", "skipped")

    crawl_file: str
    records: int
    records_by_type: dict[str, int] = field(metadata={"key": "record type"})
    documents: int
    skipped: dict[str, int] = field(metadata={"key": "reason"})
    records_skipped: int
    truncated_file: bool
    compressed_bytes_in: int
    decompressed_bytes_in: int
    payload_bytes: int
    text_bytes_out: int
    seconds: float
    documents_per_second: float
    preview: list[dict]


@dataclass
class _Candidate:
    ordinal: int
    url: str | None
    record_id: str | None
    date: str | None
    content_type: str | None
    payload: bytes
    is_text: bool  # WET conversion records already hold text


@dataclass
class ExtractStats:
    records_by_type: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    documents: int = 0
    payload_bytes: int = 0
    text_bytes: int = 0


def _classify(record, ordinal: int, config: ExtractConfig, stats: ExtractStats):
    """A record to a candidate document, or None (with a reason when it was a candidate)."""
    if record.type == "conversion":
        return _Candidate(ordinal, record.target_uri, record.record_id, record.date,
                          record.content_type or "text/plain", record.payload, True)
    if record.type not in ("response", "resource"):
        return None
    content_type = (record.content_type or "").lower()
    if record.http_status is not None and not 200 <= record.http_status < 300:
        if not config.keep_http_errors:
            stats.skipped["http_error_status"] += 1
            return None
    if not any(kind in content_type for kind in HTML_TYPES):
        if content_type or not record.payload.lstrip()[:1] == b"<":
            stats.skipped["not_html"] += 1
            return None
    if len(record.payload) > config.max_payload_bytes:
        stats.skipped["payload_too_large"] += 1
        return None
    return _Candidate(ordinal, record.target_uri, record.record_id, record.date,
                      record.content_type, record.payload, False)


def _extract_batch(batch: list[_Candidate]) -> list[tuple[int, str | None, str]]:
    """Runs in a worker: (ordinal, text or None, reason when None)."""
    results = []
    for candidate in batch:
        if candidate.is_text:
            text = candidate.payload.decode("utf-8", "replace").strip() or None
            results.append((candidate.ordinal, text, "empty_text"))
            continue
        if b"\x00" in candidate.payload[:4096]:
            results.append((candidate.ordinal, None, "binary_payload"))
            continue
        try:
            text = extract_text_from_html_bytes(candidate.payload, candidate.content_type)
        except Exception:  # noqa: BLE001 - one broken page must not stop a crawl file
            results.append((candidate.ordinal, None, "extraction_error"))
            continue
        results.append((candidate.ordinal, text, "empty_or_undecodable"))
    return results


def _batches(path: Path, config: ExtractConfig, stats: ExtractStats,
             report: ReadReport) -> Iterator[list[_Candidate]]:
    batch: list[_Candidate] = []
    for ordinal, record in enumerate(iter_warc_records(path, report)):
        candidate = _classify(record, ordinal, config, stats)
        if candidate is None:
            continue
        batch.append(candidate)
        if len(batch) >= config.batch_records:
            yield batch
            batch = []
    if batch:
        yield batch


def extract_documents(
    crawl_file: Path,
    output_dir: Path,
    config: ExtractConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> ExtractResult:
    """Extract the text documents of one WARC/WET file into output_dir/documents.parquet.

    Returns the counts a person wants to see: records by type, documents, skips by reason,
    bytes in and out, throughput, and a few preview rows.
    """
    config = config or ExtractConfig()
    crawl_file = Path(crawl_file)
    output_dir.mkdir(parents=True, exist_ok=True)
    stats = ExtractStats()
    report = ReadReport()
    payload_sizes: dict[int, int] = {}
    candidates: dict[int, _Candidate] = {}
    preview: list[dict] = []
    started = time.perf_counter()
    last_log = started

    def track(batches: Iterator[list[_Candidate]]) -> Iterator[list[_Candidate]]:
        for batch in batches:
            for candidate in batch:
                candidates[candidate.ordinal] = candidate
                payload_sizes[candidate.ordinal] = len(candidate.payload)
            yield batch

    writer = pq.ParquetWriter(output_dir / DOCUMENTS_FILE, DOCUMENT_SCHEMA, compression="zstd")
    try:
        batches = track(_batches(crawl_file, config, stats, report))
        for batch_results in ordered_map(_extract_batch, batches, config.workers):
            rows = {name: [] for name in DOCUMENT_SCHEMA.names}
            for ordinal, text, reason in batch_results:
                candidate = candidates.pop(ordinal)
                payload_bytes = payload_sizes.pop(ordinal)
                if text is None:
                    stats.skipped[reason] += 1
                    continue
                text_bytes = len(text.encode("utf-8"))
                stats.documents += 1
                stats.payload_bytes += payload_bytes
                stats.text_bytes += text_bytes
                row = {
                    "doc_id": f"{crawl_file.name}:{ordinal:07d}",
                    "url": candidate.url,
                    "record_id": candidate.record_id,
                    "date": candidate.date,
                    "content_type": candidate.content_type,
                    "text": text,
                    "payload_bytes": payload_bytes,
                    "text_bytes": text_bytes,
                    "source_file": crawl_file.name,
                }
                for name in rows:
                    rows[name].append(row[name])
                if len(preview) < 5:
                    preview.append({"doc_id": row["doc_id"], "url": row["url"],
                                    "text": text[:160].replace("\n", " ")})
            if rows["doc_id"]:
                writer.write_table(pa.table(rows, schema=DOCUMENT_SCHEMA))
            now = time.perf_counter()
            if log is not None and now - last_log > 5:
                last_log = now
                log(f"{crawl_file.name}: {stats.documents} documents after {now - started:.0f} s")
    finally:
        writer.close()

    seconds = time.perf_counter() - started
    stats.records_by_type.update(report.records_by_type)
    skipped = Counter(report.skipped) + stats.skipped
    return ExtractResult(
        crawl_file=str(crawl_file),
        records=report.records,
        records_by_type=dict(sorted(stats.records_by_type.items())),
        documents=stats.documents,
        skipped=dict(sorted(skipped.items())),
        records_skipped=sum(skipped.values()),
        truncated_file=report.truncated,
        compressed_bytes_in=report.compressed_bytes,
        decompressed_bytes_in=report.decompressed_bytes,
        payload_bytes=stats.payload_bytes,
        text_bytes_out=stats.text_bytes,
        seconds=round(seconds, 3),
        documents_per_second=round(stats.documents / seconds, 1) if seconds > 0 else 0.0,
        preview=preview,
    )
