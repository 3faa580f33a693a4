"""dedup group: MinHash signatures per file, clusters across all files, deduplicated documents.

The three assets read one `DedupSettings` resource (lmlib.dedup.MinHashConfig), so signatures,
clusters and the deduplicated documents always use the same settings.
"""

from dagster import AssetExecutionContext, MaterializeResult, asset

from dagster_project.assets.filters import filtered_documents
from dagster_project.automation import after_new_clusters_condition, per_file_condition
from dagster_project.metadata import partitions_metadata, result_metadata
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import DedupSettings, Storage
from dagster_project.stage import (
    batched_backfill,
    for_each_partition,
    materialization,
    partition_inputs,
    publish,
    upstream,
)
from lmlib.dedup import compute_minhash_signatures, deduplicate_documents, find_duplicate_clusters
from lmlib.formats import CLUSTERS_FILE, DOCUMENTS_FILE, SIGNATURES_FILE


@asset(partitions_def=crawl_partitions, backfill_policy=batched_backfill(),
       deps=[filtered_documents], automation_condition=per_file_condition(), group_name="dedup",
       kinds={"python", "parquet"},
       description="MinHash signatures and LSH band hashes of one file's filtered documents.")
def minhash_signatures(
    context: AssetExecutionContext, storage: Storage, dedup: DedupSettings
) -> MaterializeResult:
    config = dedup.build()

    def sign(partition: str) -> dict:
        source = storage.artifact_dir(filtered_documents, partition)
        result = publish(
            context, storage,
            lambda out: compute_minhash_signatures(source / DOCUMENTS_FILE, out, config,
                                                   partition=partition),
            config=config, inputs={"filtered_documents": upstream(source)}, partition=partition)
        return materialization(context, storage, result_metadata(result), partition=partition)

    return for_each_partition(context, sign)


@asset(deps=[minhash_signatures], group_name="dedup", kinds={"python", "polars"},
       description="Near-duplicate clusters across all files: LSH candidates, exact Jaccard "
                   "verification, union-find; one keeper per cluster.")
def duplicate_clusters(
    context: AssetExecutionContext, storage: Storage, dedup: DedupSettings
) -> MaterializeResult:
    config = dedup.build()
    sources = partition_inputs(context, storage, minhash_signatures)
    result = publish(
        context, storage,
        lambda out: find_duplicate_clusters(
            sources.files(SIGNATURES_FILE), out, config),
        config=config, inputs=sources.fingerprints())
    return MaterializeResult(**materialization(context, storage, {
        **partitions_metadata(sources), **result_metadata(result)}))


@asset(partitions_def=crawl_partitions, backfill_policy=batched_backfill(),
       deps=[filtered_documents, duplicate_clusters],
       automation_condition=after_new_clusters_condition(), group_name="dedup",
       kinds={"python", "parquet"},
       description="One file's filtered documents without the non-keepers of each cluster.")
def deduplicated_documents(
    context: AssetExecutionContext, storage: Storage, dedup: DedupSettings
) -> MaterializeResult:
    config = dedup.build()
    clusters = storage.artifact_dir(duplicate_clusters)

    def deduplicate(partition: str) -> dict:
        source = storage.artifact_dir(filtered_documents, partition)
        result = publish(
            context, storage,
            lambda out: deduplicate_documents(source / DOCUMENTS_FILE, clusters / CLUSTERS_FILE,
                                              out, config),
            config=config, partition=partition,
            inputs={"filtered_documents": upstream(source),
                    "duplicate_clusters": upstream(clusters)})
        return materialization(context, storage, result_metadata(result), partition=partition)

    return for_each_partition(context, deduplicate)
