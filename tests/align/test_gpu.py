"""The post-training loops on CUDA: bf16 autocast, a compiled bf16 engine, and still learning."""

import pytest

from lmlib.align import GRPOConfig, run_grpo
from tests.align.test_loops import low_bytes_task, start  # noqa: F401 - the fixture

pytestmark = pytest.mark.gpu


def test_grpo_on_cuda_in_bf16_raises_the_reward(start):  # noqa: F811
    config = GRPOConfig(steps=20, prompts_per_step=8, group_size=8, learning_rate=1e-2,
                        eval_problems=0, device="cuda", log_interval=1)
    result = run_grpo(start / "start", start / "tok", low_bytes_task(), None, start / "run",
                      start / "out", config)
    rewards = [r["reward"] for r in result.reward_curve]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.2, rewards
