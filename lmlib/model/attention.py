"""Causal multi-head self-attention with RoPE, an optional KV cache and pluggable kernels.

Notable:
- `softmax` and `scaled_dot_product_attention` are written on plain tensors; the scores go
  through float32 (or float64) so bf16 activations do not lose the softmax's precision;
- the mask is boolean with True meaning "may attend";
- `attention_backend` picks the kernel: "torch" (ours, materializes the scores), "flash_torch"
  or "flash_triton" (FlashAttention from `lmlib.kernels`, imported lazily so this module needs
  torch alone), or "auto" (flash_triton on CUDA when the kernels import, else torch). Decoding
  with a KV cache always uses ours, since its queries and keys differ in length;
- with flash_triton, whole sequences at positions 0 .. seq-1 (training, scoring) go through
  `lmlib.kernels.packed_flash_attention`: the kernels read the [q | k | v] projection, apply RoPE
  themselves and return the projection's gradient in one piece (1.06x the compiled torch.nn
  reference's training step on an H200, against 0.98x without it: benchmarks/RESULTS.md);
- grouped-query attention (`num_kv_heads` < `num_heads`): k/v are projected to fewer heads and
  cached that way (the memory saving), then each is repeated to its group of query heads just
  before the kernel, so every backend sees plain multi-head attention.
"""

import math

import torch
from torch import nn

from lmlib.model.layers import Linear, RMSNorm, RopeScaling, RotaryPositionalEmbedding, linear

ATTENTION_BACKENDS = ("auto", "torch", "flash_torch", "flash_triton")


def softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """exp(x - max) / sum: subtracting the max keeps exp from overflowing."""
    shifted = x - x.amax(dim=dim, keepdim=True)
    exponentials = torch.exp(shifted)
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


def scaled_dot_product_attention(
    Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k)) V over any leading batch dimensions.

    Q: (..., queries, d_k), K: (..., keys, d_k), V: (..., keys, d_v), mask: (..., queries, keys)
    with True where a query may attend to a key.
    """
    scores = (Q @ K.transpose(-2, -1)) * (1.0 / math.sqrt(Q.shape[-1]))
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probabilities = softmax(scores, dim=-1)
    return probabilities.to(V.dtype) @ V


_kernels_module = None


def _kernels():
    """lmlib.kernels, imported on first use (it needs triton). A module global, not
    functools.cache: this runs inside torch.compile'd forwards, where Dynamo guards on a
    global but would trace through the cache wrapper and the import."""
    global _kernels_module
    if _kernels_module is None:
        import lmlib.kernels

        _kernels_module = lmlib.kernels
    return _kernels_module


def resolve_attention_backend(backend: str, device: torch.device) -> str:
    """The concrete backend for "auto": flash_triton on CUDA if lmlib.kernels imports, else torch."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if device.type != "cuda":
        return "torch"
    try:
        _kernels()
    except ImportError:
        return "torch"
    return "flash_triton"


