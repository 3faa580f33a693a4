"""web group: crawl files (source, one partition each) -> extracted web documents."""


from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, asset

from dagster_project.automation import per_file_condition
from dagster_project.metadata import result_metadata
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from dagster_project.stage import config_class, materialization, publish
from lmlib.artifacts import sha256_file
from lmlib.web.extraction import ExtractConfig, extract_documents

crawl_files = AssetSpec(
    "crawl_files",
    description="WARC/WET files in the crawl directory; the sensor adds one partition per file.",
    partitions_def=crawl_partitions,
    group_name="web",
    kinds={"warc"},
)


WebDocumentsConfig = config_class(ExtractConfig, "WebDocumentsConfig")


@asset(
    partitions_def=crawl_partitions,
    deps=[crawl_files],
    automation_condition=per_file_condition(ignore=("crawl_files",)),
    group_name="web",
    kinds={"python", "parquet"},
    description="Text extracted from every HTML response (and WET conversion) of one crawl file.",
)
def web_documents(
    context: AssetExecutionContext, config: WebDocumentsConfig, storage: Storage
) -> MaterializeResult:
    crawl_file = storage.crawl_file(context.partition_key)
    extract_config = config.build()
    result = publish(
        context, storage,
        lambda out: extract_documents(crawl_file, out, extract_config, log=context.log.info),
        config=extract_config,
        inputs={"crawl_file": crawl_file.name, "sha256": sha256_file(crawl_file)},
    )
    context.log.info(f"{crawl_file.name}: {result.documents} documents, skipped {result.skipped}")
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result),
        "path": MetadataValue.path(str(storage.artifact_dir(context.asset_key,
                                                            context.partition_key))),
    }))
