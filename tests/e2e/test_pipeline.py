"""The whole graph, materialized through Dagster's Python API on the embedded default."""

import json

import pyarrow.parquet as pq
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from dagster_project.definitions import defs
from dagster_project.demo import run_everything
from dagster_project.home import EMBEDDED_CRAWL
from dagster_project.partitions import SCALING_SWEEP
from lmlib.artifacts import read_manifest
from lmlib.formats import DOCUMENTS_FILE
from tests.conftest import materialize_pipeline

PARTITIONS = sorted(p.name for p in EMBEDDED_CRAWL.glob("*.warc.gz"))


def test_every_partition_of_web_documents_is_materialized_with_a_manifest(pipeline_home):
    home, _ = pipeline_home
    total = 0
    for partition in PARTITIONS:
        directory = home / "artifacts" / "web_documents" / partition
        manifest = read_manifest(directory)
        rows = pq.ParquetFile(directory / DOCUMENTS_FILE).metadata.num_rows
        assert manifest["counts"]["documents"] == rows > 500
        assert set(manifest["files"]) == {DOCUMENTS_FILE}
        total += rows
    assert total > 2000
    leftovers = [p.name for p in (home / "artifacts" / "web_documents").iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []  # no temporary or half-written directories


def test_materialization_metadata_is_recorded_for_each_partition(pipeline_home):
    _, dagster_home = pipeline_home
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.fetch_materializations(AssetKey("web_documents"), limit=50).records
    by_partition = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert set(PARTITIONS) <= set(by_partition)
    for partition in PARTITIONS:
        assert by_partition[partition]["documents"].value > 500
        assert "not_html" in by_partition[partition]["skipped"].value
    assert by_partition[PARTITIONS[-1]]["truncated_file"].value is True
    assert by_partition[PARTITIONS[0]]["truncated_file"].value is False


def test_rematerializing_a_partition_gives_identical_content_hashes(pipeline_home):
    home, dagster_home = pipeline_home
    directory = home / "artifacts" / "web_documents" / PARTITIONS[0]
    before = (directory / "manifest.json").read_text()
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        outcome = run_everything(_only_web(defs), instance, log=lambda m: None,
                                 partitions=[PARTITIONS[0]])
    assert outcome.succeeded and not outcome.failures, outcome.summary()
    after = (directory / "manifest.json").read_text()
    assert json.loads(after)["files"] == json.loads(before)["files"]


def _only_web(definitions):
    """The same Definitions, restricted to the web group, so only extraction re-runs."""
    from dagster import Definitions

    web = [a for a in definitions.assets if getattr(a, "group_names_by_key", None)
           and set(a.group_names_by_key.values()) == {"web"}]
    specs = [a for a in definitions.assets if not hasattr(a, "group_names_by_key")]
    checks = [c for c in definitions.asset_checks or []
              if all(k.asset_key.to_user_string() == "web_documents" for k in c.check_keys)]
    return Definitions(assets=[*specs, *web], asset_checks=checks, resources=definitions.resources)


def _counts(home, asset, partition=None):
    directory = home / "artifacts" / asset
    return read_manifest(directory / partition if partition else directory)["counts"]


def test_filter_funnel_adds_up_and_keeps_prose(pipeline_home):
    home, _ = pipeline_home
    for partition in PARTITIONS:
        counts = _counts(home, "filtered_documents", partition)
        assert sum(counts["removed"].values()) + counts["kept"] == counts["documents_in"]
        assert counts["removed"]["language"] > 50  # the sample's other-language pages
        assert counts["removed"]["gopher"] > 20  # near-empty pages and ellipsis teasers
        assert counts["removed"]["quality"] > 5  # keyword stuffing and link farms
        assert counts["kept"] > 0.5 * counts["documents_in"]


def test_planted_duplicates_are_found_across_files(pipeline_home):
    home, dagster_home = pipeline_home
    counts = _counts(home, "duplicate_clusters")
    assert counts["clusters"] > 100 and counts["duplicates_removed"] > 150
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        record = instance.fetch_materializations(AssetKey("duplicate_clusters"), limit=1).records[0]
    assert record.asset_materialization.metadata["cross_partition_clusters"].value > 20
    kept = sum(_counts(home, "deduplicated_documents", p)["documents_out"] for p in PARTITIONS)
    assert kept == counts["documents"] - counts["duplicates_removed"]


def test_tokenizer_shards_and_base_model(pipeline_home):
    home, dagster_home = pipeline_home
    corpus = _counts(home, "pretraining_corpus")
    shards = _counts(home, "token_shards")
    assert shards["documents"] == corpus["train_documents"] + corpus["val_documents"]
    assert 2.0 < _counts(home, "bpe_tokenizer")["bytes_per_token"] < 6.0
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        checks = {key.name: instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [key])[key].status.value for key in [
                AssetCheckKey(AssetKey("bpe_tokenizer"), "round_trip")]}
        record = instance.fetch_materializations(AssetKey("base_model"), limit=1).records[0]
    assert checks == {"round_trip": "SUCCEEDED"}
    metadata = record.asset_materialization.metadata
    assert metadata["final_train_loss"].value < metadata["first_train_loss"].value - 2.0
    assert (home / "artifacts" / "base_model" / "model" / "model.pt").exists()


