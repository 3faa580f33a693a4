"""A damaged crawl file among good ones: it fails on its own, the rest flow on without it.

The crawl directory holds the embedded sample-00000.warc.gz, the quality reference set and a
garbage.warc.gz of random bytes (a damaged download). The demo's code path runs over the graph
up to the token shards (base_model training is the slow part and reads only the shards).
"""

import random
import sys

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
    materialize,
)

from dagster_project.definitions import defs
from dagster_project.demo import LayerFailure, failure_reason, main, run_everything
from dagster_project.home import EMBEDDED_CRAWL, ensure_dagster_home
from lmlib.artifacts import read_manifest, write_manifest
from lmlib.formats import QUALITY_REFERENCE_FILE
from tests.conftest import lmpipe_environment

GOOD, DAMAGED = "sample-00000.warc.gz", "garbage.warc.gz"
GLOBAL_READERS = ["quality_classifier", "duplicate_clusters", "pretraining_corpus"]
DAMAGED_REASON = "web_documents_nonempty_with_schema: 0 documents: garbage_before_record: 1"


def _crawl_dir(directory, files):
    directory.mkdir()
    for name in files:
        if name == DAMAGED:
            (directory / name).write_bytes(random.Random(0).randbytes(64 * 1024))
        else:
            (directory / name).symlink_to(EMBEDDED_CRAWL / name)
    return directory


def _without_training(definitions):
    """The same graph up to token_shards: the demo's layers, minus the training and what
    follows it."""
    graph = definitions.resolve_asset_graph()
    keep = graph.get_ancestor_asset_keys(AssetKey("token_shards"), include_self=True)
    assets = [a for a in definitions.assets
              if set(getattr(a, "keys", {getattr(a, "key", None)})) <= keep]
    checks = [c for c in definitions.asset_checks
              if all(key.asset_key in keep for key in c.check_keys)]
    return Definitions(assets=assets, asset_checks=checks,
                       resources=definitions.resources)


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    crawl = _crawl_dir(root / "crawl", [GOOD, QUALITY_REFERENCE_FILE, DAMAGED])
    home = root / "lmpipe"
    # A stale artifact of the damaged file from a run before the download got damaged: it must
    # not be read as if it were good.
    stale = home / "artifacts" / "minhash_signatures" / DAMAGED
    stale.mkdir(parents=True)
    write_manifest(stale, stage="minhash_signatures")
    with pytest.MonkeyPatch.context() as patch, lmpipe_environment(home):
        patch.setenv("LMPIPE_CRAWL_DIR", str(crawl))
        ensure_dagster_home()
        with DagsterInstance.get() as instance:
            outcome = run_everything(_without_training(defs), instance, log=lambda message: None)
        yield home, outcome


def test_the_damaged_file_fails_alone_and_the_demo_succeeds(damaged_run):
    _, outcome = damaged_run
    assert outcome.succeeded, outcome.stopped
    assert outcome.failures == [LayerFailure("web_documents", DAMAGED, DAMAGED_REASON)]


def test_the_good_file_flows_through_to_the_token_shards(damaged_run):
    home, _ = damaged_run
    artifacts = home / "artifacts"
    assert read_manifest(artifacts / "deduplicated_documents" / GOOD)["counts"]["documents_out"] > 400
    assert not (artifacts / "filtered_documents" / DAMAGED).exists()  # its chain stopped
    assert set(read_manifest(artifacts / "pretraining_corpus")["inputs"]) == {GOOD}
    assert read_manifest(artifacts / "token_shards")["counts"]["tokens"] > 100_000


def test_global_stages_list_the_damaged_file_as_left_out_with_its_reason(damaged_run):
    home, _ = damaged_run
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        for asset in GLOBAL_READERS:
            record = instance.fetch_materializations(AssetKey(asset), limit=1).records[0]
            metadata = record.asset_materialization.metadata
            assert metadata["partitions_used"].value == 1, asset
            assert metadata["partitions_left_out"].value == 1, asset
            assert f"| {DAMAGED} | {DAMAGED_REASON} |" in metadata["left_out"].value, asset
    # The stale signatures of the damaged file were not clustered.
    assert set(read_manifest(home / "artifacts" / "duplicate_clusters")["inputs"]) == {GOOD}


def test_the_damaged_partition_stays_failed_in_the_instance(damaged_run):
    home, _ = damaged_run
    check = AssetCheckKey(AssetKey("web_documents"), "web_documents_nonempty_with_schema")
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        failed_runs = instance.get_run_records(RunsFilter(
            statuses=[DagsterRunStatus.FAILURE], tags={"dagster/partition": DAMAGED}))
        history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    assert len(failed_runs) == 1
    latest = {record.partition: record for record in reversed(history)}
    assert latest[DAMAGED].status.value == "FAILED"
    assert latest[GOOD].status.value == "SUCCEEDED"
    evaluation = latest[DAMAGED].event.dagster_event.event_specific_data
    assert evaluation.description == "0 documents: garbage_before_record: 1"


@pytest.fixture
def only_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_CRAWL_DIR", str(_crawl_dir(tmp_path / "crawl", [DAMAGED])))
    monkeypatch.setattr(sys, "argv", ["demo"])
    with lmpipe_environment(tmp_path / "lmpipe"):
        yield


def test_a_directory_of_only_damaged_files_makes_the_demo_exit_non_zero(only_damaged):
    with pytest.raises(SystemExit) as exit_info:
        main()
    message = str(exit_info.value.code)
    assert "no crawl file got through web_documents" in message
    assert f"web_documents [{DAMAGED}]: {DAMAGED_REASON}" in message


def test_a_global_stage_with_every_partition_left_out_fails_naming_the_reasons(only_damaged):
    with pytest.raises(SystemExit):
        main()
    with DagsterInstance.get() as instance:
        result = materialize([*defs.assets, *defs.asset_checks], selection=["quality_classifier"],
                             instance=instance, resources=defs.resources, raise_on_error=False)
    assert not result.success
    assert failure_reason(result) == (
        "no crawl partition of web_documents can be used; every one was left out:\n"
        f"  {DAMAGED}: {DAMAGED_REASON}")
