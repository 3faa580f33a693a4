"""`python -m lmlib.train` under torchrun (2 gloo processes): DDP, ZeRO-1 and FSDP train the
same weights as one process on the same global batches, resume from their checkpoints, and
FSDP/ZeRO-1 checkpoints consolidate into a single-process one."""

import json
import os
import subprocess
import sys

import pytest
import torch

from lmlib.model import load_model
from lmlib.train import TrainConfig, train
from lmlib.train.checkpoint import (
    SHARDED_INDEX_FILE,
    consolidate_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    read_checkpoint,
)
from tests.train.conftest import write_shards

MODEL = {"context_length": 16, "d_model": 32, "num_layers": 2, "num_heads": 2, "d_ff": 64,
         "attention_backend": "torch"}
SETTINGS = {"max_lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 2, "cosine_steps": 6,
            "eval_interval": 3, "eval_batches": 2, "checkpoint_interval": 3, "log_interval": 1,
            "seed": 0, "device": "cpu", "sample_prompts": [], "grad_accum_steps": 2}
PER_RANK_BATCH = 2


def torchrun(nproc: int, data_dir, run_dir, max_steps: int, **settings) -> dict:
    overrides = {**SETTINGS, "batch_size": PER_RANK_BATCH, "max_steps": max_steps, **settings}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "lmlib.train", "--config", "tiny",
               "--data-dir", str(data_dir), "--run-dir", str(run_dir)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    for key, value in MODEL.items():
        command += ["--set", f"model.{key}={json.dumps(value)}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(result.stdout[result.stdout.index("{\n"):])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("dist") / "shards",
                        {"train": [6000, 3000], "val": [1500]})


@pytest.fixture(scope="module")
def single_process_weights(shards, tmp_path_factory):
    """One process with the global batch (2 ranks x 2 sequences) for 6 steps."""
    config = TrainConfig.from_dict({**SETTINGS, "batch_size": 2 * PER_RANK_BATCH,
                                    "max_steps": 6, "model": MODEL})
    run_dir = tmp_path_factory.mktemp("single")
    torch.set_num_threads(1)
    train(config, shards, run_dir, quiet=True)
    return torch.load(run_dir / "model" / "model.pt", weights_only=True)


def assert_weights_close(run_dir, expected: dict):
    actual = torch.load(run_dir / "model" / "model.pt", weights_only=True)
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-4, atol=1e-5,
                                   msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero1"])
def test_strategy_matches_single_process_and_resumes(strategy, shards, single_process_weights,
                                                     tmp_path):
    run_dir = tmp_path / "run"
    first = torchrun(2, shards, run_dir, 3, strategy=strategy)
    assert first["steps"] == 3 and first["world_size"] == 2
    step_dir = latest_checkpoint(run_dir / "checkpoints")
    assert (step_dir / SHARDED_INDEX_FILE).exists() == (strategy != "ddp")
    stats = torchrun(2, shards, run_dir, 6, strategy=strategy)  # resumes at step 3
    assert stats["resumed_from_step"] == 3 and stats["steps"] == 6
    assert stats["tokens_trained"] == 6 * 2 * 2 * PER_RANK_BATCH * MODEL["context_length"]
    assert stats["final_val_loss"] is not None
    assert_weights_close(run_dir, single_process_weights)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    if strategy == "ddp":
        return
    # a sharded checkpoint merges into the single-process format
    merged = consolidate_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1],
                                    tmp_path / "merged")
    state = read_checkpoint(merged / "checkpoint.pt")
    assert state["iteration"] == 6
    final = torch.load(run_dir / "model" / "model.pt", weights_only=True)
    for key, value in final.items():
        assert torch.equal(state["model"][key], value), key
    load_model(merged)  # loads as a model directory
    optimizer_state = state["optimizer"]["state"]
    numels = sorted(v["exp_avg"].numel() for v in optimizer_state.values())
    assert numels == sorted(v.numel() for v in final.values())
    assert json.loads((merged / "config.json").read_text())["batch_size"] == 2 * PER_RANK_BATCH


def test_resume_on_another_world_size_is_refused(shards, tmp_path):
    run_dir = tmp_path / "run"
    torchrun(2, shards, run_dir, 3, strategy="fsdp")
    config = TrainConfig.from_dict({**SETTINGS, "batch_size": PER_RANK_BATCH, "max_steps": 6,
                                    "model": MODEL})
    with pytest.raises(ValueError, match="consolidate_checkpoint"):
        train(config, shards, run_dir, quiet=True)