def test_a_second_run_of_the_whole_graph_gives_byte_identical_artifacts(pipeline_home, tmp_path):
    home, _ = pipeline_home
    again = tmp_path / "again"
    materialize_pipeline(again)
    manifests = sorted((home / "artifacts").rglob("manifest.json"))
    sweep = len(SCALING_SWEEP.sizes) * len(SCALING_SWEEP.budgets)
    # 4 per-file assets x 3 files + 6 global assets + hf_export + the sweep + scaling_laws
    # and scaling_check + the five post-trained models + six evaluations and eval_report
    assert len(manifests) == 18 + 1 + sweep + 2 + 5 + 7
    for manifest in manifests:
        first = json.loads(manifest.read_text())["files"]
        second = read_manifest(again / manifest.parent.relative_to(home))["files"]
        # the training log, the evaluation's timings and the report card record timings
        for timed in ("log.jsonl", "timings.json", "report.md"):
            first.pop(timed, None), second.pop(timed, None)
        assert first == second, manifest.parent.relative_to(home)


def test_base_model_killed_mid_run_resumes_to_the_same_weights(pipeline_home):
    import shutil

    import torch
    from dagster import materialize

    home, dagster_home = pipeline_home
    run_config = {"ops": {"base_model": {"config": {
        "max_steps": 20, "checkpoint_interval": 10, "batch_size": 4}}}}
    artifact = home / "artifacts" / "base_model"

    def materialize_base_model(instance):
        result = materialize([*defs.assets, *defs.asset_checks], selection=["base_model"],
                             instance=instance, resources=defs.resources, run_config=run_config)
        assert result.success
        return torch.load(artifact / "model" / "model.pt", weights_only=True)

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        uninterrupted = materialize_base_model(instance)
        # A crash after the step-10 checkpoint: later checkpoints, the final weights and the
        # artifact never got written.
        run_dir = next(d for d in (home / "runs" / "base_model").iterdir()
                       if (d / "checkpoints" / "step_00000020").exists())
        shutil.rmtree(run_dir / "checkpoints" / "step_00000020")
        shutil.rmtree(run_dir / "model")
        shutil.rmtree(artifact)
        resumed = materialize_base_model(instance)
        record = instance.fetch_materializations(AssetKey("base_model"), limit=1).records[0]
    assert record.asset_materialization.metadata["resumed_from_step"].value == 10
    assert uninterrupted.keys() == resumed.keys()
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)


def test_base_model_trains_through_torchrun_with_two_processes(pipeline_home):
    from dagster import materialize

    home, dagster_home = pipeline_home
    run_config = {"ops": {"base_model": {"config": {
        "launcher": "torchrun", "nproc_per_node": 2, "max_steps": 6, "batch_size": 2,
        "checkpoint_interval": 3}}}}
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        result = materialize([*defs.assets, *defs.asset_checks], selection=["base_model"],
                             instance=instance, resources=defs.resources, run_config=run_config)
        assert result.success
        record = instance.fetch_materializations(AssetKey("base_model"), limit=1).records[0]
    metadata = record.asset_materialization.metadata
    assert metadata["steps"].value == 6
    assert metadata["tokens_trained"].value == 6 * 2 * 2 * 128  # steps x ranks x batch x context
    manifest = read_manifest(home / "artifacts" / "base_model")
    assert manifest["config"]["strategy"] == "ddp"
