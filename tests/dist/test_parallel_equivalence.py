"""DDP, ZeRO-1 and FSDP on 2 gloo processes against single-process training on the same
global batch (the comparisons themselves run inside each rank: tests/dist/workers.py)."""

import pytest
import torch

from tests.dist import workers
from tests.dist.spawn import run_on_ranks


def test_ddp_equals_single_process_for_bucket_sizes_with_tied_frozen_and_unused_params():
    # None: one bucket; 0: one all-reduce per tensor; 0.001 MB: several buckets.
    # Two ranks sum exactly, so gradients and parameters are bitwise equal.
    run_on_ranks(workers.ddp_suite, 2)


def test_zero1_equals_adamw_with_balanced_shards():
    run_on_ranks(workers.zero1_matches_adamw, 2)


def test_fsdp_float32_bitwise_float16_close_and_shard_gradients():
    run_on_ranks(workers.fsdp_suite, 2)


@pytest.mark.slow
def test_four_processes():
    """The same code paths on 4 ranks (sums in another order: compared with tolerances)."""
    run_on_ranks(workers.four_rank_suite, 4)


def test_bucket_plan_respects_sizes():
    from lmlib.dist import plan_buckets

    params = [torch.nn.Parameter(torch.zeros(n)) for n in (10, 300, 20, 5)]
    assert [len(b) for b in plan_buckets(params, None)] == [4]
    assert [len(b) for b in plan_buckets(params, 0)] == [1, 1, 1, 1]
    # 1 KB holds 256 floats: 10 | 300 (alone, too big) | 20 + 5
    assert [[p.numel() for p in b] for b in plan_buckets(params, 1 / 1024)] == [
        [10], [300], [20, 5]]
    with pytest.raises(ValueError, match="bucket_size_mb"):
        plan_buckets(params, -1)


def test_zero1_and_fsdp_memory_at_rest_matches_theory(tmp_path):
    """Per rank, in float32 model copies: DDP holds weights + grads + two AdamW moments (4);
    ZeRO-1 saves 2 x (1 - 1/W) of that (the moments), FSDP 4 x (1 - 1/W) (everything)."""
    held = {}
    for strategy in ("ddp", "zero1", "fsdp"):
        out = tmp_path / strategy
        run_on_ranks(workers.memory_at_rest_matches_theory, 2, strategy, str(out))
        held[strategy] = float(out.read_text())
    assert held["ddp"] == pytest.approx(4.0, rel=0.05)
    assert held["ddp"] - held["zero1"] == pytest.approx(2 * (1 - 1 / 2), rel=0.10)
    assert held["ddp"] - held["fsdp"] == pytest.approx(4 * (1 - 1 / 2), rel=0.10)
