"""TransformerLM against a reference forward pass written with torch.nn.functional, its
state-dict layout, the ablation switches, the KV cache and generation."""

import pytest
import torch
import torch.nn.functional as F

from lmlib.model import (
    ModelConfig,
    MultiHeadSelfAttention,
    TransformerBlock,
    TransformerLM,
    cross_entropy,
    generate,
    load_model,
    save_model,
)

SMALL = dict(vocab_size=97, context_length=32, d_model=48, num_layers=2, num_heads=4, d_ff=128,
             rope_theta=10000.0)


def reference_rope(x, theta):
    """Adjacent-pair rotation via complex numbers; x: (batch, heads, seq, d)."""
    seq, d = x.shape[-2], x.shape[-1]
    frequencies = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * frequencies
    rotation = torch.polar(torch.ones_like(angles), angles)
    as_complex = torch.view_as_complex(x.double().unflatten(-1, (d // 2, 2)).contiguous())
    return torch.view_as_real(as_complex * rotation).flatten(-2).to(x.dtype)


def reference_attention(x, weights, prefix, num_heads, theta):
    batch, seq, d_model = x.shape

    def heads(name):
        return F.linear(x, weights[f"{prefix}.{name}.weight"]).view(
            batch, seq, num_heads, -1).transpose(1, 2)

    q, k, v = heads("q_proj"), heads("k_proj"), heads("v_proj")
    q, k = reference_rope(q, theta), reference_rope(k, theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(1, 2).reshape(batch, seq, d_model),
                    weights[f"{prefix}.output_proj.weight"])


def reference_forward(ids, weights, num_layers, num_heads, theta):
    x = F.embedding(ids, weights["token_embeddings.weight"])
    for i in range(num_layers):
        p = f"layers.{i}"
        h = F.rms_norm(x, (x.shape[-1],), weights[f"{p}.ln1.weight"], eps=1e-5)
        x = x + reference_attention(h, weights, f"{p}.attn", num_heads, theta)
        h = F.rms_norm(x, (x.shape[-1],), weights[f"{p}.ln2.weight"], eps=1e-5)
        gate = F.silu(F.linear(h, weights[f"{p}.ffn.w1.weight"]))
        x = x + F.linear(gate * F.linear(h, weights[f"{p}.ffn.w3.weight"]),
                         weights[f"{p}.ffn.w2.weight"])
    x = F.rms_norm(x, (x.shape[-1],), weights["ln_final.weight"], eps=1e-5)
    return F.linear(x, weights["lm_head.weight"])


def randomized(model):
    """Norm gains away from 1 so a skipped norm would show."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln1.weight") or name.endswith("ln2.weight") or "ln_final" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    return model


def test_state_dict_keys_are_exactly_the_cs336_layout():
    model = TransformerLM(**SMALL)
    expected = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(2):
        expected |= {f"layers.{i}.attn.{n}.weight" for n in
                     ("q_proj", "k_proj", "v_proj", "output_proj")}
        expected |= {f"layers.{i}.ffn.{n}.weight" for n in ("w1", "w2", "w3")}
        expected |= {f"layers.{i}.ln1.weight", f"layers.{i}.ln2.weight"}
    state = model.state_dict()
    assert set(state) == expected
    assert state["layers.1.ffn.w1.weight"].shape == (128, 48)
    assert state["lm_head.weight"].shape == (97, 48)


def test_transformer_lm_matches_functional_reference():
    torch.manual_seed(0)
    model = randomized(TransformerLM(**SMALL))
    ids = torch.randint(0, 97, (3, 20))
    expected = reference_forward(ids, model.state_dict(), 2, 4, 10000.0)
    torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=1e-4)


def test_model_accepts_a_config_and_loads_a_foreign_state_dict():
    torch.manual_seed(0)
    a = TransformerLM(**SMALL)
    b = TransformerLM(ModelConfig(**SMALL))
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 97, (2, 9))
    torch.testing.assert_close(a(ids), b(ids))


def test_multihead_attention_and_block_match_reference():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(48, 4, max_seq_len=32, theta=10000.0)
    x = torch.randn(2, 10, 48)
    weights = {f"attn.{k}": v for k, v in attention.state_dict().items()}
    torch.testing.assert_close(attention(x), reference_attention(x, weights, "attn", 4, 10000.0),
                               atol=1e-5, rtol=1e-4)
    block = randomized(TransformerBlock(48, 4, 128, max_seq_len=32, theta=10000.0))
    model = TransformerLM(**{**SMALL, "num_layers": 1})
    model.layers[0].load_state_dict(block.state_dict())
    expected_block = x + reference_attention(
        F.rms_norm(x, (48,), block.ln1.weight, 1e-5),
        {f"a.{k}": v for k, v in block.attn.state_dict().items()}, "a", 4, 10000.0)
    h = F.rms_norm(expected_block, (48,), block.ln2.weight, 1e-5)
    expected_block = expected_block + block.ffn(h)
    torch.testing.assert_close(block(x), expected_block, atol=1e-5, rtol=1e-4)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = TransformerLM(**SMALL)
    ids = torch.randint(0, 97, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 97
    torch.testing.assert_close(model(ids)[:, :10], model(changed)[:, :10])
    assert not torch.allclose(model(ids)[:, 10:], model(changed)[:, 10:])


@pytest.mark.parametrize("switch", ["no_rmsnorm", "post_norm", "no_rope", "silu_ffn",
                                    "tie_embeddings", "qk_norm"])
def test_ablation_switches_change_the_model_and_still_train(switch):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**{**SMALL, "d_ff": None, switch: True}))
    keys = set(model.state_dict())
    ids = torch.randint(0, 97, (2, 12))
    loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    if switch == "no_rmsnorm":
        assert not any("ln" in k for k in keys)
    if switch == "silu_ffn":
        assert "layers.0.ffn.w3.weight" not in keys
        assert model.layers[0].ffn.w1.weight.shape == (4 * 48, 48)
    if switch == "tie_embeddings":
        assert model.lm_head.weight is model.token_embeddings.weight
        untied = TransformerLM(ModelConfig(**{**SMALL, "d_ff": None}))
        assert model.num_parameters() == untied.num_parameters() - 97 * 48
    if switch == "qk_norm":
        assert "layers.0.attn.q_norm.weight" in keys and "layers.0.attn.k_norm.weight" in keys
    if switch == "no_rope":
        assert model.layers[0].attn.rope is None
    if switch == "post_norm":
        torch.manual_seed(0)
        assert not torch.allclose(model(ids), TransformerLM(ModelConfig(**{**SMALL, "d_ff": None}))(ids))


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=50, num_heads=4)
    with pytest.raises(ValueError, match="attention_backend"):
        ModelConfig(attention_backend="cuDNN")
    with pytest.raises(ValueError, match="vocab_size"):
        TransformerLM(ModelConfig())
    model = TransformerLM(**SMALL)
    with pytest.raises(ValueError, match="context_length"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_kv_cache_decoding_matches_full_forward():
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**{**SMALL, "qk_norm": True})).eval()
    ids = torch.randint(0, 97, (2, 14))
    full = model(ids)
    cache = model.new_kv_cache(batch_size=2)
    pieces = [model(ids[:, :5], kv_cache=cache)]
    for t in range(5, 14):
        pieces.append(model(ids[:, t : t + 1], kv_cache=cache))
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)
    assert cache.length == 14


class ByteTokenizer:
    """Duck-typed tokenizer: one token per byte."""

    def encode(self, text):
        return list(text.encode())

    def decode(self, ids):
        return bytes(ids).decode(errors="replace")


def test_greedy_generation_matches_argmax_loop_without_cache():
    torch.manual_seed(0)
    model = TransformerLM(**{**SMALL, "vocab_size": 256})
    prompt = [5, 17, 42]
    new = generate(model, None, prompt, max_new_tokens=40, temperature=0.0)
    tokens = list(prompt)
    for _ in range(40):  # runs past context 32, so the cache must be rebuilt on the way
        window = torch.tensor([tokens[-24:]]) if len(tokens) >= 32 else torch.tensor([tokens])
        tokens.append(int(model(window)[0, -1].argmax()))
    assert new[:29] == tokens[3:32]  # identical while the context holds everything
    assert len(new) == 40
    text = generate(model, ByteTokenizer(), "hi", max_new_tokens=5, temperature=0.0)
    assert isinstance(text, str)


def test_sampling_is_seeded_and_stops_at_eos_and_top_p_tiny_is_greedy():
    torch.manual_seed(0)
    model = TransformerLM(**{**SMALL, "vocab_size": 256})
    first = generate(model, None, [1, 2], 20, temperature=1.0, seed=3)
    assert first == generate(model, None, [1, 2], 20, temperature=1.0, seed=3)
    assert generate(model, None, [1, 2], 20, temperature=1.0, top_p=1e-6, seed=1) == \
        generate(model, None, [1, 2], 20, temperature=0.0)
    greedy = generate(model, None, [1, 2], 20, temperature=0.0)
    stopped = generate(model, None, [1, 2], 20, temperature=0.0, eos=greedy[3])
    assert stopped == greedy[: greedy.index(greedy[3])]
    with pytest.raises(ValueError, match="tokenizer"):
        generate(model, None, "text", 3)


def test_save_and_load_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**{**SMALL, "tie_embeddings": True}))
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.token_embeddings.weight
    ids = torch.randint(0, 97, (2, 8))
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="saved model"):
        load_model(tmp_path / "missing")


def test_flops_per_token_counts_matmuls_and_attention():
    model = TransformerLM(vocab_size=50304, context_length=1024, d_model=768, num_layers=12,
                          num_heads=12, d_ff=2048, rope_theta=10000.0, device="meta")
    matmuls = 12 * (4 * 768 * 768 + 3 * 768 * 2048) + 50304 * 768
    assert model.flops_per_token() == 6 * matmuls + 12 * 12 * 768 * 1024


def _flash_kernels_available() -> bool:
    try:
        from lmlib.kernels import flash_attention  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _flash_kernels_available(), reason="lmlib.kernels.flash_attention absent")
@pytest.mark.parametrize("backend", ["flash_torch", "flash_triton"])
def test_flash_backends_match_our_attention_in_values_and_gradients(backend):
    results = {}
    for name in ("torch", backend):
        torch.manual_seed(0)
        model = TransformerLM(ModelConfig(**{**SMALL, "attention_backend": name}))
        ids = torch.randint(0, 97, (2, 32))
        loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        results[name] = (loss.detach(), {k: p.grad for k, p in model.named_parameters()})
    torch.testing.assert_close(results[backend][0], results["torch"][0])
    for key, grad in results["torch"][1].items():
        torch.testing.assert_close(results[backend][1][key], grad, atol=1e-5, rtol=1e-4)


def test_fused_qkv_projection_equals_three_matmuls(monkeypatch):
    torch.manual_seed(0)
    model = randomized(TransformerLM(**SMALL))
    ids = torch.randint(0, 97, (2, 12))
    results = []
    for fuse in (True, False):
        monkeypatch.setattr(MultiHeadSelfAttention, "fuse_qkv", fuse)
        model.zero_grad()
        logits = model(ids)
        cross_entropy(logits, ids).backward()
        results.append((logits.detach(), model.layers[1].attn.k_proj.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-5)
