"""Supervised fine-tuning: the response-only loss on labelled (prompt, response) pairs.

Notable:
- padding (default): each batch is `tokenize_prompt_and_output` of its pairs, the loss is
  `sft_microbatch_train_step` (masked NLL summed per sequence over `normalize_constant`, batch
  mean); packing: the pairs rendered, joined with <|endoftext|> and cut into `seq_length`
  windows (`PackedSFTDataset`), every token a target;
- batches come from a seeded permutation per epoch and are addressed by step, so a resumed
  run reads exactly the batches the killed one would have;
- validation during training: loss on held-out pairs and greedy answer accuracy through the
  engine, every `eval_interval` steps and at the end;
- `sft_steps` is also what expert iteration calls on the answers it kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmlib.align.data import PackedSFTDataset, tokenize_prompt_and_output
from lmlib.align.losses import get_response_log_probs, masked_normalize, sft_microbatch_train_step
from lmlib.align.policy import OptimizerConfig, PolicyRun, deterministic_on_cpu
from lmlib.align.tasks import VerifiableTask, accuracy
from lmlib.stage import StageResult, check_positive
from lmlib.tokenizer import Tokenizer
from lmlib.train.interrupts import StopSignals


@dataclass
class SFTConfig(OptimizerConfig):
    steps: int = 600
    batch_size: int = 32
    grad_accum_steps: int = 1
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    normalize_constant: float = 1.0
    packing: bool = False
    seq_length: int = 64  # packing only
    eval_interval: int = 100
    eval_problems: int = 128  # validation prompts for the accuracy (0: none)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "batch_size", "grad_accum_steps", "learning_rate",
                       "normalize_constant", "seq_length", "eval_interval")


@dataclass
class SFTResult(StageResult):
    MANIFEST_COUNTS = ("steps", "examples")

    steps: int
    examples: int
    final_loss: float
    validation_accuracy: float | None
    accuracy_curve: list[dict] = field(default_factory=list)  # step, val_loss, val_accuracy
    loss_curve: Path | None = None
    seconds: float = 0.0


def batch_indices(count: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The examples of step `step` (from 0): consecutive slices of a seeded permutation per
    epoch, wrapping into the next epoch's permutation."""
    indices, position = [], step * batch_size
    while len(indices) < batch_size:
        epoch, offset = divmod(position, count)
        order = np.random.default_rng([seed, epoch]).permutation(count)
        take = order[offset : offset + batch_size - len(indices)]
        indices += take.tolist()
        position += len(take)
    return indices


def sft_steps(run: PolicyRun, tokenizer: Tokenizer, prompts: list[str], responses: list[str],
              steps: int, config: SFTConfig, stop_signals: StopSignals, seed: int,
              on_step=None) -> float:
    """`steps` optimizer steps of SFT on the pairs from run.step on; returns the last loss.
    `on_step(run, loss)` runs after each step (evaluation), before logging and checkpoints."""
    loss_value = float("nan")
    packed = _packed(tokenizer, prompts, responses, config, run.run_dir) if config.packing \
        else None
    for _ in range(steps):
        loss_sum = 0.0
        for micro in range(config.grad_accum_steps):
            position = run.step * config.grad_accum_steps + micro  # the global step: resumable
            count = len(packed) if packed is not None else len(prompts)
            chosen = batch_indices(count, config.batch_size, position, seed)
            if packed is not None:
                items = [packed[i] for i in chosen]
                input_ids = torch.stack([item["input_ids"] for item in items])
                labels = torch.stack([item["labels"] for item in items])
                mask = torch.ones_like(labels, dtype=torch.bool)
            else:
                batch = tokenize_prompt_and_output([prompts[i] for i in chosen],
                                                   [responses[i] for i in chosen], tokenizer)
                input_ids, labels, mask = batch["input_ids"], batch["labels"], \
                    batch["response_mask"]
            context = run.model.config.context_length
            input_ids, labels, mask = (t[:, -context:].to(run.device)
                                       for t in (input_ids, labels, mask))
            with run.autocast():
                log_probs = get_response_log_probs(run.model, input_ids, labels)["log_probs"]
            loss, _ = sft_microbatch_train_step(log_probs, mask, config.grad_accum_steps,
                                                config.normalize_constant)
            loss_sum += float(loss)
        grad_norm = run.optimizer_step()
        loss_value = loss_sum
        if on_step is not None:
            on_step(run, loss_value)
        run.after_step(stop_signals, {"loss": loss_value, "lr": run.learning_rate(),
                                      "grad_norm": grad_norm})
    return loss_value


