"""Distributed training on torch.distributed's collectives, applied from outside the model.

`DDP` (bucketed, overlapped gradient all-reduce), `ShardedOptimizer` (ZeRO-1), `FSDP`
(row-sharded Linear/Embedding weights with prefetched all-gathers and reduce-scattered
gradients), activation checkpointing, and the torchrun process-group setup. The trainer
(`python -m lmlib.train --set strategy=ddp` under torchrun) wires them.
"""

from lmlib.dist.activation_checkpointing import (
    ACTIVATION_CHECKPOINTING_MODES,
    apply_activation_checkpointing,
)
from lmlib.dist.ddp import DDP, broadcast_module_state
from lmlib.dist.fsdp import FSDP
from lmlib.dist.grad_norm import clip_gradients
from lmlib.dist.gradient_buckets import GradientReducer, plan_buckets
from lmlib.dist.runtime import (
    DistributedEnvironment,
    barrier,
    destroy_distributed,
    init_distributed,
    launched_by_torchrun,
)
from lmlib.dist.sharded_optimizer import ShardedOptimizer

__all__ = [
    "ACTIVATION_CHECKPOINTING_MODES",
    "DDP",
    "DistributedEnvironment",
    "FSDP",
    "GradientReducer",
    "ShardedOptimizer",
    "apply_activation_checkpointing",
    "barrier",
    "broadcast_module_state",
    "clip_gradients",
    "destroy_distributed",
    "init_distributed",
    "launched_by_torchrun",
    "plan_buckets",
]
