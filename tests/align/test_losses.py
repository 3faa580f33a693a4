"""SFT, policy-gradient and DPO losses against values computed by hand."""

import math
from types import SimpleNamespace

import pytest
import torch

from lmlib.align.losses import (
    compute_entropy,
    compute_group_normalized_rewards,
    compute_grpo_clip_loss,
    compute_naive_policy_gradient_loss,
    compute_per_instance_dpo_loss,
    compute_policy_gradient_loss,
    get_response_log_probs,
    grpo_microbatch_train_step,
    masked_mean,
    masked_normalize,
    sft_microbatch_train_step,
)
from lmlib.model import ModelConfig, TransformerLM
from lmlib.tokenizer import Tokenizer

EOT = 256


def tiny_model(seed: int) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(ModelConfig(vocab_size=300, context_length=32, d_model=16, num_layers=1,
                                     num_heads=2, d_ff=32, attention_backend="torch"))


def byte_tokenizer() -> Tokenizer:
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])


# --- entropy and log-probabilities ------------------------------------------------------------

def test_entropy_of_uniform_one_hot_and_a_hand_distribution():
    uniform = torch.zeros(2, 3, 4)
    assert torch.allclose(compute_entropy(uniform), torch.full((2, 3), math.log(4)))
    one_hot = torch.tensor([[0.0, -math.inf, -math.inf], [1000.0, 0.0, 0.0]])
    assert compute_entropy(one_hot).tolist() == [0.0, 0.0]
    halves_and_quarters = torch.tensor([0.5, 0.25, 0.25]).log() + 7.0  # shift-invariant
    assert compute_entropy(halves_and_quarters).item() == pytest.approx(1.5 * math.log(2))


def test_entropy_gradient_is_finite_with_banned_tokens():
    logits = torch.tensor([1.0, 2.0, -math.inf], requires_grad=True)
    compute_entropy(logits).backward()
    assert torch.isfinite(logits.grad).all()


def test_response_log_probs_match_log_softmax_for_ours_and_a_transformers_style_model():
    model = tiny_model(0)
    input_ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    labels = torch.tensor([[2, 3, 4, 9], [6, 7, 8, 299]])
    expected = torch.log_softmax(model(input_ids), -1).gather(-1, labels[..., None])[..., 0]
    ours = get_response_log_probs(model, input_ids, labels, return_token_entropy=True)
    assert ours["log_probs"].dtype == torch.float32
    assert torch.allclose(ours["log_probs"], expected, atol=1e-6)
    assert torch.allclose(ours["token_entropy"], compute_entropy(model(input_ids)))
    assert ours["token_entropy"].shape == (2, 4)

    def transformers_style(token_ids):
        return SimpleNamespace(logits=model(token_ids))

    transformers_style.parameters = model.parameters
    theirs = get_response_log_probs(transformers_style, input_ids, labels)
    assert set(theirs) == {"log_probs"}
    assert torch.allclose(theirs["log_probs"], expected, atol=1e-6)


# --- masked sums ------------------------------------------------------------------------------

VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.bool)


def test_masked_normalize_along_each_dim():
    assert masked_normalize(VALUES, MASK, 2.0).item() == 7.5  # (1 + 3 + 5 + 6) / 2
    assert masked_normalize(VALUES, MASK, 2.0, dim=-1).tolist() == [2.0, 5.5]
    assert masked_normalize(VALUES, MASK, 2.0, dim=0).tolist() == [0.5, 2.5, 4.5]
    assert masked_normalize(VALUES, MASK.int(), 1.0).item() == 15.0  # a 0/1 integer mask


def test_masked_mean_along_each_dim_ignores_masked_out_infinities():
    assert masked_mean(VALUES, MASK).item() == 3.75  # 15 / 4
    assert masked_mean(VALUES, MASK, dim=-1).tolist() == [2.0, 5.5]
    assert masked_mean(VALUES, MASK, dim=0).tolist() == [1.0, 5.0, 4.5]
    with_padding = VALUES.clone()
    with_padding[0, 1] = -math.inf
    assert masked_mean(with_padding, MASK).item() == 3.75


# --- SFT --------------------------------------------------------------------------------------

def test_sft_microbatch_train_step_loss_and_gradient():
    log_probs = (-VALUES).requires_grad_()
    loss, metadata = sft_microbatch_train_step(log_probs, MASK, gradient_accumulation_steps=2,
                                               normalize_constant=2.0)
    # per sequence: -(-1 - 3) / 2 = 2 and -(-5 - 6) / 2 = 5.5; batch mean 3.75; / 2 steps
    assert loss.item() == 1.875
    assert metadata["unscaled_loss"].item() == 3.75
    assert metadata["response_tokens"].item() == 4
    assert metadata["mean_token_log_prob"].item() == -3.75
    # d loss / d log p = -mask / (constant * batch * steps) = -mask / 8
    assert torch.equal(log_probs.grad, -MASK.float() / 8)


