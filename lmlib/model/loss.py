"""Cross-entropy on logits, computed stably through log-sum-exp in float32.

Two implementations of the same function:
- "torch": plain tensor ops, differentiable by autograd in any dtype (float64 for gradcheck);
- "triton" (lmlib.kernels.cross_entropy, imported on first use): two kernels that never
  copy the logits to float32. On a GPU this is what keeps the loss from costing as much as
  a quarter of a GPT-2-small training step.
"auto" takes triton for fp32/bf16/fp16 logits on CUDA, and "torch" elsewhere, including inside
a torch.compile'd region (the compiler fuses the plain ops itself).
"""

import functools

import torch

CROSS_ENTROPY_IMPLEMENTATIONS = ("auto", "torch", "triton")
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
@functools.cache
def _load_triton_cross_entropy():
    """lmlib.kernels' cross-entropy, imported on first use (it needs triton)."""
    from lmlib.kernels.cross_entropy import triton_cross_entropy

    return triton_cross_entropy


def resolve_implementation(implementation: str, logits: torch.Tensor) -> str:
    """The implementation `cross_entropy` uses for `logits`: "auto" made concrete."""
    if implementation not in CROSS_ENTROPY_IMPLEMENTATIONS:
        raise ValueError(
            f"cross_entropy implementation must be one of {CROSS_ENTROPY_IMPLEMENTATIONS}, "
            f"got {implementation!r}"
        )
    if implementation != "auto":
        return implementation
    if (
        not logits.is_cuda
        or logits.dtype not in _TRITON_DTYPES
        or torch.compiler.is_compiling()
    ):
        return "torch"
    try:
        _load_triton_cross_entropy()
    except ImportError:
        return "torch"
    return "triton"


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, implementation: str = "auto"
) -> torch.Tensor:
    """Mean over all batch dimensions of -log softmax(logits)[target], as a float32 (or
    float64) scalar.

    logits: (..., vocab); targets: (...) integer ids. Subtracting the row max before exp keeps
    the sum finite for any logit size; the loss never forms the probabilities themselves.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} disagree: "
            "expected logits (..., vocab) and targets (...)"
        )
    if logits.numel() == 0:
        raise ValueError(
            f"cross_entropy needs at least one row of logits, got {tuple(logits.shape)}"
        )
    if resolve_implementation(implementation, logits) == "triton":
        if logits.dtype not in _TRITON_DTYPES:
            raise ValueError(f"the triton cross_entropy takes {_TRITON_DTYPES}, got {logits.dtype}")
        return _load_triton_cross_entropy()(logits, targets)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    row_max = logits.amax(dim=-1, keepdim=True).detach()  # its gradient is zero: -1 + 1
    shifted = logits - row_max
    log_sum_exp = torch.log(torch.exp(shifted).sum(dim=-1))
    target_logit = shifted.gather(-1, targets.unsqueeze(-1).long()).squeeze(-1)
    return (log_sum_exp - target_logit).mean()
