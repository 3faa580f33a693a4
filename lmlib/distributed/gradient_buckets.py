"""Bucketed, asynchronous all-reduce of gradients, launched from post-accumulate-grad hooks.

Notable:
- buckets hold parameters in reverse registration order, the order in which backward usually
  produces their gradients, so the first bucket fills (and its all-reduce starts) while the
  rest of the backward pass still runs;
- buckets are launched strictly in index order on every rank, whatever order the hooks fire
  in, so collectives always match across ranks (NCCL deadlocks otherwise);
- each bucket carries one presence flag per parameter: a parameter that got no gradient on a
  rank (unused in its forward) contributes zeros there, and is left without a gradient only
  when no rank produced one, as in single-process training;
- buckets not full when backward ends (a parameter that got no gradient) are launched by
  `finish`, which then waits for every bucket and divides by the world size: each rank's loss
  is the mean over its equal share of the global batch, so this is the global mean, and for a
  power-of-two world size dividing after the sum rounds exactly as dividing each row's term
  by the global count would (the sum itself still rounds each rank's partial sum first; with
  `ModelConfig.batch_invariant_gradients` two ranks' partial sums are the halves of the full
  batch's tree, and the result is bitwise the single-process one: lmlib.model.batch_invariant).
"""

import weakref

import torch
import torch.distributed as dist


class _Bucket:
    def __init__(self, params: list[torch.nn.Parameter]):
        self.params = params
        self.ready: set[int] = set()
        self.work = None
        self.flat: torch.Tensor | None = None

    @property
    def full(self) -> bool:
        return len(self.ready) == len(self.params)

    def reset(self) -> None:
        self.ready.clear()
        self.work, self.flat = None, None


def plan_buckets(params: list[torch.nn.Parameter], bucket_size_mb: float | None) -> list[list]:
    """Groups params (in the given order) into buckets of at most bucket_size_mb megabytes.

    None: one bucket per (device, dtype); 0: one bucket per parameter. A parameter larger than
    the limit gets a bucket of its own.
    """
    if bucket_size_mb is not None and bucket_size_mb < 0:
        raise ValueError(f"bucket_size_mb must be None or >= 0, got {bucket_size_mb}")
    limit = None if bucket_size_mb is None else bucket_size_mb * 1024 * 1024
    buckets: list[list] = []
    open_bucket: dict[tuple, tuple[list, int]] = {}  # (device, dtype) -> (params, bytes)
    for p in params:
        key = (p.device, p.dtype)
        size = p.numel() * p.element_size()
        current, used = open_bucket.get(key, (None, 0))
        if current is None or (limit is not None and used + size > limit and current):
            current, used = [], 0
            buckets.append(current)
        current.append(p)
        open_bucket[key] = (current, used + size)
    return buckets


class GradientReducer:
    """Averages the gradients of `params` over the process group, overlapping backward."""

    def __init__(self, params: list[torch.nn.Parameter], bucket_size_mb: float | None,
                 process_group=None):
        self.group = process_group
        self.world_size = dist.get_world_size(process_group)
        trainable = [p for p in params if p.requires_grad]
        self.buckets = [_Bucket(b) for b in plan_buckets(trainable[::-1], bucket_size_mb)]
        self._location = {}  # id(param) -> (bucket index, position in bucket)
        for bucket_index, bucket in enumerate(self.buckets):
            for position, p in enumerate(bucket.params):
                self._location[id(p)] = (bucket_index, position)
        self.sync_enabled = True
        self._next_to_launch = 0
        # The hooks live on the parameters (in C++, out of the garbage collector's sight), so
        # they hold the reducer weakly: a strong reference would form a cycle that keeps the
        # reducer, its buckets and every parameter alive after the wrapper is deleted.
        reducer = weakref.ref(self)

        def on_gradient_ready(param: torch.Tensor) -> None:
            live = reducer()
            if live is not None:
                live._on_gradient_ready(param)

        self._handles = [p.register_post_accumulate_grad_hook(on_gradient_ready)
                         for p in trainable]

    def _on_gradient_ready(self, param: torch.Tensor) -> None:
        if not self.sync_enabled:
            return  # inside no_sync(): gradients only accumulate locally
        bucket_index, position = self._location[id(param)]
        self.buckets[bucket_index].ready.add(position)
        while (self._next_to_launch < len(self.buckets)
               and self.buckets[self._next_to_launch].full):
            self._launch(self.buckets[self._next_to_launch])
            self._next_to_launch += 1

    def _launch(self, bucket: _Bucket) -> None:
        first = bucket.params[0]
        pieces, missing = [], []
        for index, p in enumerate(bucket.params):
            if p.grad is None:
                pieces.append(torch.zeros(p.numel(), device=first.device, dtype=first.dtype))
                missing.append(index)
            else:
                pieces.append(p.grad.detach().reshape(-1))
        # flags filled on the device: a host-to-device copy here would stall backward each time
        flags = torch.ones(len(bucket.params), device=first.device, dtype=first.dtype)
        for index in missing:
            flags[index] = 0.0
        pieces.append(flags)
        bucket.flat = torch.cat(pieces)
        bucket.work = dist.all_reduce(bucket.flat, group=self.group, async_op=True)

    def finish(self) -> None:
        """Launches what backward left unlaunched, waits for all, writes averaged gradients."""
        while self._next_to_launch < len(self.buckets):
            self._launch(self.buckets[self._next_to_launch])
            self._next_to_launch += 1
        for bucket in self.buckets:
            bucket.work.wait()
            flat = bucket.flat
            flags = flat[-len(bucket.params):]
            flat = flat[: -len(bucket.params)].div_(self.world_size)
            offset = 0
            for index, p in enumerate(bucket.params):
                averaged = flat[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
                if p.grad is not None:
                    p.grad.copy_(averaged)
                elif float(flags[index]) > 0:
                    p.grad = averaged.clone()
        self.reset()

    def reset(self) -> None:
        for bucket in self.buckets:
            bucket.reset()
        self._next_to_launch = 0

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
