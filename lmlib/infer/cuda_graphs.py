"""Decode steps replayed as CUDA graphs, one graph per batch-size bucket.

A decode step is a few hundred small kernels; launched one by one from Python the GPU waits on
the launches. A captured graph launches them all at once. Shapes must be static, so each bucket
(1, 2, 4, ... up to max_batch_size) has its own graph over its own buffers (lmlib.infer.loop);
a wave with fewer rows runs the smallest bucket that holds them. Graphs read the model's weights
in place, so weights updated in place (an optimizer step) need no recapture.
"""

from collections.abc import Callable

import torch


def batch_buckets(max_batch_size: int) -> list[int]:
    """Powers of two below max_batch_size, then max_batch_size itself."""
    buckets, size = [], 1
    while size < max_batch_size:
        buckets.append(size)
        size *= 2
    return buckets + [max_batch_size]


def bucket_for(rows: int, max_batch_size: int) -> int:
    """The smallest bucket that holds `rows` rows."""
    for size in batch_buckets(max_batch_size):
        if size >= rows:
            return size
    raise ValueError(f"{rows} rows exceed max_batch_size={max_batch_size}")


class CapturedStep:
    """`function` (no arguments, reads and writes fixed buffers) captured once; calling replays it.

    Capturing runs the function `warmup_steps` times for real first (on a side stream, as capture
    requires), so its buffers must hold nothing of value yet."""

    def __init__(self, function: Callable[[], None], device: torch.device, warmup_steps: int = 2):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup_steps):
                function()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            function()

    def __call__(self) -> None:
        self.graph.replay()
