"""LM head + cross-entropy in chunks, never materializing the (tokens, vocab) logits.

What is notable:
- The forward pass walks the tokens in chunks: logits for one chunk (chunk x vocab, float32),
  their logsumexp and the loss, and at once the gradient of the mean loss with respect to those
  logits, softmax - one_hot, which is folded into dHidden and dWeight before the chunk is freed.
  Peak extra memory is one chunk's logits, not all of them.
- Backward only scales the saved gradients by the incoming scalar gradient, so the logits are
  never recomputed.
- Targets equal to `ignore_index` count neither in the loss nor in the mean, as in
  `torch.nn.functional.cross_entropy`.
"""

import torch

DEFAULT_CHUNK_TOKENS = 4096


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean cross_entropy(hidden @ weight.T, targets) with chunked logits; hidden is (tokens, d)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens=DEFAULT_CHUNK_TOKENS, ignore_index=-100):
        valid = targets != ignore_index
        n_valid = valid.sum().clamp(min=1)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_tokens):
            chunk = slice(start, start + chunk_tokens)
            hidden_chunk, chunk_targets = hidden[chunk], targets[chunk]
            chunk_valid = valid[chunk]
            logits = (hidden_chunk @ weight.T).float()  # (chunk, vocab): the only big tensor
            logsumexp = torch.logsumexp(logits, dim=-1)
            safe_targets = torch.where(chunk_valid, chunk_targets, 0)
            target_logits = logits.gather(1, safe_targets[:, None]).squeeze(1)
            loss_sum += ((logsumexp - target_logits) * chunk_valid).sum()
            # d(mean loss)/d(logits) = (softmax - one_hot) / n_valid, on valid rows; in place
            grad_logits = logits.sub_(logsumexp[:, None]).exp_()
            grad_logits[torch.arange(len(safe_targets), device=logits.device), safe_targets] -= 1.0
            grad_logits *= (chunk_valid / n_valid)[:, None]
            grad_logits = grad_logits.to(hidden.dtype)
            grad_hidden[chunk] = grad_logits @ weight
            grad_weight += grad_logits.T.float() @ hidden_chunk.float()
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return loss_sum / n_valid

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Mean next-token loss of an LM head without the full logits.

    hidden: (..., d) final hidden states; weight: (vocab, d) LM-head weight; targets: (...) ids.
    """
    if (
        hidden.shape[:-1] != targets.shape
        or weight.dim() != 2
        or weight.shape[1] != hidden.shape[-1]
    ):
        raise ValueError(
            "fused_linear_cross_entropy expects hidden (..., d), weight (vocab, d), targets (...);"
            f" got {tuple(hidden.shape)}, {tuple(weight.shape)}, {tuple(targets.shape)}"
        )
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive; got {chunk_tokens}")
    return ChunkedLinearCrossEntropy.apply(
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        targets.reshape(-1),
        chunk_tokens,
        ignore_index,
    )
