"""Gradient clipping on the global L2 norm of all gradients together, sharded ones included.

One implementation for every strategy. Single-process, DDP and ZeRO-1 gradients are whole on
each rank; under FSDP (`sharded_parameters`) each rank holds different rows of most gradients,
so their squared norms are summed over the ranks while replicated gradients (the same on every
rank) count once. Scaling stays on the device: no host sync on a GPU.
"""

from collections.abc import Iterable

import torch
import torch.distributed as dist


@torch.no_grad()
def gradient_clipping(
    parameters: Iterable[torch.nn.Parameter],
    max_l2_norm: float,
    eps: float = 1e-6,
    sharded_parameters: Iterable[torch.nn.Parameter] | None = None,
    process_group=None,
) -> torch.Tensor:
    """Scales all gradients by max_l2_norm / (norm + eps) when their global norm exceeds
    max_l2_norm. Returns the norm before clipping (a tensor: no host sync on a GPU).

    `parameters` are whole on this rank; `sharded_parameters` (FSDP's shards), when given, are
    this rank's slices of the rest, and their norm is reduced over `process_group`.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if sharded_parameters is None:
        if not grads:
            return torch.tensor(0.0)
        per_tensor_norms = torch._foreach_norm(grads)
        total_norm = torch.linalg.vector_norm(torch.stack([n.float() for n in per_tensor_norms]))
    else:
        sharded_grads = [p.grad for p in sharded_parameters if p.grad is not None]
        total_norm = _sharded_norm(sharded_grads, grads, process_group)
        grads = sharded_grads + grads
        if not grads:
            return total_norm
    # min(1, ...) instead of an `if`, so the decision stays on the device
    scale = (max_l2_norm / (total_norm + eps)).clamp(max=1.0)
    torch._foreach_mul_(grads, scale.to(grads[0].dtype))
    return total_norm


def _sharded_norm(sharded_grads: list[torch.Tensor], replicated_grads: list[torch.Tensor],
                  process_group) -> torch.Tensor:
    """sqrt(sum over ranks of the shards' squared norms + the replicated ones' squared norms).

    A sum of squares rather than the norm of norms above: the ranks' partial sums must add.
    """
    device = (sharded_grads or replicated_grads or [torch.zeros(())])[0].device
    squared = torch.zeros((), device=device, dtype=torch.float32)
    if sharded_grads:
        squared += sum(n.float() ** 2 for n in torch._foreach_norm(sharded_grads))
    if dist.is_initialized():
        dist.all_reduce(squared, group=process_group)
    if replicated_grads:
        squared += sum(n.float() ** 2 for n in torch._foreach_norm(replicated_grads))
    return squared.sqrt()
