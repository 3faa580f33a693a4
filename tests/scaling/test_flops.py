"""FLOP and parameter accounting against TransformerLM itself, and the sweep's shape rule."""

import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from lmlib.model import ModelConfig, TransformerLM
from lmlib.model.layers import default_d_ff as model_default_d_ff
from lmlib.scaling import (
    default_d_ff,
    flops_per_token,
    model_shape,
    parameter_count,
    sweep_shapes,
    tokens_for_flops,
    training_flops,
    transformer_training_flops,
)

CONFIGS = {
    "swiglu untied": dict(vocab_size=97, context_length=32, d_model=48, num_layers=2,
                          num_heads=4),
    "tied": dict(vocab_size=97, context_length=32, d_model=64, num_layers=3, num_heads=4,
                 tie_embeddings=True),
    "silu ffn": dict(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=2,
                     silu_ffn=True),
    "qk norm, no rmsnorm": dict(vocab_size=61, context_length=16, d_model=64, num_layers=2,
                                num_heads=8, qk_norm=True, no_rmsnorm=True),
    "qk norm, explicit d_ff, tied": dict(vocab_size=61, context_length=24, d_model=96,
                                         num_layers=1, num_heads=3, d_ff=100, qk_norm=True,
                                         tie_embeddings=True),
}


def build(fields: dict) -> tuple[ModelConfig, TransformerLM]:
    config = ModelConfig(**fields, attention_backend="torch")
    torch.manual_seed(0)
    return config, TransformerLM(config)


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count_matches_transformer_lm(name):
    config, model = build(CONFIGS[name])
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())
    # non-embedding N leaves out the token table and the output projection (tied or not);
    # TransformerLM's own count keeps the projection, whose weights cost FLOPs
    output_projection = config.vocab_size * config.d_model
    assert (parameter_count(config, include_embeddings=False) + output_projection
            == model.num_parameters(exclude_embeddings=True))


@pytest.mark.parametrize("name", CONFIGS)
def test_flops_per_token_matches_transformer_lm(name):
    config, model = build(CONFIGS[name])
    assert flops_per_token(config) == model.flops_per_token()
    assert transformer_training_flops(config, 1000) == 1000 * model.flops_per_token()
    assert tokens_for_flops(config, 1e15) == pytest.approx(1e15 / model.flops_per_token())


def test_plain_objects_with_the_fields_work_without_resolved_d_ff():
    fields = SimpleNamespace(vocab_size=97, d_model=48, num_layers=2, num_heads=4, d_ff=None,
                             context_length=32)
    config, _ = build(CONFIGS["swiglu untied"])
    assert parameter_count(fields) == parameter_count(config)


def test_default_d_ff_matches_the_models_rule():
    for d_model in range(32, 2049, 32):
        assert default_d_ff(d_model) == model_default_d_ff(d_model)
        assert default_d_ff(d_model, silu_ffn=True) == 4 * d_model


def test_six_n_d_and_the_attention_count_agree_for_short_contexts():
    assert training_flops(1e9, 2e10) == 1.2e20
    # with a short context, attention is small and the counts differ by the output projection
    fields = SimpleNamespace(vocab_size=1000, context_length=8, d_model=1024, num_layers=12,
                             num_heads=16, d_ff=None)
    matmul_params = parameter_count(fields, include_embeddings=False) + 1000 * 1024
    assert flops_per_token(fields) == pytest.approx(6 * matmul_params, rel=0.01)


def test_shapes_from_a_sweep_build_models_of_their_stated_size():
    shapes = sweep_shapes(2e5, 5e6, 6, vocab_size=256, context_length=64)
    assert len(shapes) >= 4
    for shape in shapes:
        config, model = build(shape.config_fields())
        assert shape.params == sum(p.numel() for p in model.parameters())
        assert shape.flops_per_token == model.flops_per_token()


def test_sweep_shapes_follow_the_stated_rule():
    shapes = sweep_shapes(1e7, 1e9, 10, vocab_size=32000, context_length=1024)
    sizes = [shape.non_embedding_params for shape in shapes]
    assert sizes == sorted(sizes) and len(shapes) == 10
    assert 0.8e7 < sizes[0] and sizes[-1] < 1.2e9
    for shape in shapes:
        assert shape.d_model % 64 == 0 and shape.num_heads == shape.d_model // 64
        assert 32 <= shape.aspect_ratio <= 128
        assert shape.d_ff == default_d_ff(shape.d_model)
    # log-spaced targets: successive sizes grow by about (1e9 / 1e7)^(1/9) = 1.67
    ratios = [b / a for a, b in zip(sizes, sizes[1:])]
    assert all(1.3 < ratio < 2.2 for ratio in ratios)
    assert model_shape(768, 12, 32000, 1024).non_embedding_params == pytest.approx(
        12 * 12 * 768**2, rel=0.01)  # Kaplan's 12 L d^2 for d_ff = 8/3 d (SwiGLU)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="tokens must be positive"):
        training_flops(1e9, 0)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer, got 0"):
        parameter_count(ModelConfig())  # vocab_size 0: to be taken from the shards
    with pytest.raises(TypeError, match="no field 'num_layers'"):
        parameter_count(SimpleNamespace(d_model=64, num_heads=1))
    with pytest.raises(ValueError, match="min_params <= max_params"):
        sweep_shapes(1e9, 1e7, 5, 32000, 1024)
    with pytest.raises(ValueError, match="count must be >= 1"):
        sweep_shapes(1e7, 1e9, 0, 32000, 1024)
    with pytest.raises(ValueError, match="not a multiple of head_dim"):
        model_shape(100, 2, 1000, 64)


def test_importing_lmlib_scaling_loads_no_torch_dagster_or_matplotlib():
    code = ("import sys, lmlib.scaling; "
            "print(sorted(m for m in ('torch', 'dagster', 'matplotlib') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_head_dim_rule_keeps_heads_integral():
    for shape in sweep_shapes(1e6, 1e8, 5, vocab_size=1000, context_length=128, head_dim=32):
        assert shape.d_model == 32 * shape.num_heads
        assert math.isclose(shape.aspect_ratio, shape.d_model / shape.num_layers)
