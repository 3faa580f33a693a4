"""The whole AdamW update of one tensor in one Triton kernel.

Why: with torch._foreach_* ops an update is eight passes over the parameters, gradients and
moments (about 20 tensor reads and writes per element); fused, it is one pass that reads
p, g, m, v and writes p, m, v. The arithmetic is float32 and follows torch.optim.AdamW's
order with round-to-nearest sqrt and division, so it agrees with the other paths to rounding.
"""

import torch
import triton
import triton.language as tl

BLOCK = 2048


@triton.jit
def _adamw_kernel(
    param_ptr, grad_ptr, exp_avg_ptr, exp_avg_sq_ptr, n_elements,
    decay_factor, one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n_elements
    p = tl.load(param_ptr + offsets, mask=mask).to(tl.float32)
    g = tl.load(grad_ptr + offsets, mask=mask).to(tl.float32)
    m = tl.load(exp_avg_ptr + offsets, mask=mask).to(tl.float32)
    v = tl.load(exp_avg_sq_ptr + offsets, mask=mask).to(tl.float32)
    p = p * decay_factor
    m = m + one_minus_beta1 * (g - m)  # lerp, as torch computes it for weights below 0.5
    v = v * beta2 + one_minus_beta2 * g * g
    denominator = tl.div_rn(tl.sqrt_rn(v), bias_correction2_sqrt) + eps
    p = p - step_size * tl.div_rn(m, denominator)
    tl.store(param_ptr + offsets, p.to(param_ptr.dtype.element_ty), mask=mask)
    tl.store(exp_avg_ptr + offsets, m.to(exp_avg_ptr.dtype.element_ty), mask=mask)
    tl.store(exp_avg_sq_ptr + offsets, v.to(exp_avg_sq_ptr.dtype.element_ty), mask=mask)


def adamw_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    decay_factor: float,
    beta1: float,
    beta2: float,
    step_size: float,
    bias_correction2_sqrt: float,
    eps: float,
) -> None:
    """In place: param, exp_avg, exp_avg_sq (all contiguous, same number of elements)."""
    n = param.numel()
    scalars = [float(x) for x in (decay_factor, 1 - beta1, beta2, 1 - beta2, step_size,
                                  bias_correction2_sqrt, eps)]
    _adamw_kernel[(triton.cdiv(n, BLOCK),)](
        param, grad, exp_avg, exp_avg_sq, n, *scalars, BLOCK=BLOCK, num_warps=8,
    )
