"""dedup group: MinHash signatures per file, clusters across all files, deduplicated documents."""

from pathlib import Path

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from dagster_project.assets.filters import filtered_documents
from dagster_project.metadata import (
    counts_table,
    image_markdown,
    markdown_table,
    numbers,
    partitions_metadata,
)
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import DedupSettings, Storage
from dagster_project.stage import partition_inputs, run_stage, upstream
from lmlib.dedup import (
    CLUSTERS_FILE,
    SIGNATURES_FILE,
    compute_minhash_signatures,
    deduplicate_documents,
    example_clusters_markdown,
    find_duplicate_clusters,
    render_s_curve,
)
from lmlib.plots import bar_chart


@asset(partitions_def=crawl_partitions, deps=[filtered_documents], group_name="dedup",
       kinds={"python", "parquet"},
       description="MinHash signatures and LSH band hashes of one file's filtered documents.")
def minhash_signatures(
    context: AssetExecutionContext, storage: Storage, dedup: DedupSettings
) -> MaterializeResult:
    source = storage.artifact_dir("filtered_documents", context.partition_key)
    config = dedup.to_config()
    final = storage.artifact_dir("minhash_signatures", context.partition_key)
    stats = run_stage(
        final, "minhash_signatures",
        lambda out: compute_minhash_signatures(source / "documents.parquet", out, config,
                                               partition=context.partition_key),
        config=config, count_keys=("documents", "shingles"),
        inputs={"filtered_documents": upstream(source)})
    return MaterializeResult(metadata=numbers(
        stats, ["documents", "documents_without_shingles", "shingles", "seconds"]))


@asset(deps=[minhash_signatures], group_name="dedup", kinds={"python", "polars"},
       description="Near-duplicate clusters across all files: LSH candidates, exact Jaccard "
                   "verification, union-find; one keeper per cluster.")
def duplicate_clusters(
    context: AssetExecutionContext, storage: Storage, dedup: DedupSettings
) -> MaterializeResult:
    config = dedup.to_config()
    sources = partition_inputs(context, storage, "minhash_signatures")
    final = storage.artifact_dir("duplicate_clusters")

    def produce(out: Path) -> dict:
        stats = find_duplicate_clusters([s / SIGNATURES_FILE for s in sources.dirs.values()], out,
                                        config)
        render_s_curve(out / "s_curve.png", config.num_bands, config.rows_per_band,
                       config.jaccard_threshold)
        histogram = stats["cluster_size_histogram"]
        bar_chart(list(histogram), list(histogram.values()), out / "cluster_sizes.png",
                  "near-duplicate clusters by size", "clusters")
        return stats

    stats = run_stage(final, "duplicate_clusters", produce, config=config,
                      count_keys=("documents", "clusters", "duplicates_removed"),
                      inputs={p: upstream(s) for p, s in sources.dirs.items()})
    lsh = stats["lsh"]
    return MaterializeResult(metadata={
        **partitions_metadata(sources),
        **numbers(stats, ["documents", "candidate_pairs", "verified_pairs", "clusters",
                          "cross_partition_clusters", "duplicates_removed", "duplicate_rate",
                          "seconds", "peak_rss_mb"]),
        "duplicates_removed_by_partition": MetadataValue.md(
            counts_table(stats["duplicates_removed_by_partition"], "partition")),
        "cluster_size_histogram": MetadataValue.md(
            counts_table(stats["cluster_size_histogram"], "cluster size", "clusters")),
        "cluster_sizes_plot": image_markdown(final / "cluster_sizes.png", "cluster sizes"),
        "example_clusters": MetadataValue.md(example_clusters_markdown(stats)),
        "lsh_s_curve": MetadataValue.md(
            f"{lsh['num_bands']} bands x {lsh['rows_per_band']} rows; probability that a pair "
            f"becomes a candidate:\n\n{markdown_table(lsh['s_curve'])}"),
        "lsh_s_curve_plot": image_markdown(final / "s_curve.png", "LSH S-curve"),
    })


@asset(partitions_def=crawl_partitions, deps=[filtered_documents, duplicate_clusters],
       group_name="dedup", kinds={"python", "parquet"},
       description="One file's filtered documents without the non-keepers of each cluster.")
def deduplicated_documents(
    context: AssetExecutionContext, storage: Storage, dedup: DedupSettings
) -> MaterializeResult:
    config = dedup.to_config()
    source = storage.artifact_dir("filtered_documents", context.partition_key)
    clusters = storage.artifact_dir("duplicate_clusters")
    stats = run_stage(
        storage.artifact_dir("deduplicated_documents", context.partition_key),
        "deduplicated_documents",
        lambda out: deduplicate_documents(source / "documents.parquet",
                                          clusters / CLUSTERS_FILE, out, config),
        config=config, count_keys=("documents_in", "documents_out"),
        inputs={"filtered_documents": upstream(source), "duplicate_clusters": upstream(clusters)})
    return MaterializeResult(metadata=numbers(
        stats, ["documents_in", "near_duplicates_removed", "documents_out", "text_bytes_in",
                "text_bytes_out"]))
