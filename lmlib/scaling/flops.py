"""FLOP and parameter accounting for lmlib.model configs, and the model shapes of a sweep.

Notable:
- no torch: every function takes any object with ModelConfig's fields (a ModelConfig, a
  ModelShape's `config_fields()` in a SimpleNamespace, ...), so fits and sweeps plan on machines
  without torch. tests/scaling checks the counts against TransformerLM itself;
- two FLOP counts, and each result says which it used:
  `training_flops` is C = 6 N D (Kaplan et al. 2020 section 2.1; Hoffmann et al. 2022), the
  convention of both public data sets and of the fits' compute-optimal formulas;
  `transformer_training_flops` is the count of TransformerLM.flops_per_token: 6 FLOPs per
  matmul weight per token (2 forward, 4 backward) over the blocks and the output projection,
  plus 12 * num_layers * context_length * d_model per token for attention's scores and
  weighted values (forward 2 * T * d each per layer, backward twice that: the PaLM appendix B
  count, and Hoffmann et al. 2022 appendix F's, not halved for the causal mask; Kaplan's
  table 1 counts 6 * L * T * d, the scores alone). Embedding lookups and norms are not counted;
- `parameter_count(include_embeddings=False)` is Kaplan's non-embedding N: the blocks and the
  final norm, without the token embedding and without the output projection (the same matrix
  when tied). TransformerLM.num_parameters(exclude_embeddings=True) differs on purpose: it
  keeps the output projection, whose weights cost FLOPs;
- sweep shapes: head dimension fixed (64), d_model a multiple of it, depth from a target
  aspect ratio d_model / num_layers (64 by default; Kaplan et al. 2020 figure 5: at fixed
  non-embedding N the loss moves only a few percent across aspect ratios spanning more than an
  order of magnitude), d_ff from the model's own rule (8/3 d_model rounded up to a multiple of
  64, SwiGLU).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lmlib.scaling.prediction import check_flops


def training_flops(params: float, tokens: float) -> float:
    """C = 6 N D: training FLOPs of N parameters on D tokens (Kaplan et al. 2020)."""
    if params <= 0 or tokens <= 0:
        raise ValueError(f"training_flops: params and tokens must be positive, got "
                         f"params={params}, tokens={tokens}")
    return 6.0 * float(params) * float(tokens)


def default_d_ff(d_model: int, silu_ffn: bool = False) -> int:
    """The feed-forward width lmlib.model picks when d_ff is None: 4 d_model for the ungated
    SiLU ablation, else 8/3 d_model rounded up to a multiple of 64 (the rule of
    lmlib.model.layers.default_d_ff, restated here because importing it imports torch)."""
    if silu_ffn:
        return 4 * d_model
    return 64 * math.ceil(8 * d_model / 3 / 64)


def _field(config: Any, name: str) -> Any:
    if not hasattr(config, name):
        raise TypeError(f"{type(config).__name__} has no field {name!r}; pass a ModelConfig or "
                        f"an object with its fields")
    return getattr(config, name)


def _d_ff(config: Any) -> int:
    resolved = getattr(config, "resolved_d_ff", None)
    if resolved:
        return int(resolved)
    return int(getattr(config, "d_ff", None) or default_d_ff(
        _field(config, "d_model"), bool(getattr(config, "silu_ffn", False))))


def _kv_dim(config: Any) -> int:
    """Width of the k and v projections: fewer heads under grouped-query attention."""
    d_model, num_heads = int(config.d_model), int(config.num_heads)
    kv_heads = int(getattr(config, "num_kv_heads", None) or num_heads)
    return kv_heads * (d_model // num_heads)


def _attention_weights(config: Any) -> int:
    """q and output projections d_model x d_model, k and v d_model x kv width."""
    d_model = int(config.d_model)
    return 2 * d_model * d_model + 2 * d_model * _kv_dim(config)


def _check_shape(config: Any, *names: str) -> None:
    for name in names:
        value = _field(config, name)
        if not (isinstance(value, int | np.integer) and value > 0):
            raise ValueError(f"model config {name} must be a positive integer, got {value!r}")


def parameter_count(config: Any, include_embeddings: bool = True) -> int:
    """Distinct trainable parameters of TransformerLM(config).

    With include_embeddings=False: Kaplan's non-embedding N, the blocks and final norm alone
    (no token embedding, no output projection)."""
    _check_shape(config, "d_model", "num_layers", "num_heads")
    d_model, layers = int(config.d_model), int(config.num_layers)
    head_dim = d_model // int(config.num_heads)
    norms = not getattr(config, "no_rmsnorm", False)
    ffn_matrices = 2 if getattr(config, "silu_ffn", False) else 3
    per_layer = _attention_weights(config) + ffn_matrices * d_model * _d_ff(config)
    per_layer += 2 * d_model if norms else 0
    if getattr(config, "qkv_bias", False):
        per_layer += d_model + 2 * _kv_dim(config)
    # QK-norm's two RMSNorms over the head dimension exist even with no_rmsnorm
    per_layer += 2 * head_dim if getattr(config, "qk_norm", False) else 0
    non_embedding = layers * per_layer + (d_model if norms else 0)
    if not include_embeddings:
        return non_embedding
    _check_shape(config, "vocab_size")
    tables = 1 if getattr(config, "tie_embeddings", False) else 2
    return non_embedding + tables * int(config.vocab_size) * d_model


def flops_per_token(config: Any) -> float:
    """Training FLOPs per token of TransformerLM(config), the same count as its
    `flops_per_token`: 6 per matmul weight (blocks and output projection) plus
    12 * num_layers * context_length * d_model for attention (module docstring)."""
    _check_shape(config, "d_model", "num_layers", "num_heads", "vocab_size", "context_length")
    d_model, layers = int(config.d_model), int(config.num_layers)
    ffn_matrices = 2 if getattr(config, "silu_ffn", False) else 3
    matmul_weights = layers * (_attention_weights(config) + ffn_matrices * d_model * _d_ff(config))
    matmul_weights += d_model * int(config.vocab_size)  # the output projection
    attention = 12 * layers * d_model * int(config.context_length)
    return 6.0 * matmul_weights + attention


def transformer_training_flops(config: Any, tokens: float) -> float:
    """Training FLOPs of TransformerLM(config) on `tokens` tokens, attention included
    (flops_per_token * D); compare training_flops(N, D) = 6 N D."""
    if tokens <= 0:
        raise ValueError(f"transformer_training_flops: tokens must be positive, got {tokens}")
    return flops_per_token(config) * float(tokens)


def tokens_for_flops(config: Any, flops: float) -> float:
    """Tokens that spend `flops` on TransformerLM(config) by the attention-inclusive count."""
    return check_flops(flops) / flops_per_token(config)


@dataclass(frozen=True)
class ModelShape:
    """One model of a sweep: plain values for a ModelConfig (`config_fields()`), and its sizes."""

    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    vocab_size: int
    context_length: int
    non_embedding_params: int
    params: int
    flops_per_token: float

    @property
    def aspect_ratio(self) -> float:
        return self.d_model / self.num_layers

    def config_fields(self) -> dict[str, int]:
        """Keyword arguments for ModelConfig (with the default SwiGLU, untied, RMSNorm)."""
        return {"vocab_size": self.vocab_size, "context_length": self.context_length,
                "d_model": self.d_model, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "d_ff": self.d_ff}

    def to_dict(self) -> dict:
        return {**asdict(self), "aspect_ratio": self.aspect_ratio}


@dataclass(frozen=True)
class _Fields:
    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int


def model_shape(d_model: int, num_layers: int, vocab_size: int, context_length: int,
                head_dim: int = 64) -> ModelShape:
    """The ModelShape of one (d_model, num_layers) with the sweep's head and d_ff rules."""
    if d_model % head_dim:
        raise ValueError(f"d_model={d_model} is not a multiple of head_dim={head_dim}")
    fields = _Fields(vocab_size, context_length, d_model, num_layers, d_model // head_dim,
                     default_d_ff(d_model))
    return ModelShape(
        d_model=d_model, num_layers=num_layers, num_heads=fields.num_heads, d_ff=fields.d_ff,
        vocab_size=vocab_size, context_length=context_length,
        non_embedding_params=parameter_count(fields, include_embeddings=False),
        params=parameter_count(fields), flops_per_token=flops_per_token(fields),
    )


