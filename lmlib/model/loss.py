"""Cross-entropy on logits, computed stably through log-sum-exp in float32."""

import torch


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over all batch dimensions of -log softmax(logits)[target].

    logits: (..., vocab); targets: (...) integer ids. Subtracting the row max before exp keeps
    the sum finite for any logit size; the loss never forms the probabilities themselves.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} disagree: "
            "expected logits (..., vocab) and targets (...)"
        )
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    row_max = logits.amax(dim=-1, keepdim=True)
    shifted = logits - row_max
    log_sum_exp = torch.log(torch.exp(shifted).sum(dim=-1))
    target_logit = shifted.gather(-1, targets.unsqueeze(-1).long()).squeeze(-1)
    return (log_sum_exp - target_logit).mean()
