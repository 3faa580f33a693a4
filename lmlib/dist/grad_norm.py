"""Global gradient-norm clipping when some gradients are sharded across ranks (FSDP).

The squared norms of the sharded gradients are summed over ranks; replicated gradients (the
same on every rank) are counted once. Scaling stays on the device, as in lmlib.optim.
"""

import torch
import torch.distributed as dist


@torch.no_grad()
def clip_gradients(sharded: list[torch.Tensor], replicated: list[torch.Tensor],
                   max_l2_norm: float, eps: float = 1e-6, process_group=None) -> torch.Tensor:
    """Clips all gradients of `sharded` and `replicated` parameters to a global L2 norm."""
    sharded_grads = [p.grad for p in sharded if p.grad is not None]
    replicated_grads = [p.grad for p in replicated if p.grad is not None]
    device = (sharded_grads or replicated_grads or [torch.zeros(())])[0].device
    squared = torch.zeros((), device=device, dtype=torch.float32)
    if sharded_grads:
        squared += sum(n.float() ** 2 for n in torch._foreach_norm(sharded_grads))
    if dist.is_initialized():
        dist.all_reduce(squared, group=process_group)
    if replicated_grads:
        squared += sum(n.float() ** 2 for n in torch._foreach_norm(replicated_grads))
    total_norm = squared.sqrt()
    grads = sharded_grads + replicated_grads
    if grads:
        scale = (max_l2_norm / (total_norm + eps)).clamp(max=1.0)
        torch._foreach_mul_(grads, scale.to(grads[0].dtype))
    return total_norm
