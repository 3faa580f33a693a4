"""lmlib.dedup: exact line dedup and MinHash-LSH near-duplicate document dedup.

File-level reference API: `exact_line_deduplication`, `minhash_deduplication`.
Pipeline (scales across partitions), one entry point per stage, each taking a MinHashConfig and
returning a typed result:
  1. `compute_minhash_signatures`  per partition -> signatures.parquet       (SignaturesResult)
  2. `find_duplicate_clusters`     global        -> clusters.parquet (+ repeated_lines.parquet,
                                                    S-curve and cluster-size plots) (ClustersResult)
  3. `deduplicate_documents`       per partition -> documents.parquet        (DeduplicationResult)
"""

from lmlib.dedup.clusters import ClustersResult, find_duplicate_clusters
from lmlib.dedup.config import MinHashConfig
from lmlib.dedup.exact_lines import exact_line_deduplication
from lmlib.dedup.lsh import candidate_probability, render_s_curve, s_curve_table
from lmlib.dedup.near_duplicate_files import minhash_deduplication
from lmlib.dedup.removal import DeduplicationResult, deduplicate_documents
from lmlib.dedup.shingles import normalize_texts
from lmlib.dedup.signatures import SignaturesResult, compute_minhash_signatures
from lmlib.formats import CLUSTERS_FILE, DOCUMENTS_FILE, REPEATED_LINES_FILE, SIGNATURES_FILE

__all__ = [
    "CLUSTERS_FILE",
    "DOCUMENTS_FILE",
    "REPEATED_LINES_FILE",
    "SIGNATURES_FILE",
    "ClustersResult",
    "DeduplicationResult",
    "MinHashConfig",
    "SignaturesResult",
    "candidate_probability",
    "compute_minhash_signatures",
    "deduplicate_documents",
    "exact_line_deduplication",
    "find_duplicate_clusters",
    "minhash_deduplication",
    "normalize_texts",
    "render_s_curve",
    "s_curve_table",
]
