"""Automation: declarative conditions evaluated with Dagster's own API on a temporary instance,
the crawl sensor's completeness rule and per-tick limit, and what the definitions list."""

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
)

from dagster_project.automation import (
    crawl_file_sensor,
    enough_new_files_sensor,
    refresh_corpus_schedule,
)
from dagster_project.definitions import defs
from dagster_project.home import ensure_dagster_home
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from tests.conftest import lmpipe_environment

PER_FILE = ("web_documents", "filtered_documents", "minhash_signatures", "deduplicated_documents")
GLOBAL = ("quality_classifier", "duplicate_clusters", "pretraining_corpus", "bpe_tokenizer",
          "token_shards", "base_model")


@pytest.fixture
def instance(tmp_path):
    with lmpipe_environment(tmp_path / "lmpipe"):
        home = ensure_dagster_home()
        with DagsterInstance.from_config(str(home)) as instance:
            yield instance


def materialize(instance, asset, partition=None):
    instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))


def requested(result) -> set[tuple[str, str | None]]:
    return {(r.key.to_user_string(), partition) for r in result.results
            if result.get_num_requested(r.key)
            for partition in result.get_requested_partitions(r.key)}


@pytest.fixture
def settled(instance):
    """One crawl partition with every asset materialized, and the cursor after a quiet tick."""
    instance.add_dynamic_partitions(crawl_partitions.name, ["a.warc.gz"])
    for asset in PER_FILE:
        materialize(instance, asset, "a.warc.gz")
    for asset in GLOBAL:
        materialize(instance, asset)
    result = evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0, requested(result)
    return result.cursor


def test_new_crawl_partition_requests_only_its_per_file_chain(instance, settled):
    instance.add_dynamic_partitions(crawl_partitions.name, ["b.warc.gz"])
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled)
    # dedup of the new file waits for the nightly clusters; nothing global, nothing of file a
    assert requested(result) == {("web_documents", "b.warc.gz"),
                                 ("filtered_documents", "b.warc.gz"),
                                 ("minhash_signatures", "b.warc.gz")}


def test_new_quality_classifier_does_not_refilter_every_file(instance, settled):
    materialize(instance, "quality_classifier")
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled)
    assert result.total_requested == 0, requested(result)


def test_new_duplicate_clusters_rededuplicates_every_file(instance, settled):
    materialize(instance, "duplicate_clusters")
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled)
    assert requested(result) == {("deduplicated_documents", "a.warc.gz")}


def test_definitions_list_jobs_schedules_and_sensors():
    repository = defs.get_repository_def()
    sensors = {s.name: s for s in repository.sensor_defs}
    assert set(sensors) == {"crawl_file_sensor", "lmpipe_automation_sensor",
                            "enough_new_files_sensor"}
    assert sensors["enough_new_files_sensor"].job_name == "refresh_corpus"
    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in sensors.values())
    schedule = repository.get_schedule_def("refresh_corpus_schedule")
    assert schedule.job_name == "refresh_corpus"
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    assert repository.has_job("refresh_corpus")
    base_model = repository.asset_graph.get(AssetKey("base_model"))
    assert base_model.automation_condition is None
    evaluation = repository.get_schedule_def("nightly_evaluation_schedule")
    assert evaluation.job_name == "evaluate_checkpoints"
    assert evaluation.default_status == DefaultScheduleStatus.RUNNING
    evaluated = {AssetKey(f"{name}_eval") for name in (
        "base_model", "sft_model", "sft_control_model", "grpo_model", "expert_iteration_model",
        "dpo_model")}
    assert set(repository.get_job("evaluate_checkpoints").asset_layer.executable_asset_keys) == {
        *evaluated, AssetKey("eval_report")}


def test_nightly_evaluation_waits_for_a_base_model(instance):
    from dagster_project.automation import nightly_evaluation_schedule

    skipped = nightly_evaluation_schedule(build_schedule_context(instance=instance))
    assert "no base_model" in skipped.skip_message
    instance.report_runless_asset_event(AssetMaterialization("base_model"))
    request = nightly_evaluation_schedule(build_schedule_context(instance=instance))
    assert request.run_key is None


