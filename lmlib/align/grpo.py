"""GRPO: group-relative policy optimisation on a verifiable task, rollouts from the engine.

Notable:
- a step: `prompts_per_step` prompts (a seeded draw addressed by step, so a resumed run draws
  the same), `group_size` samples each from one prefill (lmlib.infer.Engine, temperature
  `temperature`), rewards from the task, advantages normalised within each group (by its
  standard deviation too when `normalize_by_std`; without it, Dr. GRPO);
- the three loss types of lmlib.align.losses (no_baseline, reinforce_with_baseline,
  grpo_clip); `epochs_per_rollout` > 1 reuses a rollout batch off-policy with the clipped
  ratio against the log-probabilities taken before its first update;
- length normalisation per sequence (masked mean), per token over the batch, or by a
  constant (Dr. GRPO); gradient clipping; an optional KL penalty to the starting model (the
  k3 estimator, per token);
- logged per step: reward, format and answer reward, response length, entropy, clip
  fraction, the fraction of groups whose rewards are all equal (no signal), and the time
  split between generation and training; a checkpoint only ever falls between rollout
  batches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmlib.align.data import tokenize_prompt_and_output
from lmlib.align.losses import (
    compute_group_normalized_rewards,
    get_response_log_probs,
    grpo_microbatch_train_step,
    masked_mean,
)
from lmlib.align.policy import OptimizerConfig, PolicyRun, deterministic_on_cpu
from lmlib.align.tasks import VerifiableTask, accuracy
from lmlib.eval.generation import generate_completions
from lmlib.stage import StageResult, check_positive
from lmlib.tokenizer import Tokenizer
from lmlib.train.interrupts import StopSignals

LOSS_TYPES = ("no_baseline", "reinforce_with_baseline", "grpo_clip")
LENGTH_NORMALIZATIONS = ("sequence", "token", "constant")


@dataclass
class GRPOConfig(OptimizerConfig):
    steps: int = 150  # rollout batches
    prompts_per_step: int = 16
    group_size: int = 8
    temperature: float = 1.0
    epochs_per_rollout: int = 1
    micro_batch_size: int = 32
    loss_type: str = "reinforce_with_baseline"
    normalize_by_std: bool = True
    advantage_eps: float = 1e-6
    cliprange: float = 0.2
    length_normalization: str = "sequence"
    normalize_constant: float = 0.0  # "constant" normalisation: 0 = max_new_tokens
    kl_coefficient: float = 0.0
    learning_rate: float = 1e-4
    min_learning_rate: float = 1e-5
    eval_interval: int = 50
    eval_problems: int = 128
    log_interval: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "prompts_per_step", "group_size", "temperature",
                       "epochs_per_rollout", "micro_batch_size", "eval_interval")
        if self.group_size < 2:
            raise ValueError("GRPOConfig.group_size must be >= 2: advantages compare a group")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"GRPOConfig.loss_type must be one of {LOSS_TYPES}, got "
                             f"{self.loss_type!r}")
        if self.length_normalization not in LENGTH_NORMALIZATIONS:
            raise ValueError(f"GRPOConfig.length_normalization must be one of "
                             f"{LENGTH_NORMALIZATIONS}, got {self.length_normalization!r}")
        if self.epochs_per_rollout > 1 and self.loss_type != "grpo_clip":
            raise ValueError("epochs_per_rollout > 1 reuses rollouts off-policy: it needs "
                             "loss_type='grpo_clip'")


@dataclass
class GRPOResult(StageResult):
    MANIFEST_COUNTS = ("steps", "rollouts", "trained_tokens", "generated_tokens")

    steps: int
    rollouts: int
    final_reward: float
    validation_accuracy: float | None
    generation_seconds: float
    training_seconds: float
    trained_tokens: int  # prompt + response tokens through forward and backward
    generated_tokens: int  # prompt + response tokens through the engine
    reward_curve: list[dict] = field(default_factory=list)
    sample_rollouts: list[dict] = field(default_factory=list)  # prompt, response, reward
    loss_curve: Path | None = None


def step_prompts(count: int, per_step: int, step: int, seed: int) -> list[int]:
    """The prompt indices of rollout step `step`: a seeded draw without replacement."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(count, size=min(per_step, count), replace=False).tolist()


