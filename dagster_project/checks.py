"""Asset checks: what must hold before data flows on (blocking) and what a person should see."""


import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from dagster_project.assets.web import web_documents
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from lmlib.artifacts import read_manifest
from lmlib.web.documents import DOCUMENT_SCHEMA, DOCUMENTS_FILE


@asset_check(asset=web_documents, blocking=True, partitions_def=crawl_partitions,
             description="documents.parquet exists, matches the document schema and is non-empty.")
def web_documents_nonempty_with_schema(
    context: AssetCheckExecutionContext, storage: Storage
) -> AssetCheckResult:
    directory = storage.artifact_dir("web_documents", context.partition_key)
    read_manifest(directory)
    schema = pq.read_schema(directory / DOCUMENTS_FILE)
    rows = pq.ParquetFile(directory / DOCUMENTS_FILE).metadata.num_rows
    schema_ok = schema.remove_metadata().equals(DOCUMENT_SCHEMA)
    return AssetCheckResult(
        passed=schema_ok and rows > 0,
        metadata={"rows": rows, "schema_matches": schema_ok},
        description=None if schema_ok else f"schema differs: {schema}",
    )


def _filter_manifest(storage: Storage, partition: str) -> dict:
    return read_manifest(storage.artifact_dir("filtered_documents", partition))["counts"]


@asset_check(asset="filtered_documents", blocking=True, partitions_def=crawl_partitions,
             description="Every input document is either kept or removed by exactly one filter.")
def filter_funnel_adds_up(context: AssetCheckExecutionContext, storage: Storage) -> AssetCheckResult:
    counts = _filter_manifest(storage, context.partition_key)
    removed = sum(counts["removed"].values())
    return AssetCheckResult(
        passed=removed + counts["kept"] == counts["documents_in"],
        metadata={"documents_in": counts["documents_in"], "removed": removed, "kept": counts["kept"]},
    )


@asset_check(asset="filtered_documents", blocking=True, partitions_def=crawl_partitions,
             description="Some documents survive filtering (thresholds are not rejecting everything).")
def filter_keeps_something(context: AssetCheckExecutionContext, storage: Storage) -> AssetCheckResult:
    counts = _filter_manifest(storage, context.partition_key)
    return AssetCheckResult(passed=counts["kept"] > 0, metadata={"kept": counts["kept"]})