def test_sft_gradients_accumulate_to_the_full_batch_gradient():
    log_probs = (-VALUES).requires_grad_()
    for row in range(2):
        sft_microbatch_train_step(log_probs[row: row + 1], MASK[row: row + 1], 2)
    whole = (-VALUES).requires_grad_()
    sft_microbatch_train_step(whole, MASK, 1)
    assert torch.allclose(log_probs.grad, whole.grad)


# --- GRPO -------------------------------------------------------------------------------------

def numeric_reward(response: str, ground_truth: str) -> dict[str, float]:
    return {"reward": float(response), "format_reward": 1.0,
            "answer_reward": float(response == ground_truth)}


def test_group_normalized_rewards_with_and_without_std():
    responses = ["1", "2", "3", "5", "5", "5"]
    truths = ["3"] * 3 + ["0"] * 3
    advantages, raw, metadata = compute_group_normalized_rewards(
        numeric_reward, responses, truths, group_size=3, advantage_eps=1.0,
        normalize_by_std=True)
    assert raw.tolist() == [1.0, 2.0, 3.0, 5.0, 5.0, 5.0]
    # group 1: mean 2, unbiased std 1, so (r - 2) / (1 + 1); group 2: all 5, so 0 / (0 + 1)
    assert advantages.tolist() == [-0.5, 0.0, 0.5, 0.0, 0.0, 0.0]
    assert metadata["reward_mean"] == 3.5
    assert metadata["reward_std"] == pytest.approx(math.sqrt(15.5 / 5))
    assert (metadata["reward_max"], metadata["reward_min"]) == (5.0, 1.0)
    assert metadata["format_reward_mean"] == 1.0
    assert metadata["answer_reward_mean"] == pytest.approx(1 / 6)
    assert metadata["zero_spread_group_fraction"] == 0.5
    centered, _, _ = compute_group_normalized_rewards(
        numeric_reward, responses, truths, group_size=3, advantage_eps=1.0,
        normalize_by_std=False)
    assert centered.tolist() == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]


def test_group_normalized_rewards_refuse_ragged_groups():
    with pytest.raises(ValueError, match="groups of 4"):
        compute_group_normalized_rewards(numeric_reward, ["1"] * 6, ["1"] * 6, 4, 1e-6, True)


def test_naive_policy_gradient_loss():
    log_probs = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]])
    loss = compute_naive_policy_gradient_loss(torch.tensor([2.0, -1.0]), log_probs)
    assert loss.tolist() == [[2.0, 4.0], [-3.0, -4.0]]
    assert torch.equal(compute_naive_policy_gradient_loss(torch.tensor([[2.0], [-1.0]]),
                                                          log_probs), loss)


# ratios 1.5 (above 1 + 0.2), 0.5 (below 1 - 0.2) and 1 for A = +1 and A = -1
RATIOS = torch.tensor([[1.5, 0.5, 1.0], [1.5, 0.5, 1.0]])
SIGNED_ADVANTAGES = torch.tensor([1.0, -1.0])


def test_grpo_clip_loss_on_both_sides_of_the_clip_range():
    policy_log_probs = RATIOS.log().requires_grad_()
    loss, metadata = compute_grpo_clip_loss(SIGNED_ADVANTAGES, policy_log_probs,
                                            torch.zeros(2, 3), cliprange=0.2)
    # A > 0: min(1.5, 1.2) = 1.2 clipped; min(0.5, 0.8) = 0.5; 1.
    # A < 0: min(-1.5, -1.2) = -1.5; min(-0.5, -0.8) = -0.8 clipped; -1.
    assert torch.allclose(loss, torch.tensor([[-1.2, -0.5, -1.0], [1.5, 0.8, 1.0]]))
    assert metadata["clipped"].tolist() == [[True, False, False], [False, True, False]]
    loss.sum().backward()
    # a clipped token gets no gradient; elsewhere d(-r A)/d log p = -r A
    expected = torch.tensor([[0.0, -0.5, -1.0], [1.5, 0.0, 1.0]])
    assert torch.allclose(policy_log_probs.grad, expected)


