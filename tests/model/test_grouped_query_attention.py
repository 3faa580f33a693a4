"""Grouped-query attention, q/k/v biases and RoPE scaling in TransformerLM (for lmlib.hf)."""

import pytest
import torch

from lmlib.model import ModelConfig, TransformerLM
from lmlib.model.layers import RopeScaling
from lmlib.scaling.flops import flops_per_token, parameter_count


def tiny(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, context_length=32, d_model=32, num_layers=2, num_heads=4,
                         attention_backend="torch", **overrides)
    return TransformerLM(config)


def test_default_config_keeps_its_state_dict_keys_and_shapes():
    state = tiny().state_dict()
    assert not any(name.endswith(".bias") for name in state)
    assert state["layers.0.attn.k_proj.weight"].shape == (32, 32)


def test_grouped_query_attention_equals_multi_head_with_repeated_kv_weights():
    grouped = tiny(num_kv_heads=2, qkv_bias=True)
    with torch.no_grad():
        for parameter in grouped.parameters():
            parameter.normal_()
    full = tiny(qkv_bias=True)
    state = grouped.state_dict()
    for name in list(state):
        if ".k_proj." in name or ".v_proj." in name:  # kv head j -> query heads 2j, 2j + 1
            state[name] = state[name].unflatten(0, (2, 8)).repeat_interleave(2, dim=0).flatten(0, 1)
    full.load_state_dict(state)
    ids = torch.randint(0, 64, (2, 10))
    torch.testing.assert_close(grouped(ids), full(ids))
    assert grouped.state_dict()["layers.0.attn.k_proj.weight"].shape == (16, 32)
    assert grouped.new_kv_cache(1).keys.shape[2] == 2  # the cache holds kv heads only


@pytest.mark.parametrize("backend", ["flash_torch", "flash_triton"])
def test_flash_backends_give_the_same_logits_with_grouped_kv_heads(backend):
    pytest.importorskip("triton")
    model = tiny(num_kv_heads=1, qkv_bias=True)
    ids = torch.randint(0, 64, (1, 16))
    expected = model(ids)
    for layer in model.layers:
        layer.attn.attention_backend = backend
    torch.testing.assert_close(model(ids), expected, atol=1e-4, rtol=1e-4)


def test_kv_cache_decoding_matches_the_full_forward_with_grouped_kv_heads():
    model = tiny(num_kv_heads=2, qkv_bias=True).eval()
    ids = torch.randint(0, 64, (1, 12))
    cache = model.new_kv_cache(1)
    with torch.no_grad():
        steps = [model(ids[:, :8], kv_cache=cache)]
        steps += [model(ids[:, i : i + 1], kv_cache=cache) for i in range(8, 12)]
        torch.testing.assert_close(torch.cat(steps, dim=1), model(ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [{"num_kv_heads": 2}, {"num_kv_heads": 1, "qkv_bias": True}])
def test_parameter_and_flop_counts_follow_grouped_heads_and_biases(overrides):
    model = tiny(**overrides)
    assert parameter_count(model.config) == model.num_parameters()
    assert flops_per_token(model.config) == model.flops_per_token()


def test_config_refuses_kv_heads_that_do_not_divide_heads_and_unknown_scaling():
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        ModelConfig(num_heads=4, d_model=32, num_kv_heads=3)
    with pytest.raises(ValueError, match="'yarn' is not supported"):
        ModelConfig(rope_scaling="yarn")


def test_linear_rope_scaling_divides_every_frequency():
    frequencies = torch.tensor([1.0, 0.1, 0.001])
    torch.testing.assert_close(RopeScaling("linear", 4.0).apply(frequencies), frequencies / 4)
