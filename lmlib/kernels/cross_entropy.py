"""Cross-entropy on (rows, vocab) logits in two Triton kernels, for training on a GPU.

Why: the loss runs outside the compiled model, and written with plain tensor ops it makes
several float32 copies of the (tokens, vocab) logits (6.6 GB each for 32 x 1024 x 50304) and
reads them a dozen times in forward and backward. Here:
- forward reads each row of logits once, in blocks, with an online max and sum of exp in
  float32, and keeps only the row's max and log-sum-exp (8 bytes a row);
- backward reads the logits once more and writes d(loss)/d(logits) = (softmax - one_hot) *
  grad / rows straight in the logits' dtype, so no float32 copy of the logits ever exists.
A target outside [0, vocab) gives a NaN loss rather than reading out of bounds (checking on
the host would cost a device sync every step).
"""

import torch
import triton
import triton.language as tl

MAX_BLOCK = 4096


@triton.jit
def _cross_entropy_forward_kernel(
    logits_ptr, targets_ptr, loss_ptr, max_ptr, log_sum_ptr, row_stride, n_cols,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_logits = logits_ptr + row * row_stride
    offsets = tl.arange(0, BLOCK)
    running_max = float("-inf")
    running_sum = 0.0
    for start in range(0, n_cols, BLOCK):
        columns = start + offsets
        x = tl.load(row_logits + columns, mask=columns < n_cols, other=float("-inf"))
        x = x.to(tl.float32)
        new_max = tl.maximum(running_max, tl.max(x, axis=0))
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(
            tl.exp(x - new_max), axis=0
        )
        running_max = new_max
    log_sum = tl.log(running_sum)
    target = tl.load(targets_ptr + row).to(tl.int64)
    in_range = (target >= 0) & (target < n_cols)
    target_logit = tl.load(row_logits + target, mask=in_range, other=float("nan"))
    # (max - target) + log(sum), not lse - target: large logits keep their precision
    tl.store(max_ptr + row, running_max)
    tl.store(log_sum_ptr + row, log_sum)
    tl.store(loss_ptr + row, (running_max - target_logit.to(tl.float32)) + log_sum)


@triton.jit
def _cross_entropy_backward_kernel(
    logits_ptr, targets_ptr, max_ptr, log_sum_ptr, grad_loss_ptr, grad_ptr, row_stride,
    grad_row_stride, n_cols, inverse_rows, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_logits = logits_ptr + row * row_stride
    row_grad = grad_ptr + row * grad_row_stride
    offsets = tl.arange(0, BLOCK)
    row_max = tl.load(max_ptr + row)
    log_sum = tl.load(log_sum_ptr + row)
    target = tl.load(targets_ptr + row).to(tl.int64)
    scale = tl.load(grad_loss_ptr).to(tl.float32) * inverse_rows
    for start in range(0, n_cols, BLOCK):
        columns = start + offsets
        mask = columns < n_cols
        x = tl.load(row_logits + columns, mask=mask, other=0.0).to(tl.float32)
        probability = tl.exp((x - row_max) - log_sum)
        probability = tl.where(columns == target, probability - 1.0, probability)
        tl.store(row_grad + columns, (probability * scale).to(grad_ptr.dtype.element_ty), mask=mask)


def _block_size(n_cols: int) -> int:
    return min(MAX_BLOCK, triton.next_power_of_2(n_cols))


class TritonCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of 2-D logits (rows, vocab) with targets (rows,); float32 loss."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.stride(-1) != 1:
            logits = logits.contiguous()
        rows, n_cols = logits.shape
        losses = torch.empty(rows, dtype=torch.float32, device=logits.device)
        row_max = torch.empty(rows, dtype=torch.float32, device=logits.device)
        log_sum = torch.empty(rows, dtype=torch.float32, device=logits.device)
        block = _block_size(n_cols)
        _cross_entropy_forward_kernel[(rows,)](
            logits, targets, losses, row_max, log_sum, logits.stride(0), n_cols, BLOCK=block,
            num_warps=8 if block >= 2048 else 4,
        )
        ctx.save_for_backward(logits, targets, row_max, log_sum)
        return losses.mean()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        logits, targets, row_max, log_sum = ctx.saved_tensors
        rows, n_cols = logits.shape
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        block = _block_size(n_cols)
        _cross_entropy_backward_kernel[(rows,)](
            logits, targets, row_max, log_sum, grad_loss.contiguous(), grad, logits.stride(0),
            grad.stride(0), n_cols, 1.0 / rows, BLOCK=block, num_warps=8 if block >= 2048 else 4,
        )
        return grad, None


def triton_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over all leading dimensions; logits (..., vocab) in fp32, bf16 or fp16."""
    vocab = logits.shape[-1]
    return TritonCrossEntropy.apply(logits.reshape(-1, vocab), targets.reshape(-1))