def test_policy_gradient_loss_dispatches_and_names_what_is_missing():
    log_probs = torch.tensor([[-1.0, -2.0]])
    no_baseline, _ = compute_policy_gradient_loss(log_probs, "no_baseline",
                                                  raw_rewards=torch.tensor([3.0]))
    assert no_baseline.tolist() == [[3.0, 6.0]]
    with_baseline, _ = compute_policy_gradient_loss(log_probs, "reinforce_with_baseline",
                                                    advantages=torch.tensor([-1.0]))
    assert with_baseline.tolist() == [[-1.0, -2.0]]
    clipped, metadata = compute_policy_gradient_loss(
        log_probs, "grpo_clip", advantages=torch.tensor([1.0]), old_log_probs=log_probs,
        cliprange=0.2)
    assert clipped.tolist() == [[-1.0, -1.0]] and "clipped" in metadata
    with pytest.raises(ValueError, match="needs raw_rewards"):
        compute_policy_gradient_loss(log_probs, "no_baseline", advantages=torch.tensor([1.0]))
    with pytest.raises(ValueError, match="needs old_log_probs, cliprange"):
        compute_policy_gradient_loss(log_probs, "grpo_clip", advantages=torch.tensor([1.0]))
    with pytest.raises(ValueError, match="must be one of"):
        compute_policy_gradient_loss(log_probs, "ppo")


# per-token loss -A log p with A = 1: [[1, 2, 3], [4, 5, 6]]; responses of 2 and 3 tokens
RESPONSE_MASK = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)


@pytest.mark.parametrize("normalization, constant, unscaled, row_weights", [
    ("sequence", None, (1.5 + 5.0) / 2, (1 / (2 * 2), 1 / (3 * 2))),  # each row's mean
    ("token", None, 18 / 5, (1 / 5, 1 / 5)),  # every response token alike
    ("constant", 4.0, (3 / 4 + 15 / 4) / 2, (1 / (4 * 2), 1 / (4 * 2))),  # Dr. GRPO
])
def test_grpo_microbatch_train_step_normalizations(normalization, constant, unscaled,
                                                   row_weights):
    log_probs = (-VALUES).requires_grad_()
    loss, metadata = grpo_microbatch_train_step(
        log_probs, RESPONSE_MASK, 2, "reinforce_with_baseline", advantages=torch.ones(2),
        length_normalization=normalization, normalize_constant=constant)
    assert metadata["unscaled_loss"].item() == pytest.approx(unscaled)
    assert loss.item() == pytest.approx(unscaled / 2)
    assert "clip_fraction" not in metadata
    expected = -RESPONSE_MASK.float() * torch.tensor(row_weights)[:, None] / 2
    assert torch.allclose(log_probs.grad, expected)


def test_grpo_microbatch_train_step_clip_fraction_counts_response_tokens_only():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)  # drops the clipped (1, 1)
    _, metadata = grpo_microbatch_train_step(
        RATIOS.log().requires_grad_(), mask, 1, "grpo_clip", advantages=SIGNED_ADVANTAGES,
        old_log_probs=torch.zeros(2, 3), cliprange=0.2)
    assert metadata["clip_fraction"].item() == pytest.approx(1 / 4)


def test_grpo_microbatch_train_step_refuses_bad_normalizations():
    log_probs = (-VALUES).requires_grad_()
    with pytest.raises(ValueError, match="needs normalize_constant"):
        grpo_microbatch_train_step(log_probs, RESPONSE_MASK, 1, "no_baseline",
                                   raw_rewards=torch.ones(2), length_normalization="constant")
    with pytest.raises(ValueError, match="length_normalization must be one of"):
        grpo_microbatch_train_step(log_probs, RESPONSE_MASK, 1, "no_baseline",
                                   raw_rewards=torch.ones(2), length_normalization="mean")


# --- DPO --------------------------------------------------------------------------------------

def summed_response_log_prob(model, prompt: str, response: str) -> float:
    """One unpadded sequence, scored position by position."""
    prompt_ids, response_ids = list(prompt.encode()), list(response.encode()) + [EOT]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        log_probs = get_response_log_probs(model, ids[:, :-1], ids[:, 1:])["log_probs"][0]
    return log_probs[len(prompt_ids) - 1:].sum().item()


def test_dpo_loss_of_a_pair_equals_the_hand_computation():
    policy, reference, tokenizer = tiny_model(1), tiny_model(2), byte_tokenizer()
    prompt, chosen, rejected, beta = "2+2=", "4", "five", 0.5
    loss = compute_per_instance_dpo_loss(policy, reference, tokenizer, beta, prompt, chosen,
                                         rejected)
    margin = ((summed_response_log_prob(policy, prompt, chosen)
               - summed_response_log_prob(reference, prompt, chosen))
              - (summed_response_log_prob(policy, prompt, rejected)
                 - summed_response_log_prob(reference, prompt, rejected)))
    expected = -math.log(1 / (1 + math.exp(-beta * margin)))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in policy.parameters())
    assert all(p.grad is None for p in reference.parameters())


def test_dpo_loss_is_log_two_when_policy_is_the_reference():
    model = tiny_model(1)
    loss = compute_per_instance_dpo_loss(model, model, byte_tokenizer(), 0.1, "Q: hi\nA:",
                                         " hello", " go away")
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
