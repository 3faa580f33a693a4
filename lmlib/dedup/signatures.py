"""Stage 1, per partition: MinHash band hashes and shingle sets of every document.

Notable:
- Documents are processed in batches of about `_BATCH_BYTES` of text; each batch is fully
  vectorized (polars normalization, numpy hashing), and batches run on lmlib.parallel's process
  map when config.workers > 1, in order, so the file is the same for any number of workers.
- signatures.parquet keeps, per document, the band hashes (for LSH bucketing) *and* the sorted
  uint64 shingle set. Storing the set costs 8 bytes per word, about the size of the text, but
  lets the global stage verify candidates by exact Jaccard without re-reading and re-normalizing
  the text of every partition, and it reads only the sets of documents that are candidates.
- With config.line_dedup on, each document's line (or paragraph) hashes are stored too, so the
  global stage can count units across the corpus after dropping near-duplicate documents.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmlib.dedup.config import MinHashConfig
from lmlib.dedup.exact_lines import unit_hashes
from lmlib.dedup.hashing import string_buffers
from lmlib.dedup.minhash import band_hashes, minhash_signatures
from lmlib.dedup.shingles import shingle_sets
from lmlib.formats import SIGNATURES_FILE
from lmlib.parallel import ordered_map
from lmlib.stage import StageResult, peak_rss_mb

_BATCH_BYTES = 4 << 20
_BATCH_MAX_DOCS = 20_000  # < shingles.MAX_BATCH_DOCUMENTS


@dataclass
class SignaturesResult(StageResult):
    """What one partition's signatures cost: documents, shingles, time and memory."""

    MANIFEST_COUNTS = ("documents", "shingles")

    partition: str
    documents: int
    documents_without_shingles: int
    shingles: int
    text_bytes: int
    batches: int
    seconds: float
    documents_per_second: float | None
    peak_rss_mb: float


def _csr_list(values: np.ndarray, offsets: np.ndarray) -> pa.LargeListArray:
    return pa.LargeListArray.from_arrays(
        pa.array(offsets, pa.int64()), pa.array(values, pa.uint64())
    )


