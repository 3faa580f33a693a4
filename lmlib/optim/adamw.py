"""AdamW (Loshchilov & Hutter) on the torch.optim.Optimizer base class.

Notable: weight decay is decoupled (p <- p - lr * wd * p, applied before the Adam step), both
moments are bias-corrected, and the arithmetic follows torch.optim.AdamW's order so the two
agree to float rounding. Three ways to run the same update:
- fused (the default for CUDA tensors when triton imports): one Triton kernel per tensor does
  the whole update in a single pass over p, g, m, v (lmlib.optim.adamw_triton);
- foreach (the default elsewhere): a handful of multi-tensor kernels (torch._foreach_*) for all
  tensors together;
- a plain loop over tensors (foreach=False, fused=False).
"""

import math
from collections.abc import Iterable

import torch

_adamw_update_ = None


def _load_fused_update():
    """lmlib.optim.adamw_triton's kernel, imported on first use (it needs triton)."""
    global _adamw_update_
    if _adamw_update_ is None:
        from lmlib.optim.adamw_triton import adamw_update_

        _adamw_update_ = adamw_update_
    return _adamw_update_


def fused_available(params: list[torch.Tensor]) -> bool:
    """True when every tensor is on CUDA, contiguous with a contiguous gradient, and triton
    imports."""
    if not all(p.is_cuda and p.is_contiguous() and p.grad.is_contiguous() for p in params):
        return False
    try:
        _load_fused_update()
    except ImportError:
        return False
    return True


class AdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        foreach: bool = True,
        fused: bool | None = None,
    ):
        """fused: None picks the Triton kernel whenever the tensors allow it (CUDA, contiguous),
        True insists on it (an error otherwise), False never uses it."""
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
        if fused not in (None, True, False):
            raise ValueError(f"fused must be None, True or False, got {fused!r}")
        # stored as "fused_kernel": torch's own "fused" key would make load_state_dict move
        # our integer step counts to the device
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        foreach=foreach, fused_kernel=fused)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            fused = group.get("fused_kernel")
            if fused is None:
                fused = fused_available(params)
            elif fused and not fused_available(params):
                raise RuntimeError(
                    "AdamW(fused=True) needs contiguous CUDA tensors and triton; "
                    "pass fused=None to fall back to the multi-tensor update"
                )
            if fused:
                self._update_fused(group, params)
            elif group["foreach"]:
                self._update_foreach(group, params)
            else:
                self._update_single(group, params)
        return loss

    def _update_fused(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, weight_decay = (
            group["lr"], group["betas"], group["eps"], group["weight_decay"]
        )
        update_ = _load_fused_update()
        for p in params:
            state = self.state[p]
            step = state["step"]
            update_(
                p, p.grad, state["exp_avg"], state["exp_avg_sq"],
                decay_factor=1 - lr * weight_decay, beta1=beta1, beta2=beta2,
                step_size=lr / (1 - beta1**step), bias_correction2_sqrt=math.sqrt(1 - beta2**step),
                eps=eps,
            )

    def _update_single(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, weight_decay = (
            group["lr"], group["betas"], group["eps"], group["weight_decay"]
        )
        for p in params:
            state = self.state[p]
            step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
            p.mul_(1 - lr * weight_decay)
            exp_avg.lerp_(p.grad, 1 - beta1)  # m <- beta1 m + (1 - beta1) g
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            denominator = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
            p.addcdiv_(exp_avg, denominator, value=-lr / bias_correction1)

    def _update_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, weight_decay = (
            group["lr"], group["betas"], group["eps"], group["weight_decay"]
        )
        # multi-tensor kernels need one device and dtype per call
        buckets: dict[tuple, list[torch.Tensor]] = {}
        for p in params:
            buckets.setdefault((p.device, p.dtype), []).append(p)
        for bucket in buckets.values():
            grads = [p.grad for p in bucket]
            exp_avgs = [self.state[p]["exp_avg"] for p in bucket]
            exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in bucket]
            steps = [self.state[p]["step"] for p in bucket]
            if weight_decay:
                torch._foreach_mul_(bucket, 1 - lr * weight_decay)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            denominators = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denominators, [math.sqrt(1 - beta2**s) for s in steps])
            torch._foreach_add_(denominators, eps)
            torch._foreach_addcdiv_(
                bucket, exp_avgs, denominators, [-lr / (1 - beta1**s) for s in steps]
            )
