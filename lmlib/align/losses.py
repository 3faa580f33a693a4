"""Post-training losses: SFT, policy gradients (REINFORCE, GRPO-clip) and DPO, on per-token
log-probabilities.

The CS336 assignment-5 reference interface; names and semantics kept.

Notable:
- a model is an `lmlib.model.TransformerLM` (returns logits) or a transformers causal LM
  (returns an object with `.logits`); both are read the same way. Log-probabilities are float32
  (float64 stays float64) and computed as the label's logit minus the row's log-sum-exp, which
  never materialises a second (batch, time, vocab) tensor; inputs go to the model's device;
- masks are 0/1 (bool or numeric): a masked-out value never enters a sum, even when it is inf
  or nan (padding's log-probability can be anything);
- the train steps call `loss.backward()` themselves and return the loss already divided by
  `gradient_accumulation_steps`, so summing the gradients of that many micro-batches gives the
  gradient of their mean; metadata holds detached tensors for logging;
- GRPO length normalisation, three ways: "sequence" (the reference and the GRPO paper: each
  response's mean token loss, then the batch mean; a long response's tokens weigh less),
  "token" (every response token of the batch weighs the same, as DAPO does) and "constant"
  (each response's summed loss over a fixed constant, then the batch mean: Dr. GRPO, no length
  bias at all). A response with no tokens makes "sequence" nan, as in the reference;
- group-normalised advantages divide by torch.std (unbiased) + eps, as the reference does;
- DPO scores a pair in one forward per model: chosen and rejected share the prompt and are
  padded into one batch of two; the prompt's log-probabilities cancel in the DPO margin, so
  only response tokens (and the end-of-text token after each) are summed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from lmlib.align.data import tokenize_prompt_and_output

RewardFunction = Callable[[str, str], dict[str, float]]
POLICY_GRADIENT_LOSS_TYPES = ("no_baseline", "reinforce_with_baseline", "grpo_clip")
LENGTH_NORMALIZATIONS = ("sequence", "token", "constant")


def _float(tensor: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 stays float64, for gradcheck)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def compute_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dimension, in nats: shape logits.shape[:-1]."""
    logits = _float(logits)
    log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    # a logit of -inf (a banned token) has p log p = 0 by continuity; 0 * -inf would be nan
    finite_log_probs = log_probs.masked_fill(torch.isneginf(log_probs), 0.0)
    return -(log_probs.exp() * finite_log_probs).sum(dim=-1)


def get_response_log_probs(model: Any, input_ids: torch.Tensor, labels: torch.Tensor,
                           return_token_entropy: bool = False) -> dict[str, torch.Tensor]:
    """{"log_probs": (batch, time) log p(labels[b, t] | input_ids[b, :t + 1])} and, when asked,
    "token_entropy": (batch, time) entropy of each next-token distribution (detached: a
    diagnostic; compute_entropy on the logits gives a differentiable one). No masking: padding
    positions are scored too, for the caller's mask to drop."""
    if input_ids.shape != labels.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and labels "
                         f"{tuple(labels.shape)} must have the same shape")
    device = _model_device(model)
    output = model(input_ids.to(device))
    logits = _float(output if isinstance(output, torch.Tensor) else output.logits)
    label_logits = logits.gather(-1, labels.to(device).long().unsqueeze(-1)).squeeze(-1)
    result = {"log_probs": label_logits - torch.logsumexp(logits, dim=-1)}
    if return_token_entropy:
        with torch.no_grad():
            result["token_entropy"] = compute_entropy(logits)
    return result


