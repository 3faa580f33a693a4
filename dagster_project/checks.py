"""Asset checks: what must hold before data flows on (blocking) and what a person should see.

The blocking per-file checks record their failures (`stage.recorded_checks`), so that a failed crawl
file stays failed in the UI with its reason while the global stages go on without it.
"""


import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from dagster_project.assets.filters import filtered_documents
from dagster_project.assets.web import web_documents
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from dagster_project.stage import recorded_checks
from lmlib.artifacts import read_manifest
from lmlib.formats import DOCUMENTS_FILE
from lmlib.web.extraction import DOCUMENT_SCHEMA


@asset_check(asset=web_documents, blocking=True, partitions_def=crawl_partitions,
             description="documents.parquet exists, matches the document schema and is non-empty.")
def web_documents_nonempty_with_schema(
    context: AssetCheckExecutionContext, storage: Storage
) -> AssetCheckResult:
    return recorded_checks(context, storage, lambda partition: _nonempty_with_schema(
        storage.artifact_dir(web_documents, partition)))


def _nonempty_with_schema(directory) -> AssetCheckResult:
    counts = read_manifest(directory)["counts"]
    schema = pq.read_schema(directory / DOCUMENTS_FILE)
    rows = pq.ParquetFile(directory / DOCUMENTS_FILE).metadata.num_rows
    schema_ok = schema.remove_metadata().equals(DOCUMENT_SCHEMA)
    skipped = ", ".join(f"{reason}: {n}" for reason, n in counts.get("skipped", {}).items())
    if not schema_ok:
        description = f"schema differs: {schema}"
    elif rows == 0:  # e.g. a damaged download: "0 documents: garbage_before_record: 1"
        description = f"0 documents: {skipped or 'no HTML responses'}"
    else:
        description = None
    return AssetCheckResult(
        passed=schema_ok and rows > 0,
        metadata={"rows": rows, "schema_matches": schema_ok},
        description=description,
    )


def _filter_manifest(storage: Storage, partition: str) -> dict:
    return read_manifest(storage.artifact_dir(filtered_documents, partition))["counts"]


@asset_check(asset=filtered_documents, blocking=True, partitions_def=crawl_partitions,
             description="Every input document is either kept or removed by exactly one filter.")
def filter_funnel_adds_up(context: AssetCheckExecutionContext, storage: Storage) -> AssetCheckResult:
    return recorded_checks(context, storage, lambda partition: _funnel_adds_up(
        _filter_manifest(storage, partition)))


def _funnel_adds_up(counts: dict) -> AssetCheckResult:
    removed = sum(counts["removed"].values())
    passed = removed + counts["kept"] == counts["documents_in"]
    return AssetCheckResult(
        passed=passed,
        metadata={"documents_in": counts["documents_in"], "removed": removed, "kept": counts["kept"]},
        description=None if passed else (
            f"{removed} removed + {counts['kept']} kept != {counts['documents_in']} documents in"),
    )


@asset_check(asset=filtered_documents, blocking=True, partitions_def=crawl_partitions,
             description="Some documents survive filtering (thresholds are not rejecting everything).")
def filter_keeps_something(context: AssetCheckExecutionContext, storage: Storage) -> AssetCheckResult:
    return recorded_checks(context, storage, lambda partition: _keeps_something(
        _filter_manifest(storage, partition)))


def _keeps_something(counts: dict) -> AssetCheckResult:
    removed = ", ".join(f"{name}: {n}" for name, n in counts["removed"].items() if n)
    return AssetCheckResult(
        passed=counts["kept"] > 0, metadata={"kept": counts["kept"]},
        description=None if counts["kept"] > 0 else (
            f"0 of {counts['documents_in']} documents kept (removed by {removed or 'nothing'})"),
    )