def signature_batch(doc_ids: pa.Array, texts: pa.Array, partition: str, config: MinHashConfig):
    """The signatures table of one batch of documents (a pyarrow Table)."""
    import polars as pl

    shingles, offsets = shingle_sets(pl.Series("text", texts, dtype=pl.String), config.ngrams)
    signatures = minhash_signatures(shingles, offsets, config.num_hashes, config.seed)
    bands = band_hashes(signatures, config.num_bands)
    num_docs = len(offsets) - 1
    band_offsets = np.arange(num_docs + 1, dtype=np.int64) * config.num_bands
    data, text_offsets = string_buffers(texts)
    snippets = (
        pl.Series("text", texts, dtype=pl.String)
        .fill_null("")
        .str.slice(0, config.snippet_chars)
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    columns = {
        "doc_id": doc_ids,
        "partition": pa.array([partition] * num_docs, pa.string()),
        "text_bytes": pa.array(np.diff(text_offsets), pa.int64()),
        "num_shingles": pa.array(np.diff(offsets).astype(np.int32), pa.int32()),
        "band_hashes": _csr_list(bands.reshape(-1), band_offsets),
        "shingle_hashes": _csr_list(shingles, offsets),
        "snippet": snippets.to_arrow(),
    }
    if config.line_dedup != "none":
        hashes, unit_doc, _, _ = unit_hashes(data, text_offsets, config.line_dedup)
        unit_offsets = np.zeros(num_docs + 1, dtype=np.int64)
        np.cumsum(np.bincount(unit_doc, minlength=num_docs), out=unit_offsets[1:])
        columns["line_hashes"] = _csr_list(hashes, unit_offsets)  # unit_doc is sorted
    return pa.table(columns)


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # Hash columns are random bits: compressing or dictionary-encoding them only burns CPU.
    hashes = [name for name in schema.names if name.endswith("_hashes")]
    return pq.ParquetWriter(
        path,
        schema,
        compression={name: "none" if name in hashes else "zstd" for name in schema.names},
        use_dictionary=["partition"],
        write_statistics=[name for name in schema.names if name not in hashes],
    )


def _batch_bounds(text_bytes: np.ndarray) -> list[tuple[int, int]]:
    bounds, start, size = [], 0, 0
    for row, length in enumerate(text_bytes.tolist()):
        size += length
        if size >= _BATCH_BYTES or row + 1 - start >= _BATCH_MAX_DOCS:
            bounds.append((start, row + 1))
            start, size = row + 1, 0
    if start < len(text_bytes):
        bounds.append((start, len(text_bytes)))
    return bounds


def compute_minhash_signatures(
    documents_parquet: str | Path,
    output_dir: str | Path,
    config: MinHashConfig,
    partition: str | None = None,
) -> SignaturesResult:
    """Write output_dir/signatures.parquet for one partition's documents.

    documents_parquet needs the columns doc_id (str) and text (str). `partition` labels every row
    (default: the name of the directory holding documents_parquet, which in the pipeline layout is
    the partition key).
    """
    import polars as pl

    started = time.perf_counter()
    documents_parquet = Path(documents_parquet)
    if not documents_parquet.is_file():
        raise FileNotFoundError(f"documents file {documents_parquet} does not exist")
    schema = pl.read_parquet_schema(documents_parquet)
    missing = {"doc_id", "text"} - set(schema)
    if missing:
        raise ValueError(
            f"{documents_parquet} lacks the column(s) {sorted(missing)} needed for dedup"
        )
    partition = partition if partition is not None else documents_parquet.parent.name
    table = pl.read_parquet(documents_parquet, columns=["doc_id", "text"]).with_columns(
        pl.col("doc_id").cast(pl.String), pl.col("text").cast(pl.String)
    )
    lengths = table["text"].str.len_bytes().fill_null(0).to_numpy()
    bounds = _batch_bounds(lengths)
    arrow = table.to_arrow()
    doc_ids, texts = arrow.column("doc_id"), arrow.column("text")
    jobs = [(doc_ids.slice(a, b - a), texts.slice(a, b - a)) for a, b in bounds]

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for batch in _run_batches(jobs, partition, config):
            if writer is None:
                writer = _writer(output_dir / SIGNATURES_FILE, batch.schema)
            writer.write_table(batch)
        if writer is None:  # no documents: still write a valid, empty file
            empty = signature_batch(
                pa.array([], pa.string()), pa.array([], pa.string()), partition, config
            )
            writer = _writer(output_dir / SIGNATURES_FILE, empty.schema)
            writer.write_table(empty)
    finally:
        if writer is not None:
            writer.close()

    seconds = time.perf_counter() - started
    num_docs = len(table)
    shingle_counts = pl.read_parquet(output_dir / SIGNATURES_FILE, columns=["num_shingles"])
    return SignaturesResult(
        partition=partition,
        documents=num_docs,
        documents_without_shingles=int((shingle_counts["num_shingles"] == 0).sum()),
        shingles=int(shingle_counts["num_shingles"].sum() or 0),
        text_bytes=int(lengths.sum()),
        batches=len(jobs),
        seconds=round(seconds, 4),
        documents_per_second=round(num_docs / seconds, 1) if seconds > 0 else None,
        peak_rss_mb=peak_rss_mb(),
    )


def _signature_job(job, partition: str, config: MinHashConfig):
    doc_ids, texts = job
    return signature_batch(doc_ids, texts, partition, config)


def _run_batches(jobs, partition: str, config: MinHashConfig):
    workers = max(1, min(config.workers, len(jobs), os.cpu_count() or 1))
    if workers > 1:  # one buffer per column: less to pickle for the worker
        jobs = [(ids.combine_chunks(), texts.combine_chunks()) for ids, texts in jobs]
    return ordered_map(partial(_signature_job, partition=partition, config=config), jobs, workers)
