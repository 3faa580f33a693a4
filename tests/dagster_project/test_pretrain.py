"""base_model through Dagster: a training step that fails once is retried by its RetryPolicy and
resumes from the checkpoint written before the fault instead of starting over."""

from dagster import AssetKey, DagsterEventType, DagsterInstance, materialize

import dagster_project.launcher as launcher
from dagster_project.definitions import defs
from dagster_project.home import ensure_dagster_home
from lmlib.train import latest_checkpoint

# A 100k-parameter model for 4 steps. The step-4 log record (the last step's) is written before the
# step-4 checkpoint, so a fault raised from it leaves the step-2 checkpoint as the latest.
RUN_CONFIG = {"ops": {"base_model": {"config": {
    "max_steps": 4, "checkpoint_interval": 2, "batch_size": 4,
    "model": {"context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 2}}}}}
FAULT_AT_STEP = 4


def test_a_training_step_that_fails_once_is_retried_and_resumes(training_home, monkeypatch):
    real_train = launcher.train
    run_dirs = []

    def train_with_one_fault(config, data_dir, run_dir, progress=None, **kwargs):
        run_dirs.append(run_dir)
        if len(run_dirs) > 1:
            return real_train(config, data_dir, run_dir, progress=progress, **kwargs)

        def fail_at_step(record):
            if progress is not None:
                progress(record)
            if record["kind"] == "train" and record["step"] == FAULT_AT_STEP:
                raise RuntimeError("injected fault: the accelerator went away")

        return real_train(config, data_dir, run_dir, progress=fail_at_step, **kwargs)

    monkeypatch.setattr(launcher, "train", train_with_one_fault)
    home = ensure_dagster_home()
    with DagsterInstance.from_config(str(home)) as instance:
        result = materialize([*defs.assets, *defs.asset_checks], selection=["base_model"],
                             instance=instance, resources=defs.resources, run_config=RUN_CONFIG)
        record = instance.fetch_materializations(AssetKey("base_model"), limit=1).records[0]
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success
    # the trainer's startup lines reach the run's logs, with their elapsed times
    assert any("] token shards " in message for message in messages)
    assert any("] resuming from " in message and "at step 2" in message for message in messages)
    assert any("] first step done in " in message for message in messages)
    events = [event.event_type for event in result.all_events if event.step_key == "base_model"]
    assert events.count(DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert events.count(DagsterEventType.STEP_RESTARTED) == 1
    assert len(run_dirs) == 2 and run_dirs[0] == run_dirs[1]  # the retry found the same run
    metadata = record.asset_materialization.metadata
    assert metadata["resumed_from_step"].value == 2
    assert metadata["steps"].value == 4
    assert latest_checkpoint(run_dirs[0] / "checkpoints").name == "step_00000004"
    assert (training_home / "artifacts" / "base_model" / "model" / "model.pt").exists()
