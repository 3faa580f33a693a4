"""web group: crawl files (source, one partition each) -> extracted web documents."""

import warnings

from dagster import (
    AssetExecutionContext,
    DataVersion,
    DataVersionsByPartition,
    MaterializeResult,
    MetadataValue,
    asset,
    observable_source_asset,
)
from dagster._utils.warnings import BetaWarning

from dagster_project.automation import per_file_condition
from dagster_project.crawl_versions import crawl_file_versions
from dagster_project.metadata import result_metadata
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from dagster_project.stage import (
    batched_backfill,
    config_class,
    for_each_partition,
    materialization,
    publish,
)
from lmlib.artifacts import sha256_file
from lmlib.web.extraction import ExtractConfig, extract_documents


def observe_crawl_files(context, storage: Storage) -> DataVersionsByPartition:
    """Observe every registered crawl file: its sha256 (cached by size and mtime)."""
    keys = context.instance.get_dynamic_partitions(crawl_partitions.name)
    versions = crawl_file_versions(storage.home_path, storage.crawl_path, keys)
    return DataVersionsByPartition({key: DataVersion(digest) for key, digest in versions.items()})


with warnings.catch_warnings():  # observable_source_asset is beta in Dagster 1.13
    warnings.simplefilter("ignore", BetaWarning)
    crawl_files = observable_source_asset(
        name="crawl_files",
        partitions_def=crawl_partitions,
        group_name="web",
        tags={"dagster/kind/warc": ""},
        description="WARC/WET files in the crawl directory; the crawl sensor adds one partition "
                    "per file and reports each new or rewritten file's sha256 as its data "
                    "version, so the chain of a changed file is marked stale.",
    )(observe_crawl_files)


WebDocumentsConfig = config_class(ExtractConfig, "WebDocumentsConfig")


@asset(
    partitions_def=crawl_partitions,
    backfill_policy=batched_backfill(),
    deps=[crawl_files],
    automation_condition=per_file_condition(ignore=("crawl_files",)),
    group_name="web",
    kinds={"python", "parquet"},
    description="Text extracted from every HTML response (and WET conversion) of one crawl file.",
)
def web_documents(
    context: AssetExecutionContext, config: WebDocumentsConfig, storage: Storage
) -> MaterializeResult:
    extract_config = config.build()

    def extract(partition: str) -> dict:
        crawl_file = storage.crawl_file(partition)
        result = publish(
            context, storage,
            lambda out: extract_documents(crawl_file, out, extract_config, log=context.log.info),
            config=extract_config,
            inputs={"crawl_file": crawl_file.name, "sha256": sha256_file(crawl_file)},
            partition=partition,
        )
        context.log.info(f"{crawl_file.name}: {result.documents} documents, "
                         f"skipped {result.skipped}")
        return materialization(context, storage, {
            **result_metadata(result),
            "path": MetadataValue.path(str(storage.artifact_dir(context.asset_key, partition))),
        }, partition=partition)

    return for_each_partition(context, extract)
