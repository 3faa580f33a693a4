"""Triton kernels: FlashAttention-2 with its readable PyTorch reference, and cross-entropy.

- `FlashAttention2`: Triton forward and backward kernels as an autograd Function.
- `FlashAttention2Torch`: the same algorithm in plain PyTorch (tiles, online softmax, backward by
  recomputation from the logsumexp), the reference the kernels are tested against.
- `flash_attention(q, k, v, is_causal, implementation)`: the one call the model makes.
- `packed_flash_attention(qkv, num_heads, cos, sin)`: the Triton kernels fed by the packed q/k/v
  projection, with RoPE inside, returning the projection's gradient in one piece (the model's
  training path).
- `triton_cross_entropy(logits, targets)`: the loss in two kernels that never copy the logits
  to float32 (lmlib.model.cross_entropy calls it on CUDA).
"""

import torch

from lmlib.kernels.cross_entropy import triton_cross_entropy
from lmlib.kernels.flash_attention_torch import (
    FlashAttention2Torch,
    flash_attention_torch_backward,
    flash_attention_torch_forward,
)
from lmlib.kernels.flash_attention_triton import FlashAttention2, flash_attention_triton_forward
from lmlib.kernels.packed_attention import (
    PackedFlashAttention,
    packed_attention_applies,
    packed_flash_attention,
)

IMPLEMENTATIONS = {"torch": FlashAttention2Torch, "triton": FlashAttention2}

__all__ = [
    "FlashAttention2",
    "FlashAttention2Torch",
    "IMPLEMENTATIONS",
    "flash_attention",
    "flash_attention_torch_backward",
    "flash_attention_torch_forward",
    "flash_attention_triton_forward",
    "PackedFlashAttention",
    "packed_attention_applies",
    "packed_flash_attention",
    "triton_cross_entropy",
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
