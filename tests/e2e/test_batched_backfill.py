"""A backfill over several crawl files runs them in one run per batch (the per-file assets'
backfill policy), with each partition's own artifact, metadata and check record."""

import random

import pytest
from dagster import AssetCheckKey, AssetKey, BackfillPolicy, DagsterInstance

from dagster_project.automation import automation_sensor
from dagster_project.definitions import defs
from dagster_project.home import EMBEDDED_CRAWL, ensure_dagster_home
from dagster_project.partitions import crawl_partitions
from lmlib.artifacts import read_manifest
from tests.conftest import lmpipe_environment

GOOD = ["sample-00000.warc.gz", "sample-00001.warc.gz"]
DAMAGED = "garbage.warc.gz"
PER_FILE = ("web_documents", "filtered_documents", "minhash_signatures", "deduplicated_documents")
CHECK = AssetCheckKey(AssetKey("web_documents"), "web_documents_nonempty_with_schema")


def test_per_file_assets_batch_partitions_per_run():
    graph = defs.resolve_asset_graph()
    for asset in PER_FILE:
        policy = graph.get(AssetKey(asset)).backfill_policy
        assert policy == BackfillPolicy.multi_run(max_partitions_per_run=20), asset
    # a tick that requests many partitions launches one backfill, which follows the policies
    assert automation_sensor.emit_backfills


@pytest.fixture
def batch(tmp_path, monkeypatch):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for name in GOOD:
        (crawl / name).symlink_to(EMBEDDED_CRAWL / name)
    (crawl / DAMAGED).write_bytes(random.Random(0).randbytes(64 * 1024))
    monkeypatch.setenv("LMPIPE_CRAWL_DIR", str(crawl))
    home = tmp_path / "lmpipe"
    with lmpipe_environment(home):
        ensure_dagster_home()
        with DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(crawl_partitions.name, [*GOOD, DAMAGED])
            job = defs.resolve_implicit_global_asset_job_def().get_subset(
                asset_selection={AssetKey("web_documents")})
            keys = crawl_partitions.get_partition_keys(dynamic_partitions_store=instance)
            result = job.execute_in_process(instance=instance, raise_on_error=False, tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1]})
            yield home, instance, result


def test_one_run_materializes_each_partition_with_its_own_metadata(batch):
    home, instance, result = batch
    records = instance.fetch_materializations(AssetKey("web_documents"), limit=10).records
    assert {record.run_id for record in records} == {result.run_id}
    documents = {r.partition_key: r.asset_materialization.metadata["documents"].value
                 for r in records}
    assert set(documents) == {*GOOD, DAMAGED}
    for name in GOOD:
        manifest = read_manifest(home / "artifacts" / "web_documents" / name)
        assert documents[name] == manifest["counts"]["documents"] > 100
    assert documents[DAMAGED] == 0


def test_a_damaged_file_fails_its_batch_check_by_name_and_is_recorded(batch):
    home, instance, result = batch
    evaluation = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    (check,) = [e.event_specific_data for e in evaluation]
    assert not check.passed
    assert check.description == f"{DAMAGED}: 0 documents: garbage_before_record: 1"
    assert check.metadata["partitions_failed"].value == 1
    failures = home / "failures" / "web_documents"
    assert [p.name for p in failures.iterdir()] == [DAMAGED]
    assert CHECK.name in (failures / DAMAGED / f"{CHECK.name}.json").read_text()
