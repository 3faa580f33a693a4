"""lmlib.eval on CUDA: the scorer agrees with the CPU, and the battery runs on the engine."""

import pytest
import torch

from lmlib.eval import EvalConfig, evaluate_checkpoint, score_continuations
from tests.eval.test_battery import checkpoint  # noqa: F401 - the fixture
from tests.eval.test_likelihood import tiny

pytestmark = pytest.mark.gpu


def test_gpu_continuation_scores_equal_the_cpus_in_float32():
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny(context=64)
    generator = torch.Generator().manual_seed(0)
    requests = [(torch.randint(0, 300, (n,), generator=generator).tolist(),
                 torch.randint(0, 300, (m,), generator=generator).tolist())
                for n, m in ((5, 1), (40, 3), (70, 2), (12, 1))]
    cpu = score_continuations(model, requests)
    gpu = score_continuations(model.cuda(), requests)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


def test_gpu_battery_runs_on_the_compiled_engine(checkpoint):  # noqa: F811
    config = EvalConfig(lm_tokens=256, arithmetic_problems=8, samples=4, pass_ks=(1, 4),
                        batch_size=8, device="cuda")
    result = evaluate_checkpoint(checkpoint / "model", checkpoint / "tokenizer",
                                 checkpoint / "shards", checkpoint / "out", config)
    assert result.device == "cuda" and result.validation_bits_per_byte > 0
    assert {row.metric for row in result.tasks} == {"accuracy", "pass@1", "pass@4"}
