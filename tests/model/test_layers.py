"""Each building block against a plain torch computation (torch.nn.functional as reference)."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmlib.model import (
    Embedding,
    Linear,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFeedForward,
    SwiGLU,
    cross_entropy,
    scaled_dot_product_attention,
    softmax,
)
from lmlib.model.layers import default_d_ff


def test_linear_matches_functional_linear_and_has_truncated_init():
    torch.manual_seed(0)
    layer = Linear(300, 200)
    assert layer.weight.shape == (200, 300)
    x = torch.randn(4, 7, 300)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight))
    std = math.sqrt(2 / 500)
    assert layer.weight.abs().max() <= 3 * std + 1e-6
    # a normal truncated at 3 sigma keeps ~98.7% of the variance
    assert layer.weight.std().item() == pytest.approx(std * 0.987, rel=0.03)
    assert "weight" in dict(layer.named_parameters()) and len(list(layer.parameters())) == 1


def test_embedding_matches_functional_embedding():
    torch.manual_seed(0)
    table = Embedding(1000, 64)
    ids = torch.randint(0, 1000, (3, 11))
    torch.testing.assert_close(table(ids), F.embedding(ids, table.weight))
    assert table.weight.abs().max() <= 3.0
    assert table.weight.std().item() == pytest.approx(0.987, rel=0.03)


def test_rmsnorm_matches_reference_and_keeps_dtype():
    torch.manual_seed(0)
    norm = RMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(64))
    x = torch.randn(2, 5, 64) * 3
    expected = F.rms_norm(x, (64,), norm.weight, eps=1e-5)
    torch.testing.assert_close(norm(x), expected)
    x16 = x.to(torch.bfloat16)
    out16 = norm(x16)
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), F.rms_norm(x16.float(), (64,), norm.weight, 1e-5),
                               atol=0.05, rtol=0.01)


def test_swiglu_matches_reference_and_default_width():
    torch.manual_seed(0)
    ffn = SwiGLU(64, 192)
    assert ffn.w1.weight.shape == (192, 64) and ffn.w3.weight.shape == (192, 64)
    assert ffn.w2.weight.shape == (64, 192)
    x = torch.randn(2, 3, 64)
    expected = (F.silu(x @ ffn.w1.weight.T) * (x @ ffn.w3.weight.T)) @ ffn.w2.weight.T
    torch.testing.assert_close(ffn(x), expected)
    assert default_d_ff(768) == 2048 and default_d_ff(512) == 1408 and default_d_ff(64) == 192
    assert SwiGLU(768).w1.weight.shape == (2048, 768)


def test_silu_feed_forward_matches_reference():
    torch.manual_seed(0)
    ffn = SiLUFeedForward(32, 128)
    x = torch.randn(5, 32)
    torch.testing.assert_close(ffn(x), F.silu(x @ ffn.w1.weight.T) @ ffn.w2.weight.T)


def test_rope_matches_complex_rotation_of_adjacent_pairs():
    torch.manual_seed(0)
    d_k, seq, theta = 16, 12, 10000.0
    rope = RotaryPositionalEmbedding(theta, d_k, max_seq_len=32)
    assert rope.state_dict() == {}  # cos/sin are not persistent
    x = torch.randn(2, seq, d_k)
    positions = torch.arange(seq).flip(0)  # any positions, not just 0..seq-1
    frequencies = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
    angles = positions[:, None].double() * frequencies[None]
    as_complex = torch.view_as_complex(x.double().reshape(2, seq, d_k // 2, 2).contiguous())
    expected = torch.view_as_real(as_complex * torch.polar(torch.ones_like(angles), angles))
    torch.testing.assert_close(rope(x, positions), expected.reshape(2, seq, d_k).float())
    # position 0 is the identity; norms are preserved everywhere
    torch.testing.assert_close(rope(x, torch.zeros(seq, dtype=torch.long)), x)
    torch.testing.assert_close(rope(x, positions).norm(dim=-1), x.norm(dim=-1))


def test_softmax_matches_torch_and_is_stable_for_huge_inputs():
    x = torch.randn(4, 9) * 5
    torch.testing.assert_close(softmax(x, dim=-1), torch.softmax(x, dim=-1))
    torch.testing.assert_close(softmax(x, dim=0), torch.softmax(x, dim=0))
    huge = torch.tensor([[1000.0, 1001.0, 999.0]])
    out = softmax(huge, dim=-1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(huge, dim=-1))


def test_softmax_gradcheck_float64():
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim=-1), (x,))


def test_attention_matches_functional_sdpa_with_boolean_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    mask = torch.rand(5, 7) > 0.3
    mask[:, 0] = True  # every query sees at least one key
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask), expected)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v)
    )
    # any number of leading batch dimensions
    out = scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0], mask)
    torch.testing.assert_close(out, expected[0, 0])


def test_attention_gradcheck_float64():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.autograd.gradcheck(lambda a, b, c: scaled_dot_product_attention(a, b, c, mask),
                                    (q, k, v))


def test_cross_entropy_matches_functional_and_is_stable():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    torch.testing.assert_close(cross_entropy(logits, targets), expected)
    huge = logits * 1000
    loss = cross_entropy(huge, targets)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(huge.reshape(-1, 11), targets.reshape(-1)))
    bf16 = cross_entropy(logits.to(torch.bfloat16), targets)
    assert bf16.dtype == torch.float32
    with pytest.raises(ValueError, match="disagree"):
        cross_entropy(logits, targets[:, :3])


def test_cross_entropy_gradcheck_float64():
    logits = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (6,))
    assert torch.autograd.gradcheck(lambda t: cross_entropy(t, targets), (logits,))


def test_cross_entropy_detached_max_keeps_gradient_exact():
    torch.manual_seed(0)
    logits = torch.randn(4, 9, requires_grad=True)
    targets = torch.randint(0, 9, (4,))
    cross_entropy(logits, targets, implementation="torch").backward()
    expected = (torch.softmax(logits.detach(), -1) - F.one_hot(targets, 9)) / 4
    torch.testing.assert_close(logits.grad, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_cross_entropy_matches_plain_ops_in_value_and_gradient(dtype):
    # 5000 columns: more than one 4096-wide block per row, and a ragged last block
    torch.manual_seed(0)
    logits = (3 * torch.randn(2, 3, 5000)).to(dtype).requires_grad_()
    targets = torch.randint(0, 5000, (2, 3))
    targets[0, 0] = 4999  # a target in the ragged block
    grad_out = torch.tensor(2.5)
    values, grads = [], []
    for implementation in ("triton", "torch"):
        loss = cross_entropy(logits, targets, implementation=implementation)
        loss.backward(grad_out)
        values.append(loss.detach())
        grads.append(logits.grad)
        logits.grad = None
    assert values[0].dtype == torch.float32 and grads[0].dtype == dtype
    torch.testing.assert_close(values[0], values[1], atol=1e-5, rtol=1e-5)
    expected = F.cross_entropy(logits.detach().float().reshape(-1, 5000), targets.reshape(-1))
    torch.testing.assert_close(values[0], expected, atol=1e-5, rtol=1e-5)
    tolerance = 1e-7 if dtype == torch.float32 else 1e-3
    torch.testing.assert_close(grads[0].float(), grads[1].float(), atol=tolerance, rtol=1e-2)


def test_triton_cross_entropy_stable_and_out_of_range_target_is_nan():
    logits = torch.tensor([[1000.0, -1000.0, 999.0], [0.0, 0.0, 0.0]])
    loss = cross_entropy(logits, torch.tensor([2, 1]), implementation="triton")
    expected = F.cross_entropy(logits, torch.tensor([2, 1]))
    torch.testing.assert_close(loss, expected)
    assert torch.isnan(cross_entropy(logits, torch.tensor([0, 3]), implementation="triton"))


def test_cross_entropy_picks_plain_ops_on_cpu_and_rejects_unknown_implementation():
    from lmlib.model.loss import resolve_implementation

    assert resolve_implementation("auto", torch.zeros(2, 3)) == "torch"
    with pytest.raises(ValueError, match="implementation"):
        cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), implementation="cuda")
    with pytest.raises(ValueError, match="triton cross_entropy takes"):
        cross_entropy(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.long),
                      implementation="triton")


def test_rope_default_positions_are_a_prefix_and_too_long_sequences_raise():
    torch.manual_seed(0)
    rope = RotaryPositionalEmbedding(10000.0, 8, max_seq_len=6)
    x = torch.randn(3, 5, 8, dtype=torch.bfloat16)
    out = rope(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, rope(x, torch.arange(5)))
    with pytest.raises(ValueError, match="6 positions"):
        rope(torch.randn(7, 8))
