"""Stage 3, per partition: drop non-keeper documents, then optionally repeated lines.

Notable:
- Only documents marked is_keeper = false in clusters.parquet are dropped; every other document
  passes through with all its columns unchanged (order kept).
- Line (or paragraph) removal uses the corpus-wide repeated-unit hashes that the global clusters
  stage counted over the surviving documents only (so a keeper does not lose the lines it shared
  with the near-duplicates dropped beside it). It rewrites the text buffer with numpy, keeps
  text_bytes in step, and drops documents left with no visible text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from lmlib.dedup.config import MinHashConfig
from lmlib.dedup.exact_lines import drop_lines, repeated_unit_mask, unit_hashes
from lmlib.dedup.hashing import string_buffers
from lmlib.formats import DOCUMENTS_FILE, REPEATED_LINES_FILE
from lmlib.stage import StageResult, peak_rss_mb


@dataclass
class DeduplicationResult(StageResult):
    """What one partition lost to dedup: documents and bytes in and out."""

    MANIFEST_COUNTS = ("documents_in", "documents_out")

    documents_in: int
    near_duplicates_removed: int
    documents_out: int
    text_bytes_in: int
    text_bytes_out: int
    seconds: float
    peak_rss_mb: float
    # With config.line_dedup on: the unit, the units removed, the documents left empty.
    line_dedup_unit: str | None = None
    lines_removed: int | None = None
    documents_emptied_by_line_dedup: int | None = None


def remove_repeated_units(texts: pa.Array, repeated: np.ndarray, unit: str):
    """Texts with every line (or paragraph) whose hash is in sorted `repeated` removed.

    Returns (new texts as a pyarrow large_string array, lines removed).
    """
    data, offsets = string_buffers(texts)
    data = data[offsets[0] : offsets[-1]]  # the array may be a slice of a larger buffer
    offsets = offsets - offsets[0]
    hashes, _, line_unit, lines = unit_hashes(data, offsets, unit)
    drop = repeated_unit_mask(hashes, line_unit, repeated)
    new_data, new_offsets = drop_lines(data, offsets, lines, drop)
    array = pa.LargeStringArray.from_buffers(
        len(offsets) - 1,
        pa.py_buffer(new_offsets.astype(np.int64)),
        pa.py_buffer(new_data.tobytes()),
    )
    return array, int(drop.sum())


def deduplicate_documents(
    documents_parquet: str | Path,
    clusters_parquet: str | Path,
    output_dir: str | Path,
    config: MinHashConfig,
    repeated_lines_parquet: str | Path | None = None,
) -> DeduplicationResult:
    """Write output_dir/documents.parquet without near-duplicates (and repeated lines).

    repeated_lines_parquet defaults to repeated_lines.parquet beside clusters_parquet; it is only
    read when config.line_dedup is not "none".
    """
    import polars as pl

    started = time.perf_counter()
    documents_parquet, clusters_parquet = Path(documents_parquet), Path(clusters_parquet)
    for path in (documents_parquet, clusters_parquet):
        if not path.is_file():
            raise FileNotFoundError(f"dedup input {path} does not exist")
    documents = pl.read_parquet(documents_parquet)
    if "doc_id" not in documents.columns or "text" not in documents.columns:
        raise ValueError(f"{documents_parquet} needs the columns doc_id and text")
    dropped_ids = pl.read_parquet(clusters_parquet, columns=["doc_id", "is_keeper"]).filter(
        ~pl.col("is_keeper")
    )["doc_id"]
    kept = documents.filter(~pl.col("doc_id").is_in(dropped_ids.implode()))
    kept_before_lines = len(kept)
    bytes_in = int(documents["text"].str.len_bytes().sum() or 0)
    line_stats = {}

    if config.line_dedup != "none":
        repeated_path = Path(
            repeated_lines_parquet or clusters_parquet.parent / REPEATED_LINES_FILE
        )
        if not repeated_path.is_file():
            raise FileNotFoundError(
                f"config.line_dedup is {config.line_dedup!r} but {repeated_path} does not exist; "
                "run find_duplicate_clusters with the same config first"
            )
        repeated = np.sort(
            pl.read_parquet(repeated_path, columns=["line_hash"])["line_hash"].to_numpy()
        )
        texts, lines_removed = remove_repeated_units(
            kept["text"].to_arrow(), repeated, config.line_dedup
        )
        kept = kept.with_columns(pl.Series("text", texts, dtype=pl.String))
        if "text_bytes" in kept.columns:
            kept = kept.with_columns(
                pl.col("text").str.len_bytes().cast(pl.Int64).alias("text_bytes")
            )
        before = len(kept)
        kept = kept.filter(pl.col("text").str.contains(r"\S"))
        line_stats = {
            "line_dedup_unit": config.line_dedup,
            "lines_removed": lines_removed,
            "documents_emptied_by_line_dedup": before - len(kept),
        }

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    kept.write_parquet(output_dir / DOCUMENTS_FILE, compression="zstd")
    bytes_out = int(kept["text"].str.len_bytes().sum() or 0) if len(kept) else 0
    return DeduplicationResult(
        documents_in=len(documents),
        near_duplicates_removed=len(documents) - kept_before_lines,
        documents_out=len(kept),
        text_bytes_in=bytes_in,
        text_bytes_out=bytes_out,
        seconds=round(time.perf_counter() - started, 4),
        peak_rss_mb=peak_rss_mb(),
        **line_stats,
    )
