"""The Dagster instance the project writes: run retries, run monitoring, the gpu pool limit, and
existing dagster.yaml files brought up to date without losing what a user put there."""

import pytest
from dagster import DagsterInstance

from dagster_project.home import (
    EARLIER_DAGSTER_YAML,
    MANAGED_BEGIN,
    ensure_dagster_home,
    write_dagster_yaml,
)
from dagster_project.policies import GPU_POOL, instance_settings
from tests.conftest import lmpipe_environment

LIMIT_AND_RETRIES = ("LMPIPE_GPU_POOL_LIMIT", "LMPIPE_RUN_RETRIES")


@pytest.fixture
def instance_home(tmp_path, monkeypatch):
    for name in LIMIT_AND_RETRIES:
        monkeypatch.delenv(name, raising=False)
    with lmpipe_environment(tmp_path):
        yield tmp_path / "dagster"


def gpu_slots(home) -> int:
    with DagsterInstance.from_config(str(home)) as instance:
        return instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count


def test_new_instance_limits_the_gpu_pool_to_one_and_retries_runs(instance_home):
    assert ensure_dagster_home() == instance_home
    with DagsterInstance.from_config(str(instance_home)) as instance:
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 1
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        # step failures are retried by the assets' RetryPolicy, not a second time by the run
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
        # the daemons that re-launch failed runs and free slots of ended runs
        assert {"EVENT_LOG_CONSUMER", "MONITORING"} <= set(instance.get_required_daemon_types())
        assert not instance.telemetry_enabled


def test_limits_come_from_the_environment(instance_home, monkeypatch):
    monkeypatch.setenv("LMPIPE_GPU_POOL_LIMIT", "2")
    monkeypatch.setenv("LMPIPE_RUN_RETRIES", "0")
    ensure_dagster_home()
    assert gpu_slots(instance_home) == 2
    with DagsterInstance.from_config(str(instance_home)) as instance:
        assert not instance.run_retries_enabled
        assert "EVENT_LOG_CONSUMER" not in instance.get_required_daemon_types()


def test_a_limit_set_in_the_ui_stays_unless_the_environment_sets_one(instance_home, monkeypatch):
    ensure_dagster_home()
    with DagsterInstance.from_config(str(instance_home)) as instance:
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 3)  # what the UI/CLI does
    ensure_dagster_home()
    assert gpu_slots(instance_home) == 3
    monkeypatch.setenv("LMPIPE_GPU_POOL_LIMIT", "1")
    ensure_dagster_home()
    assert gpu_slots(instance_home) == 1


def test_bad_setting_is_reported_with_its_name(instance_home, monkeypatch):
    monkeypatch.setenv("LMPIPE_GPU_POOL_LIMIT", "one")
    with pytest.raises(ValueError, match="LMPIPE_GPU_POOL_LIMIT='one' is not a whole number"):
        ensure_dagster_home()


def test_dagster_yaml_of_an_earlier_version_is_regenerated(tmp_path):
    fresh, earlier = tmp_path / "fresh.yaml", tmp_path / "earlier.yaml"
    earlier.write_text(EARLIER_DAGSTER_YAML)
    assert write_dagster_yaml(fresh, instance_settings({}))
    assert write_dagster_yaml(earlier, instance_settings({}))
    assert earlier.read_text() == fresh.read_text()
    assert fresh.read_text().startswith(MANAGED_BEGIN)
    assert not write_dagster_yaml(fresh, instance_settings({}))  # up to date: left alone


def test_dagster_yaml_block_follows_the_environment(tmp_path):
    path = tmp_path / "dagster.yaml"
    write_dagster_yaml(path, instance_settings({}))
    assert write_dagster_yaml(path, instance_settings({"LMPIPE_RUN_RETRIES": "5"}))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_max_retries == 5


def test_dagster_yaml_keeps_the_users_settings_and_rewrites_only_its_block(tmp_path):
    path = tmp_path / "dagster.yaml"
    users = "# tuned by hand\nrun_retries:\n  enabled: false\ntelemetry:\n  enabled: true\n"
    path.write_text(users)
    assert write_dagster_yaml(path, instance_settings({}))
    text = path.read_text()
    assert text.startswith(users)
    block = text[len(users):]
    assert "run_retries" not in block and "telemetry" not in block  # the user's keys win
    assert "nux" in block and "run_monitoring" in block
    later = "python_logs:\n  python_log_level: INFO\n"
    path.write_text(text + later)  # added after the block
    path.write_text(path.read_text().replace("free_slots_after_run_end_seconds: 60",
                                             "free_slots_after_run_end_seconds: 1"))
    assert write_dagster_yaml(path, instance_settings({}))  # the block is put right
    assert path.read_text() == text + later
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert not instance.run_retries_enabled  # still the user's choice
        assert instance.telemetry_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60


def test_dagster_yaml_without_the_end_of_the_block_is_refused(tmp_path):
    path = tmp_path / "dagster.yaml"
    path.write_text(MANAGED_BEGIN + "nux:\n  enabled: false\n")
    with pytest.raises(ValueError, match="ends the block"):
        write_dagster_yaml(path, instance_settings({}))
