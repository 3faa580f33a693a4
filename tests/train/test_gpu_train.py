"""On a CUDA GPU: the trainer with bf16 autocast and torch.compile, and its MFU figure."""

import pytest

from lmlib.model import ModelConfig
from lmlib.train import TrainConfig, train

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("compile_model", [False, True])
def test_train_on_gpu_with_bf16(shard_dir, tmp_path, compile_model):
    config = TrainConfig(
        model=ModelConfig(context_length=64, d_model=128, num_layers=2, num_heads=4),
        batch_size=16, max_steps=60, max_lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=30,
        eval_batches=2, checkpoint_interval=30, log_interval=10, device="cuda",
        compile=compile_model,
    )
    stats = train(config, shard_dir, tmp_path / "run", quiet=True)
    assert stats.device.startswith("cuda")
    assert stats.final_train_loss < stats.first_train_loss - 0.5
    assert 0 < stats.mfu < 1


def test_sigterm_and_resume_on_gpu_ends_with_the_weights_of_an_uninterrupted_run(
        shard_dir, tmp_path, monkeypatch):
    """The resume path on CUDA (RNG states must come back to the CPU): bitwise equal weights
    with deterministic kernels (Triton attention has no atomics; cuBLAS gets a fixed workspace)."""
    import os
    import signal

    import torch

    from lmlib.train import TrainingInterrupted

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    config = TrainConfig(
        model=ModelConfig(context_length=64, d_model=128, num_layers=2, num_heads=4),
        batch_size=8, max_steps=20, max_lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=10,
        eval_batches=2, checkpoint_interval=8, log_interval=1, device="cuda", deterministic=True,
    )
    train(config, shard_dir, tmp_path / "straight", quiet=True)

    def stop_after_step_11(record):
        if record["kind"] == "train" and record["step"] == 11:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as interrupted:
        train(config, shard_dir, tmp_path / "resumed", progress=stop_after_step_11, quiet=True)
    assert interrupted.value.step == 11
    stats = train(config, shard_dir, tmp_path / "resumed", quiet=True)
    assert stats.resumed_from_step == 11 and stats.steps == 20
    straight = torch.load(tmp_path / "straight" / "model" / "model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "model" / "model.pt", weights_only=True)
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
