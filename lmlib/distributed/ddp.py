"""Data parallelism: every rank holds the whole model; gradients are averaged in buckets.

`DDP(module, bucket_size_mb=25.0)` broadcasts rank 0's parameters and buffers (frozen ones
too) at construction, then all-reduces gradients in buckets launched asynchronously from
post-accumulate-grad hooks while backward still runs. The training loop calls
`on_train_batch_start()` before `zero_grad`, and `finish_gradient_synchronization()` after the
last backward of a step, before clipping and the optimizer step. Tied weights are one
parameter, hence reduced once; `no_sync()` skips communication on the micro-batches of a
gradient-accumulation step but the last.
"""

import contextlib

import torch
import torch.distributed as dist
from torch import nn

from lmlib.distributed.gradient_buckets import GradientReducer


@torch.no_grad()
def broadcast_module_state(module: nn.Module, source_rank: int = 0, process_group=None) -> None:
    """Every parameter (trainable or not) and buffer takes rank `source_rank`'s values."""
    tensors = list(module.parameters()) + list(module.buffers())
    for tensor in tensors:
        dist.broadcast(tensor.data, src=source_rank, group=process_group)


class DDP(nn.Module):
    """Wraps any nn.Module; `.module` is the wrapped model, whose parameter order is kept."""

    def __init__(self, module: nn.Module, bucket_size_mb: float | None = 25.0,
                 process_group=None):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("DDP needs an initialized process group (see lmlib.distributed."
                               "init_distributed, or launch with torchrun)")
        self.module = module
        self.bucket_size_mb = bucket_size_mb
        broadcast_module_state(module, process_group=process_group)
        self.reducer = GradientReducer(list(module.parameters()), bucket_size_mb, process_group)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def on_train_batch_start(self) -> None:
        """Resets per-step bucket state; call before zero_grad at the start of each step."""
        self.reducer.reset()

    def finish_gradient_synchronization(self) -> None:
        """Waits for every bucket's all-reduce; afterwards each .grad is the global mean."""
        self.reducer.finish()

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside only accumulate local gradients (gradient accumulation)."""
        previous = self.reducer.sync_enabled
        self.reducer.sync_enabled = False
        try:
            yield
        finally:
            self.reducer.sync_enabled = previous
