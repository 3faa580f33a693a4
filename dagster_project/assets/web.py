"""web group: crawl files (source, one partition each) -> extracted web documents."""


from dagster import (
    AssetExecutionContext,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.metadata import counts_table, markdown_table, numbers
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from dagster_project.stage import run_stage
from lmlib.artifacts import sha256_file
from lmlib.web.documents import ExtractConfig, extract_documents

crawl_files = AssetSpec(
    "crawl_files",
    description="WARC/WET files in the crawl directory; the sensor adds one partition per file.",
    partitions_def=crawl_partitions,
    group_name="web",
    kinds={"warc"},
)


class WebDocumentsConfig(Config):
    """Mirrors lmlib.web.ExtractConfig; defaults are the demo's."""

    workers: int = 2
    batch_records: int = 64
    keep_http_errors: bool = False


@asset(
    partitions_def=crawl_partitions,
    deps=[crawl_files],
    group_name="web",
    kinds={"python", "parquet"},
    description="Text extracted from every HTML response (and WET conversion) of one crawl file.",
)
def web_documents(
    context: AssetExecutionContext, config: WebDocumentsConfig, storage: Storage
) -> MaterializeResult:
    crawl_file = storage.crawl_file(context.partition_key)
    extract_config = ExtractConfig(**config.model_dump())
    stats = run_stage(
        storage.artifact_dir("web_documents", context.partition_key), "web_documents",
        lambda out: extract_documents(crawl_file, out, extract_config, log=context.log.info),
        config=extract_config, count_keys=("records", "documents", "records_skipped", "skipped"),
        inputs={"crawl_file": crawl_file.name, "sha256": sha256_file(crawl_file)},
    )
    context.log.info(f"{crawl_file.name}: {stats['documents']} documents, skipped {stats['skipped']}")
    return MaterializeResult(metadata={
        **numbers(stats, ["records", "documents", "records_skipped", "compressed_bytes_in",
                          "payload_bytes", "text_bytes_out", "documents_per_second", "seconds"]),
        "truncated_file": MetadataValue.bool(stats["truncated_file"]),
        "records_by_type": MetadataValue.md(counts_table(stats["records_by_type"], "record type")),
        "skipped_by_reason": MetadataValue.md(counts_table(stats["skipped"], "reason")),
        "preview": MetadataValue.md(markdown_table(stats["preview"])),
        "path": MetadataValue.path(str(storage.artifact_dir("web_documents", context.partition_key))),
    })