def sweep_shapes(
    min_params: float,
    max_params: float,
    count: int,
    vocab_size: int,
    context_length: int,
    *,
    aspect_ratio: float = 64.0,
    head_dim: int = 64,
    max_aspect_ratio_factor: float = 2.0,
    size_tolerance: float = 0.1,
) -> list[ModelShape]:
    """`count` model shapes with non-embedding parameter counts spread evenly in log space over
    [min_params, max_params].

    Rule: d_model is a multiple of head_dim (num_heads = d_model / head_dim), num_layers >= 1,
    and d_model / num_layers stays within a factor max_aspect_ratio_factor of `aspect_ratio`.
    Each target gets, among the shapes whose non-embedding count is within size_tolerance of it,
    the one whose aspect ratio is nearest `aspect_ratio` (the nearest count if none is that
    close). Targets that land on the same shape (a narrow range at small sizes) are returned
    once, so the list can be shorter than count."""
    if count < 1:
        raise ValueError(f"sweep_shapes: count must be >= 1, got {count}")
    if not 0 < min_params <= max_params:
        raise ValueError(f"sweep_shapes: need 0 < min_params <= max_params, got "
                         f"{min_params} and {max_params}")
    if aspect_ratio <= 0 or max_aspect_ratio_factor < 1 or size_tolerance < 0:
        raise ValueError("sweep_shapes: aspect_ratio must be positive, "
                         "max_aspect_ratio_factor >= 1 and size_tolerance >= 0")
    # non-embedding N ~ 12 L d^2 = 12 d^3 / ratio: widths up to twice the largest target's
    widest = head_dim * math.ceil(2 * (max_params * aspect_ratio * max_aspect_ratio_factor
                                       / 12) ** (1 / 3) / head_dim)
    candidates = []
    for d_model in range(head_dim, widest + 1, head_dim):
        shallow = max(1, math.ceil(d_model / (aspect_ratio * max_aspect_ratio_factor)))
        deep = max(1, math.floor(d_model * max_aspect_ratio_factor / aspect_ratio))
        for num_layers in range(shallow, deep + 1):
            candidates.append(model_shape(d_model, num_layers, vocab_size, context_length,
                                          head_dim))
    if not candidates:
        raise ValueError("sweep_shapes: no shape satisfies the aspect-ratio rule; widen "
                         "max_aspect_ratio_factor")
    log_sizes = np.log([shape.non_embedding_params for shape in candidates])
    log_ratios = np.abs(np.log([shape.aspect_ratio / aspect_ratio for shape in candidates]))
    chosen: list[ModelShape] = []
    for target in np.geomspace(min_params, max_params, count):
        distance = np.abs(log_sizes - math.log(target))
        close = np.flatnonzero(distance <= math.log1p(size_tolerance))
        best = (close[np.argmin(log_ratios[close])] if close.size
                else int(np.argmin(distance)))
        if candidates[best] not in chosen:
            chosen.append(candidates[best])
    return chosen
