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
    assert stats["device"].startswith("cuda")
    assert stats["final_train_loss"] < stats["first_train_loss"] - 0.5
    assert 0 < stats["mfu"] < 1
