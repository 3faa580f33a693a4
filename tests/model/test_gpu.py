"""On a CUDA GPU: bf16 autocast through the model, and the Triton attention backend."""

import pytest
import torch

from lmlib.model import ModelConfig, TransformerLM, cross_entropy, generate

pytestmark = pytest.mark.gpu

CONFIG = dict(vocab_size=512, context_length=256, d_model=256, num_layers=2, num_heads=4)


def _loss_and_grads(backend: str):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**CONFIG, attention_backend=backend), device="cuda")
    ids = torch.randint(0, 512, (4, 257), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
    loss.backward()
    return loss.detach(), model.layers[0].attn.q_proj.weight.grad


def test_bf16_training_step_is_finite_and_float32_loss():
    loss, grad = _loss_and_grads("torch")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(grad).all()


def test_flash_triton_backend_matches_ours_on_gpu():
    pytest.importorskip("lmlib.kernels")
    ours_loss, ours_grad = _loss_and_grads("torch")
    flash_loss, flash_grad = _loss_and_grads("flash_triton")
    torch.testing.assert_close(flash_loss, ours_loss, atol=2e-2, rtol=1e-2)
    cosine = torch.nn.functional.cosine_similarity(flash_grad.flatten(), ours_grad.flatten(), 0)
    assert cosine > 0.99


def test_generation_with_kv_cache_on_gpu():
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**CONFIG), device="cuda")
    new = generate(model, None, [1, 2, 3], max_new_tokens=20, temperature=0.0)
    assert len(new) == 20 and all(0 <= t < 512 for t in new)


def test_triton_cross_entropy_on_gpu_matches_functional_for_gpt2_vocab():
    torch.manual_seed(0)
    logits = (2 * torch.randn(4, 256, 50304, device="cuda")).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, 50304, (4, 256), device="cuda")
    loss = cross_entropy(logits, targets)  # "auto": the Triton kernels on CUDA
    loss.backward()
    reference_logits = logits.detach().float().requires_grad_()
    expected = torch.nn.functional.cross_entropy(reference_logits.flatten(0, 1), targets.flatten())
    expected.backward()
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)
    assert logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(logits.grad.float(), reference_logits.grad, atol=1e-7, rtol=1e-2)
