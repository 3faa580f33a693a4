"""Distributed training on torch.distributed's collectives, applied from outside the model.

`DDP` (bucketed, overlapped gradient all-reduce), `ShardedOptimizer` (ZeRO-1), `FSDP`
(row-sharded Linear/Embedding weights with prefetched all-gathers and reduce-scattered
gradients), activation checkpointing, the torchrun process-group setup, and one strategy object
per way of training (`make_strategy`: none, ddp, zero1, fsdp) that training loops call. The
trainer (`python -m lmlib.train --set strategy=ddp` under torchrun) wires them.
"""

from lmlib.distributed.activation_checkpointing import (
    ACTIVATION_CHECKPOINTING_MODES,
    apply_activation_checkpointing,
)
from lmlib.distributed.ddp import DDP, broadcast_module_state
from lmlib.distributed.fsdp import FSDP, clip_gradients
from lmlib.distributed.gradient_buckets import GradientReducer, plan_buckets
from lmlib.distributed.runtime import (
    DistributedEnvironment,
    barrier,
    broadcast_object,
    destroy_distributed,
    init_distributed,
    launched_by_torchrun,
)
from lmlib.distributed.sharded_optimizer import ShardedOptimizer
from lmlib.distributed.strategy import (
    STRATEGIES,
    DataParallel,
    FullySharded,
    ProcessPlacement,
    SingleProcess,
    ZeroDataParallel,
    join_process_group,
    make_strategy,
)

__all__ = [
    "ACTIVATION_CHECKPOINTING_MODES",
    "DDP",
    "STRATEGIES",
    "DataParallel",
    "DistributedEnvironment",
    "FSDP",
    "FullySharded",
    "GradientReducer",
    "ProcessPlacement",
    "ShardedOptimizer",
    "SingleProcess",
    "ZeroDataParallel",
    "apply_activation_checkpointing",
    "barrier",
    "broadcast_module_state",
    "broadcast_object",
    "clip_gradients",
    "destroy_distributed",
    "init_distributed",
    "join_process_group",
    "launched_by_torchrun",
    "make_strategy",
    "plan_buckets",
]
