"""Stage 2, global: LSH candidate pairs, exact Jaccard verification, clusters and keepers.

Notable:
- Candidates come from one polars group-by on (band index, band hash) over every partition's
  signatures (streaming engine); no loop over documents or pairs in Python.
- A bucket with at most config.max_bucket_all_pairs members yields all its pairs; a larger one
  yields star + chain pairs (first-other, previous-next), which keeps the pair count linear
  when thousands of copies share a bucket. Near-duplicates in such a bucket still connect.
- Verification is exact: |A and B| / |A or B| of the stored shingle sets, computed in polars
  batches as (|A| + |B| - |A or B|) / |A or B| with one n_unique per pair.
- Components come from a vectorized union-find, so clusters are transitive. The keeper of a
  cluster is its longest document (most text bytes), ties broken by the smallest doc_id; none of
  it depends on the order of the input files.
- With config.line_dedup on, the line/paragraph hashes of every document that survives are
  counted here, corpus-wide, and the repeated ones written to repeated_lines.parquet for stage 3.
- With config.plots on, the LSH S-curve and the cluster sizes are drawn beside clusters.parquet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lmlib.dedup.config import MinHashConfig
from lmlib.dedup.lsh import render_s_curve, s_curve_table, s_curve_threshold
from lmlib.dedup.union_find import connected_components
from lmlib.formats import (
    CLUSTER_SIZES_PLOT_FILE,
    CLUSTERS_FILE,
    REPEATED_LINES_FILE,
    S_CURVE_PLOT_FILE,
)
from lmlib.plots import bar_chart
from lmlib.stage import StageResult, peak_rss_mb


@dataclass
class ClustersResult(StageResult):
    """The near-duplicate clusters across all partitions: the work (candidates, verified pairs),
    what is removed, where, example clusters as rows, and the LSH S-curve that explains recall."""

    MANIFEST_COUNTS = ("documents", "clusters", "duplicates_removed")

    documents: int
    documents_without_shingles: int
    partitions: int
    buckets_with_collisions: int
    candidate_pairs: int
    verified_pairs: int
    clusters: int
    cross_partition_clusters: int
    documents_in_clusters: int
    duplicates_removed: int
    duplicate_rate: float
    duplicates_removed_by_partition: dict[str, int] = field(metadata={"key": "partition"})
    cluster_size_histogram: dict[str, int] = field(
        metadata={"key": "cluster size", "value": "clusters"})
    # The largest clusters, up to 4 members each: cluster_id, cluster_size, doc_id, partition,
    # is_keeper, jaccard_to_keeper (exact), snippet.
    example_clusters: list[dict]
    lsh_bands: int
    lsh_rows_per_band: int
    s_curve_threshold: float
    s_curve: list[dict]  # rows {jaccard, candidate_probability}
    seconds: float
    candidates_seconds: float
    verify_seconds: float
    peak_rss_mb: float
    s_curve_plot: Path | None = None
    cluster_sizes_plot: Path | None = None
    # With config.line_dedup on: the unit and the corpus-wide counts of its hashes.
    line_dedup_unit: str | None = None
    distinct_units: int | None = None
    repeated_units: int | None = None
    repeated_unit_occurrences: int | None = None


def _document_table(scan, files):
    import polars as pl

    docs = (
        scan.select("doc_id", "partition", "text_bytes", "num_shingles")
        .collect()
        .sort("doc_id")
        .with_row_index("doc")
    )
    duplicated = docs.filter(pl.col("doc_id").is_duplicated())["doc_id"].unique().head(5)
    if len(duplicated):
        raise ValueError(
            f"doc_id must be unique across all signature files, but {duplicated.to_list()} "
            f"occur more than once in {[str(f) for f in files][:5]}...; give documents globally "
            "unique ids (e.g. prefix them with their source file)"
        )
    return docs


def candidate_pairs(scan, doc_index, config: MinHashConfig):
    """Unique (a, b) document-index pairs, a < b, that share at least one band bucket."""
    import polars as pl

    members = (
        scan.filter(pl.col("num_shingles") > 0)
        .select("doc_id", "band_hashes")
        .join(doc_index.lazy(), on="doc_id")
        .select(
            "doc",
            pl.col("band_hashes").alias("band_hash"),
            pl.int_ranges(0, pl.col("band_hashes").list.len(), dtype=pl.Int32).alias("band"),
        )
        .explode(["band_hash", "band"])
    )
    buckets = (
        members.group_by(["band", "band_hash"])
        .agg(pl.col("doc").sort().alias("docs"))
        .filter(pl.col("docs").list.len() >= 2)
        .select("docs")
        .collect(engine="streaming")
        .with_row_index("bucket")
        .with_columns(pl.col("docs").list.len().alias("size"))
    )
    small = buckets.filter(pl.col("size") <= config.max_bucket_all_pairs).explode("docs")
    all_pairs = (
        small.join(small, on="bucket", suffix="_other")
        .filter(pl.col("docs") < pl.col("docs_other"))
        .select(pl.col("docs").alias("a"), pl.col("docs_other").alias("b"))
    )
    large = (
        buckets.filter(pl.col("size") > config.max_bucket_all_pairs)
        .with_columns(pl.col("docs").list.first().alias("first"))
        .explode("docs")
        .with_columns(pl.col("docs").shift(1).over("bucket").alias("previous"))
    )
    star = large.filter(pl.col("docs") != pl.col("first")).select(
        pl.col("first").alias("a"), pl.col("docs").alias("b")
    )
    chain = large.filter(pl.col("previous").is_not_null()).select(
        pl.col("previous").alias("a"), pl.col("docs").alias("b")
    )
    return pl.concat([all_pairs, star, chain]).unique().sort(["a", "b"]), len(buckets)


def verify_pairs(pairs, shingles, config: MinHashConfig):
    """The pairs whose exact shingle-set Jaccard is >= config.jaccard_threshold, with it."""
    import polars as pl

    verified = []
    for batch in pairs.iter_slices(config.verify_batch_pairs):
        batch = batch.with_row_index("pair")
        sides = [
            batch.join(shingles, left_on=side, right_on="doc").select("pair", "shingle_hashes")
            for side in ("a", "b")
        ]
        overlap = (
            pl.concat(sides)
            .explode("shingle_hashes")
            .group_by("pair")
            .agg(pl.len().alias("total"), pl.col("shingle_hashes").n_unique().alias("union"))
            .with_columns(((pl.col("total") - pl.col("union")) / pl.col("union")).alias("jaccard"))
        )
        verified.append(
            batch.join(overlap, on="pair")
            .filter(pl.col("jaccard") >= config.jaccard_threshold)
            .select("a", "b", "jaccard")
        )
    if not verified:
        return pl.DataFrame(
            {"a": [], "b": [], "jaccard": []},
            schema={"a": pl.UInt32, "b": pl.UInt32, "jaccard": pl.Float64},
        )
    return pl.concat(verified).sort(["a", "b"])


def assign_keepers(labels: np.ndarray, text_bytes: np.ndarray):
    """(in_cluster, is_keeper, cluster_id) per document from component labels."""
    sizes = np.bincount(labels, minlength=len(labels))
    in_cluster = sizes[labels] >= 2
    documents = np.arange(len(labels))
    # Keeper: per label, most text bytes, then smallest index (= smallest doc_id).
    order = np.lexsort((documents, -text_bytes, labels))
    first_of_label = np.ones(len(order), dtype=bool)
    first_of_label[1:] = labels[order][1:] != labels[order][:-1]
    is_keeper = np.zeros(len(labels), dtype=bool)
    is_keeper[order[first_of_label]] = True
    is_keeper &= in_cluster
    cluster_id = np.full(len(labels), -1, dtype=np.int64)
    _, cluster_id[in_cluster] = np.unique(labels[in_cluster], return_inverse=True)
    return in_cluster, is_keeper, cluster_id


def find_duplicate_clusters(
    signature_files: list[Path], output_dir: str | Path, config: MinHashConfig
) -> ClustersResult:
    """Write output_dir/clusters.parquet (one row per document in a duplicate cluster).

    Columns: doc_id, cluster_id, is_keeper, partition, cluster_size, keeper_doc_id. Documents
    absent from the file have no near-duplicate and are kept.
    """
    import polars as pl

    started = time.perf_counter()
    files = sorted(Path(f) for f in signature_files)
    if not files:
        raise ValueError("find_duplicate_clusters needs at least one signatures.parquet file")
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"signature file {file} does not exist")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scan = pl.scan_parquet(files)

    docs = _document_table(scan, files)
    band_counts = scan.select(pl.col("band_hashes").list.len().unique()).collect().to_series()
    if len(band_counts) and band_counts.to_list() != [config.num_bands]:
        raise ValueError(
            f"signatures have {band_counts.to_list()} bands per document but config.num_bands is "
            f"{config.num_bands}; recompute the signatures with the same MinHashConfig"
        )
    doc_index = docs.select("doc_id", "doc")
    timings = {}
    pairs, num_buckets = candidate_pairs(scan, doc_index, config)
    timings["candidates_seconds"] = time.perf_counter() - started

    candidate_docs = pl.concat([pairs["a"], pairs["b"]]).unique().to_frame("doc")
    shingles = (
        scan.select("doc_id", "shingle_hashes")
        .join(doc_index.lazy(), on="doc_id")
        .join(candidate_docs.lazy(), on="doc", how="semi")
        .select("doc", "shingle_hashes")
        .collect(engine="streaming")
    )
    verified = verify_pairs(pairs, shingles, config)
    timings["verify_seconds"] = time.perf_counter() - started - timings["candidates_seconds"]

    num_docs = len(docs)
    labels = connected_components(num_docs, verified["a"].to_numpy(), verified["b"].to_numpy())
    in_cluster, is_keeper, cluster_id = assign_keepers(labels, docs["text_bytes"].to_numpy())
    sizes = np.bincount(labels, minlength=num_docs)[labels]
    keeper_of_label = np.full(num_docs, -1, dtype=np.int64)
    keeper_of_label[labels[is_keeper]] = np.flatnonzero(is_keeper)
    doc_ids = docs["doc_id"]
    members = np.flatnonzero(in_cluster)
    clusters = pl.DataFrame(
        {
            "doc_id": doc_ids.gather(members),
            "cluster_id": cluster_id[members],
            "is_keeper": is_keeper[members],
            "partition": docs["partition"].gather(members),
            "cluster_size": sizes[members].astype(np.int32),
            "keeper_doc_id": doc_ids.gather(keeper_of_label[labels[members]]),
        }
    ).sort(["cluster_id", "is_keeper", "doc_id"], descending=[False, True, False])
    clusters.write_parquet(output_dir / CLUSTERS_FILE, compression="zstd")

    line_stats = {}
    if config.line_dedup != "none":
        line_stats = _write_repeated_lines(scan, clusters, output_dir, config)

    num_clusters = int(is_keeper.sum())
    removed = int(in_cluster.sum()) - num_clusters
    histogram = clusters.group_by("cluster_id").agg(pl.len().alias("size"))["size"].value_counts()
    partitions_per_cluster = clusters.group_by("cluster_id").agg(pl.col("partition").n_unique())
    size_histogram = {
        str(size): count
        for size, count in sorted(
            zip(histogram["size"].to_list(), histogram["count"].to_list(), strict=True)
        )
    }
    plots = _draw_plots(output_dir, size_histogram, config) if config.plots else {}
    return ClustersResult(
        documents=num_docs,
        documents_without_shingles=int((docs["num_shingles"] == 0).sum()),
        partitions=docs["partition"].n_unique(),
        buckets_with_collisions=num_buckets,
        candidate_pairs=len(pairs),
        verified_pairs=len(verified),
        clusters=num_clusters,
        cross_partition_clusters=int((partitions_per_cluster["partition"] > 1).sum()),
        documents_in_clusters=int(in_cluster.sum()),
        duplicates_removed=removed,
        duplicate_rate=round(removed / num_docs, 6) if num_docs else 0.0,
        duplicates_removed_by_partition={
            row["partition"]: row["len"]
            for row in clusters.filter(~pl.col("is_keeper"))
            .group_by("partition")
            .len()
            .sort("partition")
            .iter_rows(named=True)
        },
        cluster_size_histogram=size_histogram,
        example_clusters=_example_clusters(scan, clusters, shingles, doc_index, config),
        lsh_bands=config.num_bands,
        lsh_rows_per_band=config.rows_per_band,
        s_curve_threshold=round(s_curve_threshold(config.num_bands, config.rows_per_band), 4),
        s_curve=s_curve_table(config.num_bands, config.rows_per_band),
        seconds=round(time.perf_counter() - started, 4),
        candidates_seconds=round(timings["candidates_seconds"], 4),
        verify_seconds=round(timings["verify_seconds"], 4),
        peak_rss_mb=peak_rss_mb(),
        **plots,
        **line_stats,
    )


def _draw_plots(output_dir: Path, size_histogram: dict[str, int], config: MinHashConfig) -> dict:
    s_curve = render_s_curve(output_dir / S_CURVE_PLOT_FILE, config.num_bands,
                             config.rows_per_band, config.jaccard_threshold)
    cluster_sizes = bar_chart(list(size_histogram), list(size_histogram.values()),
                              output_dir / CLUSTER_SIZES_PLOT_FILE,
                              "near-duplicate clusters by size", "clusters")
    return {"s_curve_plot": s_curve, "cluster_sizes_plot": cluster_sizes}


def _write_repeated_lines(scan, clusters, output_dir: Path, config: MinHashConfig) -> dict:
    import polars as pl

    if "line_hashes" not in scan.collect_schema().names():
        raise ValueError(
            f"config.line_dedup is {config.line_dedup!r} but the signatures have no line_hashes; "
            "recompute them with the same MinHashConfig"
        )
    dropped = clusters.lazy().filter(~pl.col("is_keeper")).select("doc_id")
    counts = (
        scan.select("doc_id", "line_hashes")
        .join(dropped, on="doc_id", how="anti")
        .select(pl.col("line_hashes").explode().drop_nulls().alias("line_hash"))
        .group_by("line_hash")
        .agg(pl.len().alias("count"))
        .collect(engine="streaming")
    )
    repeated = counts.filter(pl.col("count") > 1).sort("line_hash")
    pq.write_table(
        pa.table(
            {"line_hash": repeated["line_hash"].to_arrow(), "count": repeated["count"].to_arrow()}
        ),
        output_dir / REPEATED_LINES_FILE,
        compression="zstd",
    )
    return {
        "line_dedup_unit": config.line_dedup,
        "distinct_units": len(counts),
        "repeated_units": len(repeated),
        "repeated_unit_occurrences": int(repeated["count"].sum() or 0),
    }


def _example_clusters(scan, clusters, shingles, doc_index, config: MinHashConfig) -> list[dict]:
    """Rows of the largest clusters: each member's snippet and exact Jaccard to the keeper."""
    import polars as pl

    if config.example_clusters == 0 or clusters.is_empty():
        return []
    chosen = (
        clusters.group_by("cluster_id")
        .agg(pl.len().alias("size"))
        .sort(["size", "cluster_id"], descending=[True, False])
        .head(config.example_clusters)["cluster_id"]
    )
    rows = (
        clusters.filter(pl.col("cluster_id").is_in(chosen.implode()))
        .group_by("cluster_id", maintain_order=True)
        .head(4)
    )
    snippets = (
        scan.select("doc_id", "snippet")
        .join(rows.lazy().select("doc_id"), on="doc_id", how="semi")
        .collect()
    )
    shown_ids = pl.concat([rows["doc_id"], rows["keeper_doc_id"]]).unique().to_frame("doc_id")
    shown_sets = shingles.join(doc_index.join(shown_ids, on="doc_id", how="semi"), on="doc")
    sets = dict(
        zip(shown_sets["doc_id"].to_list(), shown_sets["shingle_hashes"].to_list(), strict=True)
    )
    rows = rows.join(snippets, on="doc_id", how="left", maintain_order="left")
    examples = []
    for cluster in chosen.to_list():
        members = rows.filter(pl.col("cluster_id") == cluster).to_dicts()
        keeper_set = set(sets.get(members[0]["keeper_doc_id"], []))
        for member in members:
            member_set = set(sets.get(member["doc_id"], []))
            union = len(keeper_set | member_set)
            examples.append({
                "cluster_id": cluster,
                "cluster_size": member["cluster_size"],
                "doc_id": member["doc_id"],
                "partition": member["partition"],
                "is_keeper": member["is_keeper"],
                "jaccard_to_keeper": round(len(keeper_set & member_set) / union, 4)
                if union else 1.0,
                "snippet": member["snippet"],
            })
    return examples