def _masked(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`tensor` with the masked-out entries set to 0 (a where, not a product: 0 * inf is nan)."""
    return torch.where(mask.to(tensor.device).bool(), tensor, torch.zeros_like(tensor))


def masked_normalize(tensor: torch.Tensor, mask: torch.Tensor, normalize_constant: float,
                     dim: int | None = None) -> torch.Tensor:
    """Sum of the entries where `mask` is 1, along `dim` (all of them when None), divided by
    `normalize_constant`."""
    masked = _masked(tensor, mask)
    total = masked.sum() if dim is None else masked.sum(dim=dim)
    return total / normalize_constant


def masked_mean(tensor: torch.Tensor, mask: torch.Tensor, dim: int | None = None
                ) -> torch.Tensor:
    """Mean of the entries where `mask` is 1, along `dim` (over all of them when None); nan
    where there are none."""
    count = mask.to(tensor.device).bool().to(_float(tensor).dtype)
    masked = _masked(tensor, mask)
    if dim is None:
        return masked.sum() / count.sum()
    return masked.sum(dim=dim) / count.sum(dim=dim)


def sft_microbatch_train_step(policy_log_probs: torch.Tensor, response_mask: torch.Tensor,
                              gradient_accumulation_steps: int, normalize_constant: float = 1.0
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Backward of one SFT micro-batch: the response tokens' negative log-likelihood summed per
    sequence, over `normalize_constant`, averaged over the batch, over
    `gradient_accumulation_steps`. Returns that (scaled) loss and {"unscaled_loss",
    "response_tokens", "mean_token_log_prob"}."""
    per_sequence = -masked_normalize(policy_log_probs, response_mask, normalize_constant, dim=-1)
    unscaled = per_sequence.mean()
    loss = unscaled / gradient_accumulation_steps
    loss.backward()
    metadata = {
        "unscaled_loss": unscaled.detach(),
        "response_tokens": response_mask.bool().sum(),
        "mean_token_log_prob": masked_mean(policy_log_probs.detach(), response_mask),
    }
    return loss.detach(), metadata


def compute_group_normalized_rewards(reward_fn: RewardFunction, rollout_responses: Sequence[str],
                                     repeated_ground_truths: Sequence[str], group_size: int,
                                     advantage_eps: float, normalize_by_std: bool
                                     ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Rewards of a rollout batch (consecutive groups of `group_size` responses to one prompt)
    and their advantages: reward minus its group's mean, divided by (the group's std + eps)
    when `normalize_by_std`.

    Returns (advantages, raw_rewards), both float32 (rollout_batch_size,), and metadata: reward
    mean/std/max/min, mean format and answer reward, and the fraction of groups whose rewards
    are all equal (their advantages are all 0: no learning signal).
    """
    if len(rollout_responses) != len(repeated_ground_truths):
        raise ValueError(f"{len(rollout_responses)} responses but {len(repeated_ground_truths)} "
                         "ground truths: expected one ground truth per response")
    if group_size <= 0 or len(rollout_responses) % group_size:
        raise ValueError(f"{len(rollout_responses)} responses do not split into groups of "
                         f"{group_size}")
    if normalize_by_std and group_size < 2:
        raise ValueError("normalize_by_std needs group_size >= 2 (the std of one reward is "
                         "undefined)")
    scores = [reward_fn(response, truth)
              for response, truth in zip(rollout_responses, repeated_ground_truths)]
    raw_rewards = torch.tensor([score["reward"] for score in scores], dtype=torch.float32)
    groups = raw_rewards.view(-1, group_size)
    advantages = groups - groups.mean(dim=-1, keepdim=True)
    if normalize_by_std:
        advantages = advantages / (groups.std(dim=-1, keepdim=True) + advantage_eps)
    spread = groups.max(dim=-1).values - groups.min(dim=-1).values
    metadata = {
        "reward_mean": raw_rewards.mean().item(),
        "reward_std": raw_rewards.std().item() if len(raw_rewards) > 1 else 0.0,
        "reward_max": raw_rewards.max().item(),
        "reward_min": raw_rewards.min().item(),
        "format_reward_mean": sum(score["format_reward"] for score in scores) / len(scores),
        "answer_reward_mean": sum(score["answer_reward"] for score in scores) / len(scores),
        "zero_spread_group_fraction": (spread == 0).float().mean().item(),
    }
    return advantages.flatten(), raw_rewards, metadata


def _per_sequence(values: torch.Tensor) -> torch.Tensor:
    """(batch,) or (batch, 1) as (batch, 1), to broadcast over tokens."""
    return values.reshape(-1, 1)


def compute_naive_policy_gradient_loss(raw_rewards_or_advantages: torch.Tensor,
                                       policy_log_probs: torch.Tensor) -> torch.Tensor:
    """Per-token REINFORCE loss -A * log p, A broadcast over each sequence: (batch, time)."""
    return -_per_sequence(raw_rewards_or_advantages).to(policy_log_probs) * policy_log_probs


def compute_grpo_clip_loss(advantages: torch.Tensor, policy_log_probs: torch.Tensor,
                           old_log_probs: torch.Tensor, cliprange: float
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token PPO/GRPO clipped loss -min(r A, clip(r, 1 - c, 1 + c) A), r = p / p_old, as
    (batch, time), and {"clipped": bool (batch, time), True where the clipped term was the
    smaller one (the token gets no gradient)}."""
    advantages = _per_sequence(advantages).to(policy_log_probs)
    ratio = torch.exp(policy_log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange) * advantages
    return -torch.minimum(unclipped, clipped), {"clipped": clipped < unclipped}


def compute_policy_gradient_loss(policy_log_probs: torch.Tensor, loss_type: str,
                                 raw_rewards: torch.Tensor | None = None,
                                 advantages: torch.Tensor | None = None,
                                 old_log_probs: torch.Tensor | None = None,
                                 cliprange: float | None = None
                                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The per-token loss of `loss_type`: "no_baseline" (REINFORCE on raw_rewards),
    "reinforce_with_baseline" (on advantages) or "grpo_clip" (advantages, old_log_probs and
    cliprange)."""
    if loss_type == "no_baseline":
        if raw_rewards is None:
            raise ValueError("loss_type 'no_baseline' needs raw_rewards")
        return compute_naive_policy_gradient_loss(raw_rewards, policy_log_probs), {}
    if loss_type == "reinforce_with_baseline":
        if advantages is None:
            raise ValueError("loss_type 'reinforce_with_baseline' needs advantages")
        return compute_naive_policy_gradient_loss(advantages, policy_log_probs), {}
    if loss_type == "grpo_clip":
        missing = [name for name, value in (("advantages", advantages),
                                            ("old_log_probs", old_log_probs),
                                            ("cliprange", cliprange)) if value is None]
        if missing:
            raise ValueError(f"loss_type 'grpo_clip' needs {', '.join(missing)}")
        return compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange)
    raise ValueError(f"loss_type must be one of {POLICY_GRADIENT_LOSS_TYPES}, got {loss_type!r}")


def grpo_microbatch_train_step(policy_log_probs: torch.Tensor, response_mask: torch.Tensor,
                               gradient_accumulation_steps: int, loss_type: str,
                               raw_rewards: torch.Tensor | None = None,
                               advantages: torch.Tensor | None = None,
                               old_log_probs: torch.Tensor | None = None,
                               cliprange: float | None = None,
                               length_normalization: str = "sequence",
                               normalize_constant: float | None = None
                               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Backward of one policy-gradient micro-batch: the per-token loss of `loss_type`,
    aggregated over response tokens by `length_normalization` (module docstring), over
    `gradient_accumulation_steps`. Returns that (scaled) loss and {"unscaled_loss",
    "response_tokens"} plus "clip_fraction" (of response tokens) for grpo_clip."""
    if length_normalization not in LENGTH_NORMALIZATIONS:
        raise ValueError(f"length_normalization must be one of {LENGTH_NORMALIZATIONS}, got "
                         f"{length_normalization!r}")
    if length_normalization == "constant" and normalize_constant is None:
        raise ValueError("length_normalization 'constant' needs normalize_constant (Dr. GRPO: "
                         "the longest response the sampler may produce)")
    per_token, loss_metadata = compute_policy_gradient_loss(
        policy_log_probs, loss_type, raw_rewards, advantages, old_log_probs, cliprange)
    if length_normalization == "sequence":
        unscaled = masked_mean(per_token, response_mask, dim=-1).mean()
    elif length_normalization == "token":
        unscaled = masked_mean(per_token, response_mask)
    else:
        unscaled = masked_normalize(per_token, response_mask, normalize_constant, dim=-1).mean()
    loss = unscaled / gradient_accumulation_steps
    loss.backward()
    metadata = {"unscaled_loss": unscaled.detach(),
                "response_tokens": response_mask.bool().sum()}
    if "clipped" in loss_metadata:
        metadata["clip_fraction"] = masked_mean(loss_metadata["clipped"].float(), response_mask)
    return loss.detach(), metadata


def compute_per_instance_dpo_loss(policy: Any, reference: Any, tokenizer: Any, beta: float,
                                  prompt: str, chosen: str, rejected: str) -> torch.Tensor:
    """DPO loss of one preference pair: -log sigmoid(beta ((pi_c - ref_c) - (pi_r - ref_r))),
    each term the summed log-probability of a response (prompt + response + end-of-text when
    the tokenizer has one) under the policy or the frozen reference. A scalar on the policy's
    device, differentiable through the policy only."""
    batch = tokenize_prompt_and_output([prompt, prompt], [chosen, rejected], tokenizer,
                                       end_of_text=True)

    def response_log_probs(model: Any) -> torch.Tensor:  # (2,): chosen, rejected
        log_probs = get_response_log_probs(model, batch["input_ids"], batch["labels"])
        return masked_normalize(log_probs["log_probs"], batch["response_mask"], 1.0, dim=-1)

    policy_scores = response_log_probs(policy)
    with torch.no_grad():
        reference_scores = response_log_probs(reference).to(policy_scores)
    chosen_margin, rejected_margin = policy_scores - reference_scores
    logits = beta * (chosen_margin - rejected_margin)
    # -log sigmoid(x) = log(1 + exp(-x)), stable for either sign of x
    return torch.logaddexp(torch.zeros_like(logits), -logits)
