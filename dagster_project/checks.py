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