@deterministic_on_cpu
def run_grpo(model_dir: Path, tokenizer_dir: Path, train: VerifiableTask,
             validation: VerifiableTask | None, run_dir: Path, output_dir: Path,
             config: GRPOConfig, progress=None) -> GRPOResult:
    """GRPO from the saved model in model_dir on train's prompts (answers only, no responses);
    resumes from run_dir's newest checkpoint; writes model/, log.jsonl and curves."""
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    total = config.steps * config.epochs_per_rollout
    run = PolicyRun(model_dir, run_dir, config, total, progress)
    run.resume()
    reference = None
    if config.kl_coefficient > 0:
        reference = copy.deepcopy(run.model).eval().requires_grad_(False)
    rows = config.prompts_per_step * config.group_size
    engine = run.engine(max_batch_size=min(rows, 256))
    held_out = validation.subset(0, config.eval_problems) if validation and \
        config.eval_problems else None
    state = run.loop_state
    state.setdefault("curve", []), state.setdefault("tokens", [0, 0])
    samples: list[dict] = []
    with StopSignals() as stop_signals:
        while run.step < total:
            rollout = run.step // config.epochs_per_rollout
            chosen = step_prompts(len(train.prompts), config.prompts_per_step, rollout,
                                  config.seed)
            prompts = [train.prompts[i] for i in chosen]
            answers = [train.answers[i] for i in chosen]
            with run.timed("generation"):
                outputs = generate_completions(
                    engine, tokenizer, prompts, config.group_size, train.max_new_tokens,
                    config.temperature, train.stop_sequences,
                    seed=config.seed * 1_000_003 + rollout)
            responses = [text for group in outputs for text in group]
            repeated_prompts = [p for p in prompts for _ in range(config.group_size)]
            repeated_answers = [a for a in answers for _ in range(config.group_size)]
            with run.timed("training"):
                record = _train_on_rollouts(run, reference, tokenizer, config, train,
                                            repeated_prompts, responses, repeated_answers,
                                            stop_signals)
            state["tokens"][0] += record.pop("tokens")
            state["tokens"][1] += record.pop("generated_tokens")
            samples = [{"prompt": p, "response": r, "reward": w} for p, r, w in
                       zip(repeated_prompts[:4], responses[:4], record.pop("rewards")[:4],
                           strict=True)]
            if held_out is not None and ((rollout + 1) % config.eval_interval == 0
                                         or run.step == total):
                with run.timed("evaluation"):
                    value = accuracy(engine, tokenizer, held_out, config.seed)
                evaluation = {"kind": "eval", "step": run.step, "val_accuracy": value}
                state["curve"].append(evaluation)
                run.log.write(evaluation)
            record.update(generation_seconds=run.seconds.get("generation", 0.0),
                          training_seconds=run.seconds.get("training", 0.0))
            state.setdefault("rewards", []).append({"step": run.step,
                                                    "reward": record["reward"]})
            run.after_step(stop_signals, record)
    plot = run.finish(output_dir)
    curve = state["curve"]
    return GRPOResult(
        steps=run.step, rollouts=run.step // config.epochs_per_rollout * rows,
        final_reward=state["rewards"][-1]["reward"] if state.get("rewards") else float("nan"),
        validation_accuracy=curve[-1]["val_accuracy"] if curve else None,
        generation_seconds=run.seconds.get("generation", 0.0),
        training_seconds=run.seconds.get("training", 0.0),
        trained_tokens=state["tokens"][0], generated_tokens=state["tokens"][1],
        reward_curve=state.get("rewards", []), sample_rollouts=samples, loss_curve=plot)


