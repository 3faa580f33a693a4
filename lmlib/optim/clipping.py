"""Gradient clipping on the global L2 norm of all gradients together."""

from collections.abc import Iterable

import torch


@torch.no_grad()
def gradient_clipping(
    parameters: Iterable[torch.nn.Parameter], max_l2_norm: float, eps: float = 1e-6
) -> torch.Tensor:
    """Scales all gradients by max_l2_norm / (norm + eps) when their global norm exceeds
    max_l2_norm. Returns the norm before clipping (a tensor: no host sync on a GPU)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    per_tensor_norms = torch._foreach_norm(grads)
    total_norm = torch.linalg.vector_norm(torch.stack([n.float() for n in per_tensor_norms]))
    # min(1, ...) instead of an `if`, so the decision stays on the device
    scale = (max_l2_norm / (total_norm + eps)).clamp(max=1.0)
    torch._foreach_mul_(grads, scale.to(grads[0].dtype))
    return total_norm
