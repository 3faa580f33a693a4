"""lmlib.dedup: exact line dedup and MinHash-LSH near-duplicate document dedup.

File-level reference API: `exact_line_deduplication`, `minhash_deduplication`.
Pipeline (scales across partitions), one entry point per stage, each taking a MinHashConfig:
  1. `compute_minhash_signatures`  per partition -> signatures.parquet
  2. `find_duplicate_clusters`     global        -> clusters.parquet (+ repeated_lines.parquet)
  3. `deduplicate_documents`       per partition -> documents.parquet
"""

from lmlib.dedup.clusters import (
    CLUSTERS_FILE,
    REPEATED_LINES_FILE,
    example_clusters_markdown,
    find_duplicate_clusters,
)
from lmlib.dedup.config import MinHashConfig
from lmlib.dedup.documents import DOCUMENTS_FILE, deduplicate_documents
from lmlib.dedup.exact_lines import exact_line_deduplication
from lmlib.dedup.lsh import candidate_probability, render_s_curve, s_curve_table
from lmlib.dedup.minhash_dedup import minhash_deduplication
from lmlib.dedup.shingles import normalize_texts
from lmlib.dedup.signatures import SIGNATURES_FILE, compute_minhash_signatures

__all__ = [
    "CLUSTERS_FILE",
    "DOCUMENTS_FILE",
    "REPEATED_LINES_FILE",
    "SIGNATURES_FILE",
    "MinHashConfig",
    "candidate_probability",
    "compute_minhash_signatures",
    "deduplicate_documents",
    "example_clusters_markdown",
    "exact_line_deduplication",
    "find_duplicate_clusters",
    "minhash_deduplication",
    "normalize_texts",
    "render_s_curve",
    "s_curve_table",
]
