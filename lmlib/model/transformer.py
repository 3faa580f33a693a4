"""A decoder-only Transformer language model (LLaMA-style) configured by one dataclass.

Notable: pre-norm RMSNorm, RoPE (no absolute position embeddings), SwiGLU, no biases, untied
input and output embeddings. Each of these can be switched off for ablations (`ModelConfig`);
all switches are off by default. Grouped-query attention (`num_kv_heads`), q/k/v biases
(`qkv_bias`) and RoPE scaling (`rope_scaling`) exist to hold Llama and Qwen2 checkpoints
(lmlib.hf); off by default as well. `batch_invariant_gradients` (off by default, for verification)
makes parameter gradients trees of per-sequence sums, so two data-parallel ranks train bitwise
like one process on the whole batch (lmlib.model.batch_invariant). State-dict keys follow the
CS336 layout:
`token_embeddings.weight`, `layers.{i}.attn.{q,k,v,output}_proj.weight`, `layers.{i}.ln1.weight`,
`layers.{i}.ffn.{w1,w2,w3}.weight`, `layers.{i}.ln2.weight`, `ln_final.weight`, `lm_head.weight`
(plus `layers.{i}.attn.{q,k,v}_proj.bias` with `qkv_bias`).
"""

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from lmlib.model.attention import ATTENTION_BACKENDS, KVCache, MultiHeadSelfAttention
from lmlib.model.batch_invariant import per_sequence
from lmlib.model.layers import (
    Embedding,
    Linear,
    NoNorm,
    RMSNorm,
    RopeScaling,
    SiLUFeedForward,
    SwiGLU,
    batch_invariant_applies,
    default_d_ff,
    set_batch_invariant_gradients,
)
from lmlib.stage import config_from_dict


@dataclass
class ModelConfig:
    """Shape of a TransformerLM plus ablation switches (all off by default)."""

    vocab_size: int = 0  # 0: taken from the token shards by the trainer
    context_length: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 16
    d_ff: int | None = None  # None: ~8/3 d_model (SwiGLU) or 4 d_model (SiLU), multiple of 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    attention_backend: str = "auto"
    # ablations
    no_rmsnorm: bool = False
    post_norm: bool = False
    no_rope: bool = False
    silu_ffn: bool = False
    tie_embeddings: bool = False
    qk_norm: bool = False
    # architectures of other model families (lmlib.hf): grouped-query attention (None: one kv
    # head per query head), biases on the q/k/v projections (Qwen2), and RoPE frequencies
    # rescaled for long contexts: rope_scaling None, "linear" (divide by the factor) or
    # "llama3" (Llama 3.1's low/high frequency blend; layers.RopeScaling)
    num_kv_heads: int | None = None
    qkv_bias: bool = False
    rope_scaling: str | None = None
    rope_scaling_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_context_length: int = 8192
    # parameter gradients as fixed trees of per-sequence sums: two data-parallel ranks then
    # match one process on the whole batch bitwise; costs batch x weight memory per layer in
    # backward, for verification only (lmlib.model.batch_invariant)
    batch_invariant_gradients: bool = False

    def __post_init__(self):
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}"
            )
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention_backend must be one of {ATTENTION_BACKENDS}, "
                f"got {self.attention_backend!r}"
            )
        for name in ("context_length", "d_model", "num_layers", "num_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.num_kv_heads is not None and (
                self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads):
            raise ValueError(f"num_kv_heads={self.num_kv_heads} must be positive and divide "
                             f"num_heads={self.num_heads}")
        if self.qkv_bias and self.batch_invariant_gradients:
            raise ValueError("qkv_bias has no batch-invariant gradient path; switch off "
                             "batch_invariant_gradients or qkv_bias")
        _ = self.rope_scaling_spec  # RopeScaling validates the type and factors

    @property
    def resolved_num_kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def rope_scaling_spec(self) -> RopeScaling | None:
        if self.rope_scaling is None:
            return None
        return RopeScaling(self.rope_scaling, self.rope_scaling_factor, self.rope_low_freq_factor,
                           self.rope_high_freq_factor, self.rope_original_context_length)

    @property
    def resolved_d_ff(self) -> int:
        if self.d_ff:
            return self.d_ff
        return 4 * self.d_model if self.silu_ffn else default_d_ff(self.d_model)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        return config_from_dict(cls, values)


