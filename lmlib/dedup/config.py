"""MinHashConfig: every knob of the dedup stages, validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class MinHashConfig:
    """Parameters of MinHash-LSH near-duplicate detection and the optional exact line step.

    num_hashes / num_bands rows per band set the LSH S-curve: a pair with Jaccard s becomes a
    candidate with probability 1 - (1 - s**rows)**bands (see lmlib.dedup.lsh). Candidates are then
    confirmed by their exact n-gram Jaccard, so the S-curve only trades recall against work.
    """

    num_hashes: int = 128
    num_bands: int = 16
    ngrams: int = 5
    jaccard_threshold: float = 0.8
    seed: int = 0
    workers: int = 1
    # Exact repeated-line removal after document dedup: "none", "line" or "paragraph".
    line_dedup: Literal["none", "line", "paragraph"] = "none"
    # Buckets with more members than this yield star + chain pairs instead of all pairs, so one
    # huge bucket (thousands of copies of a page) cannot make the pair count quadratic.
    max_bucket_all_pairs: int = 32
    # Candidate pairs verified per polars batch (bounds verification memory).
    verify_batch_pairs: int = 200_000
    # How many clusters to show in stats, and how many characters of each document.
    example_clusters: int = 5
    snippet_chars: int = 160
    # Draw s_curve.png and cluster_sizes.png beside clusters.parquet (benchmarks turn it off).
    plots: bool = True

    def __post_init__(self) -> None:
        for name in ("num_hashes", "num_bands", "ngrams", "workers", "max_bucket_all_pairs",
                     "verify_batch_pairs", "snippet_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MinHashConfig.{name} must be a positive integer, got {value!r}")
        if self.num_hashes % self.num_bands:
            raise ValueError(
                f"MinHashConfig.num_hashes ({self.num_hashes}) must be divisible by num_bands "
                f"({self.num_bands}); e.g. num_hashes=128 with num_bands=16 gives 8 rows per band"
            )
        if not 0.0 < self.jaccard_threshold <= 1.0:
            raise ValueError(
                f"MinHashConfig.jaccard_threshold must be in (0, 1], got {self.jaccard_threshold}"
            )
        if self.line_dedup not in ("none", "line", "paragraph"):
            raise ValueError(
                f"MinHashConfig.line_dedup must be 'none', 'line' or 'paragraph', "
                f"got {self.line_dedup!r}"
            )
        if not isinstance(self.example_clusters, int) or self.example_clusters < 0:
            raise ValueError(
                f"MinHashConfig.example_clusters must be >= 0, got {self.example_clusters!r}"
            )
        if self.ngrams > 64:
            raise ValueError(f"MinHashConfig.ngrams must be <= 64, got {self.ngrams}")

    @property
    def rows_per_band(self) -> int:
        return self.num_hashes // self.num_bands

    def to_dict(self) -> dict:
        return asdict(self)
