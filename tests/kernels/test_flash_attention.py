"""FlashAttention-2 (PyTorch reference and Triton kernels) against naive attention in float64.

On the CPU the Triton kernels run under TRITON_INTERPRET=1 (tests/conftest.py), with small shapes
and one 64x64 tile; the `gpu` tests repeat the checks at real sizes in bfloat16.
"""

import math

import pytest
import torch

from lmlib.kernels import (
    FlashAttention2,
    FlashAttention2Torch,
    flash_attention,
    flash_attention_torch_forward,
    flash_attention_triton_forward,
)

IMPLEMENTATIONS = {"torch": FlashAttention2Torch, "triton": FlashAttention2}
# Small-shape tests run on the GPU when there is one (the Triton path needs CUDA tensors there).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def naive_attention(q, k, v, is_causal):
    """softmax(q k^T / sqrt(d)) v in float64; causal is top-left aligned, as in SDPA."""
    scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
    if is_causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v.double()


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


def random_qkv(shape_q, seq_k=None, dtype=torch.float32, device=DEVICE, seed=0):
    generator = torch.Generator(device=device).manual_seed(seed)
    shape_k = (*shape_q[:-2], seq_k or shape_q[-2], shape_q[-1])
    return [
        torch.randn(s, generator=generator, device=device, dtype=torch.float32)
        .to(dtype)
        .requires_grad_()
        for s in (shape_q, shape_k, shape_k)
    ]


def forward_backward_errors(function, q, k, v, is_causal, seed=1):
    """Relative errors of O, dQ, dK, dV against naive float64 attention."""
    out = function.apply(q, k, v, is_causal)
    grad_out = torch.randn(
        out.shape, generator=torch.Generator(device=q.device).manual_seed(seed), device=q.device
    ).to(out.dtype)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    expected = naive_attention(*leaves, is_causal)
    expected_grads = torch.autograd.grad(expected, leaves, grad_out.double())
    assert out.dtype == q.dtype and out.shape == q.shape
    return [relative_error(out, expected)] + [
        relative_error(g, e) for g, e in zip(grads, expected_grads, strict=True)
    ]


@pytest.mark.parametrize("implementation", ["torch", "triton"])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize(
    "batch,heads,seq,head_dim",
    [(1, 2, 64, 32), (2, 1, 100, 16), (1, 2, 130, 64)],  # one tile, ragged, ragged 3 tiles
)
def test_forward_and_backward_match_naive_attention_float32(
    implementation, is_causal, batch, heads, seq, head_dim
):
    q, k, v = random_qkv((batch, heads, seq, head_dim))
    errors = forward_backward_errors(IMPLEMENTATIONS[implementation], q, k, v, is_causal)
    assert max(errors) < 1e-5, errors


