"""The Transformer's building blocks, written on plain tensors.

Notable:
- no biases by default (Linear takes an optional zero-initialised bias, for the q/k/v
  projections of Qwen2-style models); weights use truncated-normal init clipped at three
  standard deviations;
- RMSNorm computes in float32 and casts back, so bf16 activations stay stable;
- RoPE rotates *adjacent* pairs (x0, x1), (x2, x3), ... (the CS336 convention, not the
  half-split one of GPT-NeoX and Hugging Face Llama: lmlib.hf permutes q/k rows to convert),
  its cos/sin tables are non-persistent buffers, so they never enter a checkpoint, and its
  frequencies can be rescaled for long contexts (`RopeScaling`: linear or Llama-3);
- Linear, Embedding and RMSNorm own the parameters; with `batch_invariant_gradients` set (by
  `ModelConfig.batch_invariant_gradients`) their parameter gradients are trees of per-sequence
  sums (lmlib.model.batch_invariant says why and what it costs); the forward is the same.
"""

import math
from dataclasses import dataclass

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
    """y = x W^T (+ b) with W of shape (out_features, in_features); no bias unless asked.

    Without a bias no `bias` entry enters the state dict, so bias-free checkpoints keep their keys.
    """

    batch_invariant_gradients = False  # see lmlib.model.batch_invariant

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None,
                 bias: bool = False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        std = math.sqrt(2.0 / (in_features + out_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)
        self.bias = None
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, weight_per_sequence: torch.Tensor | None = None
                ) -> torch.Tensor:
        """weight_per_sequence: this layer's weight already broadcast over sequences
        (batch-invariant mode, a weight tied to another layer: one broadcast for both uses)."""
        if weight_per_sequence is not None:
            out = sequence_linear(x, weight_per_sequence)
        elif self.batch_invariant_gradients:
            out = linear(x, self.weight, True)
        else:
            out = x @ self.weight.t()
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


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


ROPE_SCALING_TYPES = ("linear", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """Rescaled RoPE frequencies for contexts longer than the model was first trained on.

    "linear" divides every frequency by `factor` (position interpolation); "llama3" divides
    only the low frequencies (wavelength above original_context_length / low_freq_factor),
    keeps the high ones (below original_context_length / high_freq_factor) and blends in
    between, as Llama 3.1 does.
    """

    kind: str
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_context_length: int = 8192

    def __post_init__(self):
        if self.kind not in ROPE_SCALING_TYPES:
            raise ValueError(f"RoPE scaling type {self.kind!r} is not supported; "
                             f"supported: {ROPE_SCALING_TYPES}")
        if self.factor <= 0:
            raise ValueError(f"RoPE scaling factor must be positive, got {self.factor}")
        if self.kind == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError("llama3 RoPE scaling needs high_freq_factor > low_freq_factor, got "
                             f"{self.high_freq_factor} <= {self.low_freq_factor}")

    def apply(self, inverse_frequency: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return inverse_frequency / self.factor
        low_freq_wavelength = self.original_context_length / self.low_freq_factor
        high_freq_wavelength = self.original_context_length / self.high_freq_factor
        wavelength = 2 * math.pi / inverse_frequency
        smooth = ((self.original_context_length / wavelength - self.low_freq_factor)
                  / (self.high_freq_factor - self.low_freq_factor))
        blended = (1 - smooth) * inverse_frequency / self.factor + smooth * inverse_frequency
        scaled = torch.where(wavelength > low_freq_wavelength,
                             inverse_frequency / self.factor, inverse_frequency)
        medium = (wavelength >= high_freq_wavelength) & (wavelength <= low_freq_wavelength)
        return torch.where(medium, blended, scaled)


class RotaryPositionalEmbedding(nn.Module):
    """Rotates each adjacent pair (x_2i, x_2i+1) by angle position * theta^(-2i/d_k).

    The pairs are taken apart as even and odd lanes and stacked back after rotating, with
    half-width (max_seq_len, d_k/2) tables; the default positions 0 .. seq-1 slice the tables
    instead of gathering them. (On an H200 this measured the same as our first version, which
    swapped lanes with `flip` against sign-folded full-width tables.)
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None,
                 scaling: RopeScaling | None = None):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE needs an even head dimension, got d_k={d_k}")
        self.d_k = d_k
        self.max_seq_len = max_seq_len
        inverse_frequency = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64, device=device) / d_k)
        if scaling is not None:
            inverse_frequency = scaling.apply(inverse_frequency)
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
