"""Packed attention (projection in, RoPE inside, projection's gradient out) against RoPE and
naive attention in float64, and the model's packed path against its per-tensor path.

On the CPU the kernels run under TRITON_INTERPRET=1 (tests/conftest.py). The interpreter rounds
float32 to bfloat16 by truncation, so 16-bit results are compared on the GPU only.
"""

import math

import pytest
import torch

import lmlib.model.attention as attention
from lmlib.kernels import PackedFlashAttention, packed_flash_attention
from lmlib.model import ModelConfig, TransformerLM
from lmlib.model.layers import RotaryPositionalEmbedding

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def reference(qkv, num_heads, rope, is_causal):
    """RoPE (the model's layer) on q and k, then softmax attention, in float64."""
    batch, seq, width = qkv.shape
    heads = qkv.double().view(batch, seq, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = heads[0], heads[1], heads[2]
    q, k = rope(q), rope(k)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if is_causal:
        keep = torch.ones(seq, seq, dtype=torch.bool, device=qkv.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(batch, seq, width // 3)


def errors_against_reference(batch, seq, heads, head_dim, dtype, is_causal, device=DEVICE):
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (batch, seq, 3 * heads * head_dim)
    qkv = torch.randn(shape, generator=generator, device=device).to(dtype).requires_grad_()
    rope = RotaryPositionalEmbedding(10000.0, head_dim, seq + 5, device=device)
    out = packed_flash_attention(qkv, heads, rope.cos[:seq], rope.sin[:seq], is_causal)
    grad_out = torch.randn(out.shape, generator=generator, device=device).to(dtype)
    (grad,) = torch.autograd.grad(out, qkv, grad_out)
    leaf = qkv.detach().double().requires_grad_()
    rope64 = rope.double()
    expected = reference(leaf, heads, rope64, is_causal)
    (expected_grad,) = torch.autograd.grad(expected, leaf, grad_out.double())
    assert out.shape == (batch, seq, heads * head_dim) and grad.shape == qkv.shape
    assert out.dtype == grad.dtype == dtype and grad.is_contiguous()

    def relative(a, b):
        return ((a.double() - b).norm() / b.norm()).item()

    return relative(out, expected), relative(grad, expected_grad)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("batch,seq,heads,head_dim", [(2, 64, 2, 16), (1, 100, 3, 32)])
def test_matches_rope_and_attention_float32(batch, seq, heads, head_dim, is_causal):
    errors = errors_against_reference(batch, seq, heads, head_dim, torch.float32, is_causal)
    assert max(errors) < 1e-5, errors


def test_bad_inputs_raise_clear_errors():
    rope = RotaryPositionalEmbedding(10000.0, 16, 64, device=DEVICE)
    cos, sin = rope.cos[:8], rope.sin[:8]
    with pytest.raises(ValueError, match="3 x 4 heads"):
        PackedFlashAttention.apply(torch.randn(1, 8, 100, device=DEVICE), 4, cos, sin)
    with pytest.raises(ValueError, match="power-of-two head dim"):
        PackedFlashAttention.apply(torch.randn(1, 8, 3 * 2 * 24, device=DEVICE), 2, cos, sin)
    with pytest.raises(ValueError, match="RoPE tables must be"):
        PackedFlashAttention.apply(torch.randn(1, 9, 3 * 2 * 16, device=DEVICE), 2, cos, sin)
    with pytest.raises(ValueError, match="batch, seq, 3"):
        packed_flash_attention(torch.randn(8, 96, device=DEVICE), 2, cos, sin)


def small_model(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    config = dict(vocab_size=97, context_length=80, d_model=64, num_layers=2, num_heads=2,
                  d_ff=96, rope_theta=10000.0, attention_backend="flash_triton")
    return TransformerLM(ModelConfig(**{**config, **overrides}), device=DEVICE)


def logits_and_grads(model, ids, packed, monkeypatch, compile_backend=None):
    """Logits and parameter gradients with the packed path on or off, and how many times the
    packed forward kernel ran (the profiler sees the custom op, compiled or not)."""
    monkeypatch.setattr(attention.MultiHeadSelfAttention, "packed", packed)
    model.zero_grad()
    forward = model
    if compile_backend:
        forward = torch.compile(model, backend=compile_backend)
        forward(ids)  # compiles (tracing calls the ops too): not counted
    with torch.profiler.profile() as profile:
        logits = forward(ids)
    logits.square().mean().backward()
    calls = sum(event.name == "lmlib::packed_attention_forward" for event in profile.events())
    return logits.detach(), [p.grad.clone() for p in model.parameters()], calls


def test_model_packed_path_equals_the_per_tensor_path(monkeypatch):
    model = small_model()
    ids = torch.randint(0, 97, (2, 70), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    logits, grads, calls = logits_and_grads(model, ids, True, monkeypatch)
    assert calls == 2  # one per layer
    expected_logits, expected_grads, unpacked_calls = logits_and_grads(model, ids, False,
                                                                       monkeypatch)
    assert unpacked_calls == 0
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)


def test_model_packed_path_under_torch_compile(monkeypatch):
    """The custom ops' fake implementations trace (aot_eager runs the real kernels)."""
    model = small_model()
    ids = torch.randint(0, 97, (2, 48), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    expected_logits, expected_grads, _ = logits_and_grads(model, ids, False, monkeypatch)
    logits, grads, calls = logits_and_grads(model, ids, True, monkeypatch, "aot_eager")
    assert calls == 2
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("overrides,why", [
    (dict(qk_norm=True), "QK-norm sits between the projection and RoPE"),
    (dict(num_kv_heads=1), "grouped-query attention"),
    (dict(no_rope=True), "no RoPE"),
    (dict(d_model=96, num_heads=2), "head dim 48 is not a power of two"),
    (dict(attention_backend="torch"), "another backend"),
])
def test_model_takes_the_per_tensor_path_where_packed_does_not_apply(overrides, why, monkeypatch):
    model = small_model(**overrides)
    ids = torch.randint(0, 97, (1, 20)).to(DEVICE)
    assert logits_and_grads(model, ids, True, monkeypatch)[2] == 0, why


def test_given_positions_and_kv_cache_take_the_per_tensor_path(monkeypatch):
    monkeypatch.setattr(attention.MultiHeadSelfAttention, "packed", True)
    layer = small_model().layers[0].attn
    x = torch.randn(1, 20, 64, device=DEVICE)
    assert layer._packed_applies(x, None, None)
    assert not layer._packed_applies(x, torch.arange(20, device=DEVICE).unsqueeze(0), None)
    assert not layer._packed_applies(x, None, small_model().new_kv_cache(1))


# ----------------------------------------------------------------------------- GPU, real sizes


@pytest.mark.gpu
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("seq,heads,head_dim", [(1024, 12, 64), (777, 4, 128), (512, 2, 256)])
def test_gpu_bfloat16_matches_rope_and_attention(seq, heads, head_dim, is_causal):
    errors = errors_against_reference(2, seq, heads, head_dim, torch.bfloat16, is_causal, "cuda")
    assert max(errors) < 2e-2, errors


@pytest.mark.gpu
def test_gpu_model_packed_path_matches_per_tensor_path_in_bfloat16(monkeypatch):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=1000, context_length=512, d_model=256,
                                      num_layers=2, num_heads=4, d_ff=512, rope_theta=10000.0,
                                      attention_backend="flash_triton"), device="cuda")
    ids = torch.randint(0, 1000, (4, 512), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, grads, calls = logits_and_grads(model, ids, True, monkeypatch, "inductor")
        expected_logits, expected_grads, _ = logits_and_grads(model, ids, False, monkeypatch)
    assert calls >= 2  # Inductor's wrapper may show the op more than once per call
    torch.testing.assert_close(logits.float(), expected_logits.float(), rtol=2e-2, atol=2e-2)
    for grad, expected in zip(grads, expected_grads, strict=True):
        assert (grad - expected).norm() <= 2e-2 * expected.norm()
