"""Attention kernels: FlashAttention-2 in Triton, and its readable PyTorch reference.

- `FlashAttention2`: Triton forward and backward kernels as an autograd Function.
- `FlashAttention2Torch`: the same algorithm in plain PyTorch (tiles, online softmax, backward by
  recomputation from the logsumexp), the reference the kernels are tested against.
- `flash_attention(q, k, v, is_causal, implementation)`: the one call the model makes.
- `fused_linear_cross_entropy(hidden, weight, targets)`: LM head + loss in token chunks, never
  holding the full (tokens, vocab) logits.
"""

import torch

from lmlib.kernels.flash_attention_torch import (
    FlashAttention2Torch,
    flash_attention_torch_backward,
    flash_attention_torch_forward,
)
from lmlib.kernels.flash_attention_triton import FlashAttention2, flash_attention_triton_forward
from lmlib.kernels.fused_linear_cross_entropy import (
    ChunkedLinearCrossEntropy,
    fused_linear_cross_entropy,
)

IMPLEMENTATIONS = {"torch": FlashAttention2Torch, "triton": FlashAttention2}

__all__ = [
    "ChunkedLinearCrossEntropy",
    "FlashAttention2",
    "FlashAttention2Torch",
    "IMPLEMENTATIONS",
    "flash_attention",
    "flash_attention_torch_backward",
    "flash_attention_torch_forward",
    "flash_attention_triton_forward",
    "fused_linear_cross_entropy",
]


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool, implementation: str
) -> torch.Tensor:
    """Attention over (batch, heads, seq, head_dim) tensors with the chosen FlashAttention-2.

    implementation: "torch" (the PyTorch reference, any device) or "triton" (CUDA, or the CPU
    under TRITON_INTERPRET=1).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"unknown flash attention implementation {implementation!r}; "
            f"choose one of {sorted(IMPLEMENTATIONS)}"
        )
    if q.dim() != 4:
        raise ValueError(
            f"flash_attention expects q, k, v of shape (batch, heads, seq, head_dim); "
            f"got q of shape {tuple(q.shape)}"
        )
    return IMPLEMENTATIONS[implementation].apply(q, k, v, is_causal)