def tick(instance, crawl_dir, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"storage": Storage(crawl_dir=str(crawl_dir))})
    result = crawl_file_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result, context.cursor if result.cursor is None else result.cursor


def test_crawl_sensor_waits_for_a_stable_file(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_CRAWL_STABLE_SECONDS", "0")
    crawl_dir = tmp_path / "crawl"
    crawl_dir.mkdir()
    growing = crawl_dir / "a.warc.gz"
    growing.write_bytes(b"x" * 10)
    result, cursor = tick(instance, crawl_dir)
    assert result.skip_reason and "a.warc.gz" in result.skip_reason.skip_message
    growing.write_bytes(b"x" * 20)  # still downloading
    result, cursor = tick(instance, crawl_dir, cursor)
    assert "size or mtime changed" in result.skip_reason.skip_message
    result, cursor = tick(instance, crawl_dir, cursor)
    assert instance.get_dynamic_partitions(crawl_partitions.name) == ["a.warc.gz"]
    assert not result.run_requests  # the automation sensor requests the runs


def test_crawl_sensor_takes_a_done_marker_at_once_and_respects_the_per_tick_limit(
        instance, tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_CRAWL_MAX_NEW_PER_TICK", "2")
    crawl_dir = tmp_path / "crawl"
    crawl_dir.mkdir()
    for name in ("a", "b", "c"):
        (crawl_dir / f"{name}.warc.gz").write_bytes(b"x")
        (crawl_dir / f"{name}.warc.gz.done").touch()
    result, cursor = tick(instance, crawl_dir)
    assert instance.get_dynamic_partitions(crawl_partitions.name) == ["a.warc.gz", "b.warc.gz"]
    result, cursor = tick(instance, crawl_dir, cursor)
    assert sorted(instance.get_dynamic_partitions(crawl_partitions.name)) == [
        "a.warc.gz", "b.warc.gz", "c.warc.gz"]


def test_corpus_refresh_waits_for_enough_new_files(instance, settled, monkeypatch):
    monkeypatch.setenv("LMPIPE_CORPUS_REFRESH_NEW_FILES", "2")
    schedule_context = build_schedule_context(instance=instance)
    assert isinstance(refresh_corpus_schedule(schedule_context), SkipReason)
    sensor_context = build_sensor_context(instance=instance)
    instance.add_dynamic_partitions(crawl_partitions.name, ["b.warc.gz", "c.warc.gz"])
    materialize(instance, "minhash_signatures", "b.warc.gz")
    assert "1 crawl file(s) signed since the last refresh; refreshing at 2" in (
        enough_new_files_sensor(sensor_context).skip_message)
    assert refresh_corpus_schedule(schedule_context).run_key is None  # the night would run it
    materialize(instance, "minhash_signatures", "c.warc.gz")
    request = enough_new_files_sensor(sensor_context)
    assert request.tags["lmpipe/new_crawl_files"] == "2"
    materialize(instance, "duplicate_clusters")  # the refresh ran: the count starts again
    assert isinstance(enough_new_files_sensor(sensor_context), SkipReason)
    assert isinstance(refresh_corpus_schedule(schedule_context), SkipReason)


def test_a_fresh_factory_builds_its_quality_classifier_once_a_file_is_extracted(instance):
    result = evaluate_automation_conditions(defs=defs, instance=instance)  # the first tick
    assert ("quality_classifier", None) not in requested(result)  # no crawl file yet
    instance.add_dynamic_partitions(crawl_partitions.name, ["a.warc.gz", "damaged.warc.gz"])
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert ("quality_classifier", None) not in requested(result)  # nothing extracted yet
    materialize(instance, "web_documents", "a.warc.gz")
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert ("quality_classifier", None) in requested(result)
    materialize(instance, "quality_classifier")
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert ("quality_classifier", None) not in requested(result)
    assert ("filtered_documents", "a.warc.gz") in requested(result)
