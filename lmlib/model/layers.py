"""The Transformer's building blocks, written on plain tensors.

Notable:
- no biases anywhere; weights use truncated-normal init clipped at three standard deviations;
- RMSNorm computes in float32 and casts back, so bf16 activations stay stable;
- RoPE rotates *adjacent* pairs (x0, x1), (x2, x3), ... (the CS336 convention, not the
  half-split one of GPT-NeoX), and its cos/sin tables are non-persistent buffers, so they never
  enter a checkpoint;
- Linear, Embedding and RMSNorm own the parameters; with `batch_invariant_gradients` set (by
  `ModelConfig.batch_invariant_gradients`) their parameter gradients are trees of per-sequence
  sums (lmlib.model.batch_invariant says why and what it costs); the forward is the same.
"""

import math

import torch
from torch import nn

from lmlib.model.batch_invariant import (
    per_sequence,
    sequence_count,
    sequence_embedding,
    sequence_linear,
    sequence_scale,
)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU (swish): x * sigmoid(x)."""
    return x * torch.sigmoid(x)


def batch_invariant_applies(enabled: bool, weight: torch.Tensor) -> bool:
    """Whether a layer takes the batch-invariant path: the mode is on and a gradient is being
    recorded for the weight (evaluation and generation take the default path either way)."""
    return enabled and torch.is_grad_enabled() and weight.requires_grad


def linear(x: torch.Tensor, weight: torch.Tensor,
           batch_invariant_gradients: bool = False) -> torch.Tensor:
    """x @ weight^T; with batch_invariant_gradients, the weight's gradient is a tree of
    per-sequence gradients (x is (batch, ..., in))."""
    if batch_invariant_applies(batch_invariant_gradients, weight):
        return sequence_linear(x, per_sequence(weight, sequence_count(x)))
    return x @ weight.t()


def set_batch_invariant_gradients(module: nn.Module, enabled: bool = True) -> None:
    """Switches the mode on every layer in `module` that has it (Linear, Embedding, RMSNorm,
    attention's fused q/k/v projection)."""
    for submodule in module.modules():
        if hasattr(type(submodule), "batch_invariant_gradients"):
            submodule.batch_invariant_gradients = enabled


def default_d_ff(d_model: int, multiple_of: int = 64) -> int:
    """About 8/3 * d_model rounded up to a multiple of 64: SwiGLU's three matrices then hold
    about as many parameters as a 4x two-matrix feed-forward."""
    return multiple_of * math.ceil(8 * d_model / 3 / multiple_of)


class Linear(nn.Module):
    """y = x W^T with W of shape (out_features, in_features); no bias."""

    batch_invariant_gradients = False  # see lmlib.model.batch_invariant

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        std = math.sqrt(2.0 / (in_features + out_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: torch.Tensor, weight_per_sequence: torch.Tensor | None = None
                ) -> torch.Tensor:
        """weight_per_sequence: this layer's weight already broadcast over sequences
        (batch-invariant mode, a weight tied to another layer: one broadcast for both uses)."""
        if weight_per_sequence is not None:
            return sequence_linear(x, weight_per_sequence)
        if self.batch_invariant_gradients:
            return linear(x, self.weight, True)
        return x @ self.weight.t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(nn.Module):
    """Lookup table of shape (num_embeddings, embedding_dim), N(0, 1) clipped at +-3."""

    batch_invariant_gradients = False  # see lmlib.model.batch_invariant

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(
            torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
        )
        nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)

    def forward(self, token_ids: torch.Tensor, weight_per_sequence: torch.Tensor | None = None
                ) -> torch.Tensor:
        """weight_per_sequence: as in Linear.forward (a tied table's single broadcast)."""
        if weight_per_sequence is not None:
            return sequence_embedding(token_ids, weight_per_sequence)
        if batch_invariant_applies(self.batch_invariant_gradients, self.weight):
            sequences = token_ids.shape[0] if token_ids.dim() >= 2 else 1
            return sequence_embedding(token_ids, per_sequence(self.weight, sequences))
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 and returned in the input's dtype."""

    batch_invariant_gradients = False  # see lmlib.model.batch_invariant

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        x = x.float()
        rms_inverse = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if batch_invariant_applies(self.batch_invariant_gradients, self.weight):
            gain = per_sequence(self.weight.float(), sequence_count(x))
            return sequence_scale(x * rms_inverse, gain).to(in_dtype)
        return (x * rms_inverse * self.weight.float()).to(in_dtype)


class NoNorm(nn.Module):
    """Stands in for RMSNorm in the "no norm" ablation; holds no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x): the gated feed-forward of LLaMA."""

    def __init__(self, d_model: int, d_ff: int | None = None, device=None, dtype=None):
        super().__init__()
        d_ff = d_ff or default_d_ff(d_model)
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(silu(self.w1(x)) * self.w3(x))


class SiLUFeedForward(nn.Module):
    """w2(silu(w1 x)): the ungated ablation of SwiGLU (use d_ff = 4 d_model to match its size)."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(silu(self.w1(x)))


class RotaryPositionalEmbedding(nn.Module):
    """Rotates each adjacent pair (x_2i, x_2i+1) by angle position * theta^(-2i/d_k).

    The pairs are taken apart as even and odd lanes and stacked back after rotating, with
    half-width (max_seq_len, d_k/2) tables; the default positions 0 .. seq-1 slice the tables
    instead of gathering them. (On an H200 this measured the same as our first version, which
    swapped lanes with `flip` against sign-folded full-width tables.)
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE needs an even head dimension, got d_k={d_k}")
        self.d_k = d_k
        self.max_seq_len = max_seq_len
        inverse_frequency = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64, device=device) / d_k)
        positions = torch.arange(max_seq_len, dtype=torch.float64, device=device)
        angles = torch.outer(positions, inverse_frequency)  # (max_seq_len, d_k / 2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, token_positions: torch.Tensor | None = None) -> torch.Tensor:
        """x: (..., seq, d_k); token_positions: (..., seq), broadcastable to x's leading dims,
        or None for positions 0 .. seq-1 (a slice of the tables rather than a gather)."""
        if token_positions is None:
            seq_len = x.shape[-2]
            if seq_len > self.max_seq_len:
                raise ValueError(f"RoPE tables hold {self.max_seq_len} positions, got {seq_len}")
            cos, sin = self.cos[:seq_len], self.sin[:seq_len]
        else:
            cos, sin = self.cos[token_positions], self.sin[token_positions]  # (..., seq, d_k/2)
        pairs = x.float().unflatten(-1, (-1, 2))
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)