class TransformerBlock(nn.Module):
    """Pre-norm: x + attn(ln1(x)), then x + ffn(ln2(x)). Post-norm (ablation): ln(x + f(x))."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        max_seq_len: int | None = None,
        theta: float | None = 10000.0,
        config: ModelConfig | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        config = config or ModelConfig(
            d_model=d_model, num_heads=num_heads, d_ff=d_ff, context_length=max_seq_len or 1,
            rope_theta=theta or 0.0, no_rope=theta is None,
        )
        self.post_norm = config.post_norm
        self.attn = MultiHeadSelfAttention(
            d_model,
            num_heads,
            max_seq_len=max_seq_len,
            theta=None if config.no_rope else theta,
            qk_norm=config.qk_norm,
            attention_backend=config.attention_backend,
            device=device,
            dtype=dtype,
            num_kv_heads=config.num_kv_heads,
            qkv_bias=config.qkv_bias,
            rope_scaling=config.rope_scaling_spec,
        )
        d_ff = d_ff or config.resolved_d_ff
        if config.silu_ffn:
            self.ffn = SiLUFeedForward(d_model, d_ff, device=device, dtype=dtype)
        else:
            self.ffn = SwiGLU(d_model, d_ff, device=device, dtype=dtype)
        if config.no_rmsnorm:
            self.ln1, self.ln2 = NoNorm(), NoNorm()
        else:
            self.ln1 = RMSNorm(d_model, config.norm_eps, device=device, dtype=dtype)
            self.ln2 = RMSNorm(d_model, config.norm_eps, device=device, dtype=dtype)
        if config.batch_invariant_gradients:
            set_batch_invariant_gradients(self)

    def forward(
        self,
        x: torch.Tensor,
        token_positions: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> torch.Tensor:
        if self.post_norm:
            x = self.ln1(x + self.attn(x, token_positions, kv_cache, layer_index))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(self.ln1(x), token_positions, kv_cache, layer_index)
        return x + self.ffn(self.ln2(x))


class TransformerLM(nn.Module):
    """Token ids (batch, seq) -> next-token logits (batch, seq, vocab).

    Build from a ModelConfig, or from the plain keyword arguments
    (vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta).
    """

    def __init__(self, config: ModelConfig | None = None, *, device=None, dtype=None, **kwargs):
        super().__init__()
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        if config.vocab_size <= 0:
            raise ValueError(f"ModelConfig.vocab_size must be positive, got {config.vocab_size}")
        self.config = config
        self.token_embeddings = Embedding(config.vocab_size, config.d_model, device=device, dtype=dtype)
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.d_model,
                config.num_heads,
                config.resolved_d_ff,
                max_seq_len=config.context_length,
                theta=config.rope_theta,
                config=config,
                device=device,
                dtype=dtype,
            )
            for _ in range(config.num_layers)
        )
        if config.no_rmsnorm:
            self.ln_final = NoNorm()
        else:
            self.ln_final = RMSNorm(config.d_model, config.norm_eps, device=device, dtype=dtype)
        self.lm_head = Linear(config.d_model, config.vocab_size, device=device, dtype=dtype)
        if config.tie_embeddings:
            # one matrix for both: keep the output layer's small init, since N(0, 1) logits of
            # size sqrt(d_model) would saturate the softmax at the start
            self.token_embeddings.weight = self.lm_head.weight
        if config.batch_invariant_gradients:
            set_batch_invariant_gradients(self)

    def forward(
        self,
        token_ids: torch.Tensor,
        token_positions: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        seq_len = token_ids.shape[-1]
        offset = kv_cache.length if kv_cache is not None else 0
        if offset + seq_len > self.config.context_length:
            raise ValueError(
                f"sequence of {offset + seq_len} tokens exceeds context_length="
                f"{self.config.context_length}"
            )
        tied = self._tied_weight_per_sequence(token_ids)
        x = self.token_embeddings(token_ids, tied)
        for index, layer in enumerate(self.layers):
            x = layer(x, token_positions, kv_cache, index)
        if kv_cache is not None:
            kv_cache.advance(seq_len)
        return self.lm_head(self.ln_final(x), tied)

    def _tied_weight_per_sequence(self, token_ids: torch.Tensor) -> torch.Tensor | None:
        """Batch-invariant mode with tied embeddings: one broadcast of the shared matrix for
        both its uses, so their per-sequence gradients add before the tree over sequences.
        None otherwise, and under FSDP (which gathers the two uses' weights separately: each
        use's gradient is then a tree of its own, not exact across ranks)."""
        weight = self.lm_head.weight
        if (not self.config.tie_embeddings or weight is None
                or weight is not self.token_embeddings.weight
                or not batch_invariant_applies(self.config.batch_invariant_gradients, weight)):
            return None
        return per_sequence(weight, token_ids.shape[0] if token_ids.dim() >= 2 else 1)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Distinct parameters; without the input embedding table (a lookup, no FLOPs) if asked."""
        total = sum(p.numel() for p in self.parameters())  # parameters() dedups tied weights
        if exclude_embeddings and not self.config.tie_embeddings:
            total -= self.token_embeddings.weight.numel()
        return total

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per matmul weight plus 12 * layers * d_model * context for
        attention scores (the PaLM appendix B count, without halving for causality)."""
        config = self.config
        matmul_params = self.num_parameters(exclude_embeddings=True)
        matmul_params -= sum(p.numel() for name, p in self.named_parameters() if p.dim() == 1)
        attention = 12 * config.num_layers * config.d_model * config.context_length
        return 6 * matmul_params + attention

    def new_kv_cache(self, batch_size: int, device=None, dtype=None) -> KVCache:
        config = self.config
        weight = self.lm_head.weight
        return KVCache(
            config.num_layers,
            batch_size,
            config.resolved_num_kv_heads,
            config.context_length,
            config.d_model // config.num_heads,
            device=device or weight.device,
            dtype=dtype or weight.dtype,
        )