class KVCache:
    """Keys and values of every layer for incremental decoding, preallocated to max_seq_len.

    Layers write their new keys/values at positions [length, length + t); the model calls
    `advance(t)` once all layers are done.
    """

    def __init__(self, num_layers, batch_size, num_heads, max_seq_len, head_dim, device, dtype):
        shape = (num_layers, batch_size, num_heads, max_seq_len, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.max_seq_len = max_seq_len
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Stores (batch, heads, t, head_dim) keys/values; returns all keys/values so far."""
        end = self.length + k.shape[-2]
        if end > self.max_seq_len:
            raise ValueError(f"KV cache holds {self.max_seq_len} positions, asked for {end}")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, t: int) -> None:
        self.length += t

    def reset(self) -> None:
        self.length = 0


class MultiHeadSelfAttention(nn.Module):
    """Causal self-attention; RoPE on q and k when `theta` is given; optional QK-norm,
    grouped-query attention (`num_kv_heads`) and q/k/v biases (`qkv_bias`).

    q_proj, k_proj and v_proj stay separate parameters (and state-dict keys); `fuse_qkv`
    only changes how they are applied.
    """

    fuse_qkv = True
    # the packed kernels (projection in, gradient out, RoPE inside) where they apply; False is
    # for comparisons (benchmarks/bench_train.py :packed=no)
    packed = True
    batch_invariant_gradients = False  # for the fused q/k/v matmul: lmlib.model.batch_invariant

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        max_seq_len: int | None = None,
        theta: float | None = None,
        qk_norm: bool = False,
        attention_backend: str = "auto",
        device=None,
        dtype=None,
        num_kv_heads: int | None = None,
        qkv_bias: bool = False,
        rope_scaling: RopeScaling | None = None,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}")
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention_backend must be one of {ATTENTION_BACKENDS}, got {attention_backend!r}"
            )
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = d_model // num_heads
        self.attention_backend = attention_backend
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype, bias=qkv_bias)
        self.k_proj = Linear(d_model, kv_dim, device=device, dtype=dtype, bias=qkv_bias)
        self.v_proj = Linear(d_model, kv_dim, device=device, dtype=dtype, bias=qkv_bias)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.rope = None
        if theta is not None:
            if max_seq_len is None:
                raise ValueError("RoPE needs max_seq_len")
            self.rope = RotaryPositionalEmbedding(theta, self.head_dim, max_seq_len, device=device,
                                                  scaling=rope_scaling)
        if qk_norm:
            self.q_norm = RMSNorm(self.head_dim, device=device, dtype=dtype)
            self.k_norm = RMSNorm(self.head_dim, device=device, dtype=dtype)
        self.qk_norm = qk_norm

    def forward(
        self,
        x: torch.Tensor,
        token_positions: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> torch.Tensor:
        """x: (..., seq, d_model) -> (..., seq, d_model)."""
        if self._packed_applies(x, token_positions, kv_cache):
            return self._attend_packed(x)
        seq_len = x.shape[-2]
        offset = kv_cache.length if kv_cache is not None else 0
        # (..., seq, d_model) -> (..., heads, seq, head_dim); k, v with num_kv_heads heads
        q, k, v = (
            projected.unflatten(-1, (-1, self.head_dim)).transpose(-3, -2)
            for projected in self._project_qkv(x, kv_cache is None)
        )
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if token_positions is None and offset:
                token_positions = torch.arange(offset, offset + seq_len, device=x.device)
            if token_positions is not None:
                token_positions = token_positions.unsqueeze(-2)  # broadcast over heads
            q, k = self.rope(q, token_positions), self.rope(k, token_positions)
        if kv_cache is not None:
            k, v = kv_cache.update(layer_index, k, v)
        if self.num_kv_heads != self.num_heads:
            # kv head j serves query heads j * group .. (j + 1) * group - 1
            group = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
        out = self._attend(q, k, v, offset)
        return self.output_proj(out.transpose(-3, -2).flatten(-2))

    def _project_qkv(self, x: torch.Tensor, whole_sequence: bool):
        """q, k, v projections: one matmul against the three weights side by side when the
        whole sequence is processed (one larger GEMM, forward and backward); three matmuls
        when decoding, where concatenating the weights every token would cost more."""
        if whole_sequence and self.fuse_qkv:
            sizes = [projection.out_features for projection in self._projections]
            return self._stacked_qkv(x).split(sizes, dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    @property
    def _projections(self) -> tuple[Linear, Linear, Linear]:
        return self.q_proj, self.k_proj, self.v_proj

    def _stacked_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """[q | k | v] from one matmul: (..., seq, d_model) -> (..., seq, d_q + 2 d_kv)."""
        weight = torch.cat([projection.weight for projection in self._projections])
        if self.batch_invariant_gradients:  # per-sequence gradient of the stacked weight
            stacked = linear(x, weight, True)
        else:
            stacked = x @ weight.t()
        if self.q_proj.bias is not None:
            stacked = stacked + torch.cat([projection.bias for projection in self._projections])
        return stacked

    def _packed_applies(self, x: torch.Tensor, token_positions, kv_cache) -> bool:
        """Whether the packed kernels (lmlib.kernels.packed_attention) serve this call: whole
        batched sequences at positions 0 .. seq-1 with RoPE, plain multi-head attention, the
        Triton backend, a power-of-two head dim; the per-tensor path serves the rest."""
        if not (self.packed and self.fuse_qkv and kv_cache is None and token_positions is None
                and x.dim() == 3 and self.rope is not None and not self.qk_norm
                and self.num_kv_heads == self.num_heads
                and x.shape[-2] <= self.rope.max_seq_len):
            return False
        if resolve_attention_backend(self.attention_backend, x.device) != "flash_triton":
            return False
        return _kernels().packed_attention_applies(self.head_dim)

    def _attend_packed(self, x: torch.Tensor) -> torch.Tensor:
        seq_len = x.shape[-2]
        rope = self.rope
        out = _kernels().packed_flash_attention(
            self._stacked_qkv(x), self.num_heads, rope.cos[:seq_len], rope.sin[:seq_len])
        return self.output_proj(out)

    def _attend(self, q, k, v, offset: int) -> torch.Tensor:
        backend = resolve_attention_backend(self.attention_backend, q.device)
        if backend != "torch" and q.shape[-2] == k.shape[-2] and q.dim() == 4:
            implementation = "torch" if backend == "flash_torch" else "triton"
            return _kernels().flash_attention(q, k, v, is_causal=True,
                                              implementation=implementation)
        # query i sits at absolute position offset + i and sees keys 0 .. offset + i
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril(offset)
        return scaled_dot_product_attention(q, k, v, mask)
