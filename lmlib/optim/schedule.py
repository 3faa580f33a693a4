"""Learning-rate schedule: linear warmup from 0, cosine decay to min_lr, then flat at min_lr."""

import math


def get_lr_cosine_schedule(
    t: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    """Learning rate at step t.

    t < warmup_iters: max_lr * t / warmup_iters; warmup_iters <= t <= cosine_cycle_iters:
    cosine from max_lr down to min_lr; afterwards min_lr.
    """
    if t < warmup_iters:
        return max_lr * t / warmup_iters
    if t <= cosine_cycle_iters:
        if cosine_cycle_iters == warmup_iters:
            return max_lr
        progress = (t - warmup_iters) / (cosine_cycle_iters - warmup_iters)
        return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)
    return min_lr
