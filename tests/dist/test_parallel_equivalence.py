"""DDP, ZeRO-1 and FSDP on 2 gloo processes against single-process training on the same
global batch (the comparisons themselves run inside each rank: tests/dist/workers.py, whose
docstring says why float32 runs equal the ranks' micro-batches summed in one process bitwise,
and one full-batch pass within a few units in the last place; with batch-invariant gradients,
bitwise equal to that pass too)."""

import pytest
import torch

from tests.dist import workers
from tests.dist.spawn import run_on_ranks


def test_ddp_equals_single_process_for_bucket_sizes_with_tied_frozen_and_unused_params():
    # None: one bucket; 0: one all-reduce per tensor; 0.001 MB: several buckets.
    # Two ranks sum exactly, so gradients and parameters are bitwise equal to the ranks'
    # micro-batches run in one process, and within a few ulps of one full-batch pass.
    run_on_ranks(workers.ddp_suite, 2)


def test_zero1_equals_adamw_with_balanced_shards():
    run_on_ranks(workers.zero1_matches_adamw, 2)


def test_fsdp_float32_bitwise_float16_close_and_shard_gradients():
    run_on_ranks(workers.fsdp_suite, 2)


def test_batch_invariant_gradients_make_ddp_and_fsdp_equal_one_full_batch_pass_bitwise():
    """ModelConfig.batch_invariant_gradients (lmlib.model.batch_invariant): each parameter
    gradient is a halving tree of per-sequence sums, each rank's half of the batch is a subtree
    and the two-rank sum is the root, so float32 gradients and parameters after every step equal
    one process's single forward and backward over the global batch bitwise: DDP with tied,
    frozen and unused parameters (one bucket, several; two accumulated micro-batches) and FSDP
    (with and without activation checkpointing). Exact for two ranks only: gloo adds four
    ranks' partial sums in another order than the tree."""
    run_on_ranks(workers.batch_invariant_suite, 2)


def test_batch_split_changes_only_the_row_sums_of_parameter_gradients():
    """Why the default mode's full-batch comparisons need a tolerance: per-row values are
    bitwise the same in a split batch, the parameter gradients' sums over rows are not (one
    process, one thread, deterministic algorithms: the ranks' settings)."""
    run_on_ranks(workers.rows_agree_between_full_and_split_batch, 1)


@pytest.mark.slow
def test_four_processes():
    """The same code paths on 4 ranks (sums of four in another order: no bitwise check)."""
    run_on_ranks(workers.four_rank_suite, 4)


def test_bucket_plan_respects_sizes():
    from lmlib.distributed import plan_buckets

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