@torch.no_grad()
def response_loss(model, tokenizer, prompts: list[str], responses: list[str],
                  batch_size: int = 64) -> float:
    """Mean response NLL per response token over the pairs."""
    total, tokens = 0.0, 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for start in range(0, len(prompts), batch_size):
        batch = tokenize_prompt_and_output(prompts[start:start + batch_size],
                                           responses[start:start + batch_size], tokenizer)
        context = model.config.context_length
        input_ids, labels, mask = (batch[k][:, -context:].to(device)
                                   for k in ("input_ids", "labels", "response_mask"))
        log_probs = get_response_log_probs(model, input_ids, labels)["log_probs"]
        total += float(-masked_normalize(log_probs, mask, 1.0))
        tokens += int(mask.sum())
    model.train(was_training)
    return total / max(tokens, 1)


@deterministic_on_cpu
def run_sft(model_dir: Path, tokenizer_dir: Path, train: VerifiableTask,
            validation: VerifiableTask | None, run_dir: Path, output_dir: Path,
            config: SFTConfig, progress=None) -> SFTResult:
    """SFT from the saved model in model_dir on train's labelled pairs; resumes from run_dir's
    newest checkpoint; writes model/, log.jsonl and the loss curve into output_dir."""
    if train.responses is None:
        raise ValueError(f"SFT needs labelled responses; task {train.name} has none")
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    run = PolicyRun(model_dir, run_dir, config, config.steps, progress)
    run.resume()
    engine = run.engine(max_batch_size=64)
    held_out = validation.subset(0, config.eval_problems or 0) if validation and \
        config.eval_problems else None

    def evaluate(run: PolicyRun, loss: float) -> None:
        if held_out is None or (run.step % config.eval_interval and run.step != config.steps):
            return
        with run.timed("evaluation"):
            record = {"kind": "eval", "step": run.step,
                      "val_accuracy": accuracy(engine, tokenizer, held_out, config.seed)}
            if held_out.responses:
                with run.autocast():
                    record["val_loss"] = response_loss(run.model, tokenizer,
                                                       held_out.prompts, held_out.responses)
        run.loop_state.setdefault("curve", []).append(record)
        run.log.write(record)

    with StopSignals() as stop_signals, run.timed("training"):
        loss = sft_steps(run, tokenizer, train.prompts, train.responses,
                         config.steps - run.step, config, stop_signals, config.seed, evaluate)
    curve = run.loop_state.get("curve", [])
    plot = run.finish(output_dir)
    return SFTResult(steps=run.step, examples=len(train.prompts), final_loss=loss,
                     validation_accuracy=curve[-1]["val_accuracy"] if curve else None,
                     accuracy_curve=[{k: v for k, v in r.items() if k != "kind"} for r in curve],
                     loss_curve=plot, seconds=sum(run.seconds.values()))


def _packed(tokenizer, prompts, responses, config: SFTConfig, run_dir: Path) -> PackedSFTDataset:
    """The pairs as a JSONL file in the run directory, packed into seq_length windows."""
    path = Path(run_dir) / "sft_pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n"
                            for p, r in zip(prompts, responses, strict=True)))
    return PackedSFTDataset(tokenizer, path, config.seq_length, shuffle=True, seed=config.seed)


def equal_compute_steps(trained_tokens: int, generated_tokens: int, config: SFTConfig,
                        tokenizer: Tokenizer, task: VerifiableTask) -> int:
    """SFT steps that spend what a GRPO run spent: a trained token costs 3 forward passes'
    worth (forward and backward), a generated one 1; an SFT step trains batch_size x
    grad_accum_steps padded examples of the task (their padded length measured on up to 256)."""
    sample = tokenize_prompt_and_output(task.prompts[:256], task.responses[:256],
                                        tokenizer)["input_ids"]
    per_step = 3 * config.batch_size * config.grad_accum_steps * sample.shape[-1]
    return max(1, math.ceil((3 * trained_tokens + generated_tokens) / per_step))
