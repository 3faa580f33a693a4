"""The Dagster torchrun launcher: an asset trains through Pipes with 2 gloo processes and gets
rank 0's final metrics back."""

import json

from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    MaterializeResult,
    asset,
    materialize,
)

from dagster_project.launcher import launch_torchrun_training, torchrun_command
from dagster_project.policies import GPU_POOL
from tests.train.conftest import write_shards


def test_torchrun_command_for_one_and_many_nodes():
    single = torchrun_command(2, 1, ["--strategy", "ddp"], python="python")
    assert single == ["python", "-m", "torch.distributed.run", "--nproc_per_node=2",
                      "--nnodes=1", "--standalone", "-m", "dagster_project.pipes_train", "--strategy", "ddp"]
    multi = torchrun_command(8, 4, [], rdzv_endpoint="node0:29500", python="python")
    assert "--rdzv_endpoint=node0:29500" in multi and "--standalone" not in multi


def test_asset_trains_through_torchrun_and_pipes(tmp_path):
    shards = write_shards(tmp_path / "shards", {"train": [6000], "val": [1500]})
    config = {"preset": "tiny", "max_steps": 4, "batch_size": 2, "eval_interval": 2,
              "eval_batches": 1, "checkpoint_interval": 4, "log_interval": 1, "device": "cpu",
              "model": {"context_length": 16, "d_model": 32, "num_layers": 1, "num_heads": 2,
                        "d_ff": 64}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    run_dir = tmp_path / "run"

    @asset(pool=GPU_POOL)
    def tiny_torchrun_model(context: AssetExecutionContext) -> MaterializeResult:
        stats = launch_torchrun_training(
            context, nproc_per_node=2, nnodes=1,
            train_args=["--config", str(tmp_path / "config.json"), "--data-dir", str(shards),
                        "--run-dir", str(run_dir), "--strategy", "ddp"])
        return MaterializeResult(metadata={k: stats[k] for k in
                                           ("final_train_loss", "tokens_per_second", "steps",
                                            "world_size")})

    instance = DagsterInstance.ephemeral()
    result = materialize([tiny_torchrun_model], instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node("tiny_torchrun_model")[0].metadata
    assert metadata["steps"].value == 4 and metadata["world_size"].value == 2
    assert metadata["final_train_loss"].value > 0 and metadata["tokens_per_second"].value > 0
    assert (run_dir / "model" / "model.pt").exists()
    # rank 0's log records streamed into the run's event log
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert sum('"kind": "train"' in message for message in messages) == 4
