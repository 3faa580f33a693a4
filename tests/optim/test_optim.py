"""AdamW against torch.optim.AdamW, the cosine schedule, and global-norm gradient clipping."""

import copy
import math

import pytest
import torch

from lmlib.optim import AdamW, get_lr_cosine_schedule, gradient_clipping


def _train_with(optimizer_class, steps, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    groups = [
        {"params": [model[0].weight, model[2].weight], "weight_decay": 0.1},
        {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0},
    ]
    optimizer = optimizer_class(groups, **kwargs)
    data = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(16, 10, generator=data)
        y = torch.randn(16, 3, generator=data)
        for group in optimizer.param_groups:  # a changing lr, as in training
            group["lr"] = 1e-2 * (0.5 + 0.5 * math.cos(step / steps * math.pi))
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("foreach", [True, False])
def test_adamw_matches_torch_adamw_over_many_steps(foreach):
    settings = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ours = _train_with(lambda g, **k: AdamW(g, foreach=foreach, **k), 300, **settings)
    reference = _train_with(torch.optim.AdamW, 300, **settings)
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_adamw_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    optimizer = AdamW([w], lr=0.1, weight_decay=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        (w**2).sum().backward()
        optimizer.step()
    clone = torch.nn.Parameter(w.detach().clone())
    other = AdamW([clone], lr=0.1, weight_decay=0.01)
    other.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as if read from disk
    for param, opt in ((w, optimizer), (clone, other)):
        opt.zero_grad()
        (param**2).sum().backward()
        opt.step()
    assert torch.equal(w, clone)
    assert other.state[clone]["step"] == 4


def test_adamw_rejects_bad_hyperparameters():
    w = torch.nn.Parameter(torch.zeros(2))
    for bad in (dict(lr=-1.0), dict(betas=(1.0, 0.9)), dict(eps=-1.0), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError):
            AdamW([w], **bad)


def test_adamw_weight_decay_is_decoupled():
    # with a zero gradient Adam's step is 0, so only lr * wd * p remains
    w = torch.nn.Parameter(torch.full((3,), 2.0))
    optimizer = AdamW([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros(3)
    optimizer.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 2.0 * (1 - 0.05)))


def test_cosine_schedule_values():
    args = dict(max_lr=1.0, min_lr=0.1, warmup_iters=7, cosine_cycle_iters=21)
    assert get_lr_cosine_schedule(0, **args) == 0.0
    assert get_lr_cosine_schedule(3, **args) == pytest.approx(3 / 7)
    assert get_lr_cosine_schedule(7, **args) == pytest.approx(1.0)
    assert get_lr_cosine_schedule(14, **args) == pytest.approx(0.55)
    assert get_lr_cosine_schedule(21, **args) == pytest.approx(0.1)
    assert get_lr_cosine_schedule(50, **args) == 0.1
    values = [get_lr_cosine_schedule(t, **args) for t in range(7, 22)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_gradient_clipping_matches_torch_clip_grad_norm():
    torch.manual_seed(0)
    shapes = [(4, 5), (5,), (3, 3, 2)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours, reference):
        a.grad = torch.randn(a.shape) * 3
        b.grad = a.grad.clone()
    frozen = torch.nn.Parameter(torch.ones(2))  # no grad: ignored
    norm = gradient_clipping([*ours, frozen], max_l2_norm=1.0)
    expected = torch.nn.utils.clip_grad_norm_(reference, max_norm=1.0)
    torch.testing.assert_close(norm, expected)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a.grad, b.grad)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]))
    assert total.item() == pytest.approx(1.0, rel=1e-5)


def test_gradient_clipping_leaves_small_gradients_alone():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([0.1, 0.2, 0.2])
    gradient_clipping([p], max_l2_norm=1.0)
    torch.testing.assert_close(p.grad, torch.tensor([0.1, 0.2, 0.2]))


def test_fused_kernel_matches_torch_adamw(monkeypatch):
    # the Triton kernel runs on the CPU under TRITON_INTERPRET=1 (tests/conftest.py), which is
    # off where CUDA is present: there test_adamw_on_gpu_matches_torch_adamw runs the kernel
    if torch.cuda.is_available():
        pytest.skip("CPU interpreter test; the GPU test covers the kernel on CUDA")
    import lmlib.optim.adamw as adamw

    monkeypatch.setattr(adamw, "fused_available", lambda params: True)
    settings = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ours = _train_with(lambda g, **k: AdamW(g, fused=True, **k), 40, **settings)
    reference = _train_with(torch.optim.AdamW, 40, **settings)
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_fused_adamw_state_dict_loads_into_foreach_and_back():
    w = torch.nn.Parameter(torch.randn(4))
    optimizer = AdamW([w], lr=0.1, fused=False)
    w.grad = torch.ones(4)
    optimizer.step()
    state = copy.deepcopy(optimizer.state_dict())
    assert state["param_groups"][0]["fused_kernel"] is False
    other = AdamW([torch.nn.Parameter(w.detach().clone())], lr=0.1)
    other.load_state_dict(state)
    assert other.state_dict()["state"][0]["step"] == 1  # still a plain int


def test_fused_true_without_cuda_tensors_raises_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    w = torch.nn.Parameter(torch.zeros(3))
    w.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match=r"fused=True\) needs contiguous CUDA tensors"):
        AdamW([w], fused=True).step()
    with pytest.raises(ValueError, match="fused"):
        AdamW([w], fused="yes")


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [None, False])
def test_adamw_on_gpu_matches_torch_adamw(fused):
    torch.manual_seed(0)
    shapes = [(256, 384), (384,), (1000, 64)]
    ours = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in shapes]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    settings = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours_optimizer = AdamW(ours, fused=fused, **settings)
    reference_optimizer = torch.optim.AdamW(reference, **settings)
    generator = torch.Generator("cuda").manual_seed(1)
    for _ in range(100):
        for a, b in zip(ours, reference):
            a.grad = torch.randn(a.shape, device="cuda", generator=generator)
            b.grad = a.grad.clone()
        ours_optimizer.step()
        reference_optimizer.step()
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