def _train_on_rollouts(run: PolicyRun, reference, tokenizer, config: GRPOConfig,
                       task: VerifiableTask, prompts, responses, answers, stop_signals) -> dict:
    """Advantages, then epochs_per_rollout optimizer steps over the batch in micro-batches;
    the record to log (with token counts and the rewards for the caller)."""
    advantages, raw_rewards, reward_info = compute_group_normalized_rewards(
        task.reward_fn, responses, answers, config.group_size, config.advantage_eps,
        config.normalize_by_std)
    batch = tokenize_prompt_and_output(prompts, responses, tokenizer)
    context = run.model.config.context_length
    input_ids, labels, mask = (batch[k][:, -context:].to(run.device)
                               for k in ("input_ids", "labels", "response_mask"))
    advantages = advantages.to(run.device).unsqueeze(-1)
    raw_rewards = raw_rewards.to(run.device).unsqueeze(-1)
    micro = config.micro_batch_size
    slices = [slice(i, i + micro) for i in range(0, len(prompts), micro)]
    old_log_probs = None
    if config.loss_type == "grpo_clip":
        with torch.no_grad(), run.autocast():
            old_log_probs = torch.cat([get_response_log_probs(run.model, input_ids[s],
                                                              labels[s])["log_probs"]
                                       for s in slices])
    constant = config.normalize_constant or float(task.max_new_tokens)
    record: dict = {}
    for _ in range(config.epochs_per_rollout):
        losses, entropies, clipped = [], [], []
        for part in slices:
            with run.autocast():
                out = get_response_log_probs(run.model, input_ids[part], labels[part],
                                             return_token_entropy=True)
            if reference is not None:
                with torch.no_grad(), run.autocast():
                    ref = get_response_log_probs(reference, input_ids[part],
                                                 labels[part])["log_probs"]
                delta = ref - out["log_probs"]
                kl = torch.exp(delta) - delta - 1  # k3: unbiased, non-negative
                # first, keeping the graph the policy-gradient step then frees
                (config.kl_coefficient * masked_mean(kl, mask[part]) / len(slices)).backward(
                    retain_graph=True)
            loss, info = grpo_microbatch_train_step(
                out["log_probs"], mask[part], len(slices), config.loss_type,
                raw_rewards=raw_rewards[part], advantages=advantages[part],
                old_log_probs=old_log_probs[part] if old_log_probs is not None else None,
                cliprange=config.cliprange, length_normalization=config.length_normalization,
                normalize_constant=constant)
            losses.append(float(loss))
            entropies.append(float(masked_mean(out["token_entropy"].detach(), mask[part])))
            if "clip_fraction" in info:
                clipped.append(float(info["clip_fraction"]))
        grad_norm = run.optimizer_step()
        record = {"loss": sum(losses), "grad_norm": grad_norm, "lr": run.learning_rate(),
                  "entropy": sum(entropies) / len(entropies)}
        if clipped:
            record["clip_fraction"] = sum(clipped) / len(clipped)
        if run.step % config.epochs_per_rollout and run.step < run.total_steps:
            run.log.write({"kind": "train", "step": run.step, **record})
    lengths = mask.sum(dim=-1).float()
    record.update(
        reward=float(raw_rewards.mean()),
        format_reward=float(reward_info.get("format_reward_mean", float("nan"))),
        answer_reward=float(reward_info.get("answer_reward_mean", float("nan"))),
        zero_spread_groups=float(reward_info.get("zero_spread_group_fraction", float("nan"))),
        response_length=float(lengths.mean()),
        tokens=int(batch["input_ids"].numel()) * config.epochs_per_rollout,
        generated_tokens=int(batch["input_ids"].numel()),
        rewards=raw_rewards.squeeze(-1).tolist())
    return record