@pytest.mark.parametrize("implementation", ["torch", "triton"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_three_dimensional_input_and_unequal_lengths(implementation, is_causal):
    q, k, v = random_qkv((2, 70, 32), seq_k=90)
    errors = forward_backward_errors(IMPLEMENTATIONS[implementation], q, k, v, is_causal)
    assert max(errors) < 1e-5, errors


@pytest.mark.parametrize("implementation", ["torch", "triton"])
def test_head_dim_that_is_not_a_power_of_two(implementation):
    q, k, v = random_qkv((1, 2, 80, 48))
    errors = forward_backward_errors(IMPLEMENTATIONS[implementation], q, k, v, True)
    assert max(errors) < 1e-5, errors


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_sixteen_bit_inputs(dtype):
    q, k, v = random_qkv((1, 2, 96, 32), dtype=dtype)
    errors = forward_backward_errors(FlashAttention2, q, k, v, True)
    assert max(errors) < 2e-2, errors


@pytest.mark.parametrize("forward", [flash_attention_torch_forward, flash_attention_triton_forward])
def test_logsumexp_shape_and_value(forward):
    q3, k3, v3 = (t.detach() for t in random_qkv((2, 70, 16)))
    out3, lse3 = forward(q3, k3, v3, True)
    assert lse3.shape == (2, 70) and lse3.dtype == torch.float32
    scores = q3.double() @ k3.double().transpose(-1, -2) / 4.0
    causal = torch.ones(70, 70, dtype=torch.bool, device=DEVICE).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    assert torch.allclose(lse3.double(), torch.logsumexp(scores, dim=-1), atol=1e-5)
    q4, k4, v4 = (t.reshape(1, 2, 70, 16) for t in (q3, k3, v3))
    out4, lse4 = forward(q4, k4, v4, True)
    assert lse4.shape == (1, 2, 70) and out4.shape == q4.shape
    assert torch.allclose(lse4.reshape(2, 70), lse3, atol=1e-6)


def test_flash_attention_dispatch_agrees_between_implementations():
    q, k, v = (t.detach() for t in random_qkv((1, 2, 64, 32)))
    by_torch = flash_attention(q, k, v, is_causal=True, implementation="torch")
    by_triton = flash_attention(q, k, v, is_causal=True, implementation="triton")
    assert relative_error(by_triton, by_torch) < 1e-5
    # the model passes (batch, heads, seq, head_dim) views made by transpose: strided input
    qt, kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    strided = flash_attention(qt, kt, vt, is_causal=True, implementation="triton")
    assert relative_error(strided, by_torch) < 1e-5


def test_bad_inputs_raise_clear_errors():
    q = torch.randn(1, 2, 16, 16, device=DEVICE)
    with pytest.raises(ValueError, match="unknown flash attention implementation"):
        flash_attention(q, q, q, is_causal=False, implementation="cuda")
    with pytest.raises(ValueError, match="batch, heads, seq, head_dim"):
        flash_attention(q[0], q[0], q[0], is_causal=False, implementation="triton")
    with pytest.raises(ValueError, match="share batch, heads and head dim"):
        FlashAttention2.apply(q, q[..., :8], q[..., :8])
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        FlashAttention2.apply(q.double(), q.double(), q.double())


def test_triton_function_works_under_torch_compile():
    q, k, v = random_qkv((1, 2, 64, 32))

    def attention_sum(q, k, v):
        return FlashAttention2.apply(q, k, v, True).sum()

    compiled = torch.compile(attention_sum, backend="aot_eager", fullgraph=True)
    loss = compiled(q, k, v)
    grads = torch.autograd.grad(loss, (q, k, v))
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    expected = naive_attention(*leaves, True).sum()
    expected_grads = torch.autograd.grad(expected, leaves)
    assert abs(loss.item() - expected.item()) < 1e-4 * abs(expected.item()) + 1e-4
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert relative_error(grad, expected_grad) < 1e-5


# ----------------------------------------------------------------------------- GPU, real sizes


@pytest.mark.gpu
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize(
    "seq,head_dim", [(1024, 64), (2048, 128), (1000, 64), (777, 128), (512, 256)]
)
def test_gpu_bfloat16_matches_naive_attention(is_causal, seq, head_dim):
    q, k, v = random_qkv((2, 4, seq, head_dim), dtype=torch.bfloat16, device="cuda")
    errors = forward_backward_errors(FlashAttention2, q, k, v, is_causal)
    # bf16 inputs and outputs: a relative error of ~4e-3 is rounding; compare SDPA's
    assert max(errors) < 2e-2, errors
    sdpa_out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    ours = FlashAttention2.apply(q, k, v, is_causal)
    expected = naive_attention(q.detach(), k.detach(), v.detach(), is_causal)
    assert relative_error(ours, expected) < 1.5 * relative_error(sdpa_out, expected) + 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim", [64, 256])
def test_gpu_every_tile_configuration_is_correct(head_dim, monkeypatch):
    """The other GPU tests run on each kernel's first tiles (LMLIB_ATTENTION_AUTOTUNE=0 in
    conftest); this runs forward and backward on every tile configuration the autotuner may
    pick, at a ragged length that exercises the masked loops."""
    import triton

    from lmlib.kernels import flash_attention_triton as kernels

    size = "256" if head_dim > 128 else "up_to_128"
    tables = {
        "_FWD": (kernels._fwd_kernel, kernels.FWD_TILES_256 if head_dim > 128 else kernels.FWD_TILES),
        "_DKDV": (kernels._bwd_dkdv_kernel,
                  kernels.DKDV_TILES_256 if head_dim > 128 else kernels.DKDV_TILES),
        "_DQ": (kernels._bwd_dq_kernel, kernels.DQ_TILES_256 if head_dim > 128 else kernels.DQ_TILES),
    }
    q, k, v = random_qkv((1, 2, 1000, head_dim), dtype=torch.bfloat16, device="cuda")
    for number in range(max(len(tiles) for _, tiles in tables.values())):
        for name, (kernel, tiles) in tables.items():
            m, n, warps, stages = tiles[number % len(tiles)]
            config = triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=warps, num_stages=stages)
            monkeypatch.setitem(getattr(kernels, name), size,
                                triton.autotune([config], key=kernels.TUNE_KEY)(kernel))
        for is_causal in (False, True):
            errors = forward_backward_errors(FlashAttention2, q, k, v, is_causal)
            assert max(errors) < 2e-2, (number, is_causal, errors)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gpu_other_dtypes(dtype):
    q, k, v = random_qkv((1, 4, 1000, 64), dtype=dtype, device="cuda")
    errors = forward_backward_errors(FlashAttention2, q, k, v, True)
    assert max(errors) < (1e-4 if dtype == torch.float32 else 1e-2), errors


@pytest.mark.gpu
def test_gpu_torch_reference_matches_triton():
    q, k, v = random_qkv((2, 4, 1024, 64), dtype=torch.bfloat16, device="cuda")
    errors = forward_backward_errors(FlashAttention2Torch, q, k, v, True)
    assert max(errors) < 2e-2, errors


@pytest.mark.gpu
def test_gpu_torch_compile_with_inductor():
    q, k, v = random_qkv((2, 4, 1024, 64), dtype=torch.bfloat16, device="cuda")

    def attention(q, k, v):
        return flash_attention(q, k, v, is_causal=True, implementation="triton") * 2.0

    compiled = torch.compile(attention, fullgraph=True)
    errors = forward_backward_errors(_as_function(compiled, 0.5), q, k, v, True)
    assert max(errors) < 2e-2, errors


def _as_function(fn, factor):
    class Wrapped:
        @staticmethod
        def apply(q, k, v, is_causal):
            return fn(q, k, v) * factor

    return Wrapped
