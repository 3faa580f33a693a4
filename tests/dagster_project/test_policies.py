"""The training retry policy's settings, and the gpu pool making a second GPU step wait."""

import pytest
from dagster import Backoff, DagsterInstance, execute_job, reconstructable

from dagster_project.assets.pretrain import base_model
from dagster_project.home import ensure_dagster_home
from dagster_project.policies import (
    GPU_POOL,
    TRAINING_RETRY_POLICY,
    training_retry_policy,
)
from tests.conftest import lmpipe_environment
from tests.dagster_project import gpu_pool_job


def test_base_model_is_in_the_gpu_pool_and_retries_with_exponential_backoff():
    assert base_model.op.pool == GPU_POOL
    assert base_model.op.retry_policy == TRAINING_RETRY_POLICY
    default = training_retry_policy({})
    assert (default.max_retries, default.delay, default.backoff) == (3, 30.0, Backoff.EXPONENTIAL)
    assert [default.calculate_delay(attempt) for attempt in (1, 2, 3)] == [30.0, 90.0, 210.0]
    configured = training_retry_policy({"LMPIPE_TRAINING_RETRIES": "5",
                                        "LMPIPE_TRAINING_RETRY_DELAY": "2.5"})
    assert (configured.max_retries, configured.delay) == (5, 2.5)
    with pytest.raises(ValueError, match="LMPIPE_TRAINING_RETRIES"):
        training_retry_policy({"LMPIPE_TRAINING_RETRIES": "-1"})


def test_a_second_gpu_step_waits_for_the_first(tmp_path, monkeypatch):
    """Two GPU steps of one run, free to run in parallel under the multiprocess executor: with
    the pool's limit of 1 (a new instance's default) the second is blocked until the first ends."""
    monkeypatch.delenv("LMPIPE_GPU_POOL_LIMIT", raising=False)
    job = reconstructable(gpu_pool_job.two_gpu_trainings)
    intervals = tmp_path / "intervals"
    intervals.mkdir()
    with lmpipe_environment(tmp_path):
        home = ensure_dagster_home()
        with DagsterInstance.from_config(str(home)) as instance:
            with execute_job(job, instance, run_config=gpu_pool_job.run_config(intervals)) as run:
                assert run.success
                blocked = {event.step_key for event in run.all_events
                           if event.message == f"Step blocked by limit for pool {GPU_POOL}"}
            assert instance.event_log_storage.get_concurrency_info(GPU_POOL).claimed_slots == []
    (_, first_end), (second_start, _) = gpu_pool_job.intervals(intervals)
    assert second_start >= first_end
    assert len(blocked) == 1  # whichever step came second waited for the pool's one slot
