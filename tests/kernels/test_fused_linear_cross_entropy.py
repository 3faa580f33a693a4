"""Chunked LM head + cross-entropy against torch's full-logits cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

from lmlib.kernels import fused_linear_cross_entropy


def full_logits_loss(hidden, weight, targets, ignore_index=-100):
    logits = (hidden @ weight.T).float()
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=ignore_index)


def inputs(batch, seq, dim, vocab, dtype=torch.float32, device="cpu", seed=0):
    generator = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(batch, seq, dim, generator=generator, device=device).to(dtype)
    weight = (torch.randn(vocab, dim, generator=generator, device=device) / dim**0.5).to(dtype)
    targets = torch.randint(0, vocab, (batch, seq), generator=generator, device=device)
    return hidden.requires_grad_(), weight.requires_grad_(), targets


@pytest.mark.parametrize("chunk_tokens", [7, 32, 1000])  # ragged, exact, one chunk
def test_loss_and_gradients_match_full_logits(chunk_tokens):
    hidden, weight, targets = inputs(2, 16, 24, 50)
    targets[0, :5] = -100  # ignored positions count in neither the loss nor the mean
    loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_tokens=chunk_tokens)
    grads = torch.autograd.grad(loss * 3.0, (hidden, weight))
    expected = full_logits_loss(hidden, weight, targets)
    expected_grads = torch.autograd.grad(expected * 3.0, (hidden, weight))
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert grad.shape == expected_grad.shape
        assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_bfloat16_is_close_to_float32():
    hidden, weight, targets = inputs(2, 32, 64, 300, dtype=torch.bfloat16)
    loss = fused_linear_cross_entropy(hidden, weight, targets, chunk_tokens=16)
    loss.backward()
    reference = full_logits_loss(hidden.detach().float(), weight.detach().float(), targets)
    assert abs(loss.item() - reference.item()) < 1e-2 * reference.item()
    assert hidden.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.bfloat16


def test_bad_shapes_raise_clear_errors():
    hidden, weight, targets = inputs(1, 4, 8, 10)
    with pytest.raises(ValueError, match="expects hidden"):
        fused_linear_cross_entropy(hidden, weight[:, :4], targets)
    with pytest.raises(ValueError, match="chunk_tokens must be positive"):
        fused_linear_cross_entropy(hidden, weight, targets, chunk_tokens=0)


@pytest.mark.gpu
def test_gpu_peak_memory_is_a_fraction_of_full_logits():
    """8k tokens x 50k vocab: the full float32 logits alone are 1.6 GB."""
    hidden, weight, targets = inputs(4, 2048, 1024, 50304, dtype=torch.bfloat16, device="cuda")
    peaks, losses = {}, {}
    for name, loss_fn in (
        ("full", lambda: full_logits_loss(hidden, weight, targets)),
        ("chunked", lambda: fused_linear_cross_entropy(hidden, weight, targets, 1024)),
    ):
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss = loss_fn()
        loss.backward()
        torch.cuda.synchronize()
        peaks[name] = (torch.cuda.max_memory_allocated() - base) / 2**20
        losses[name] = loss.item()
    print(f"peak extra memory, MiB: {peaks}")
    assert abs(losses["chunked"] - losses["full"]) < 1e-2 * losses["full"]
    assert peaks["chunked"] < 0.3 * peaks["full"], peaks
