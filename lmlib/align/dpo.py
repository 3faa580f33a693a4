"""DPO: direct preference optimisation against a frozen reference model.

Notable:
- pairs come from a JSONL file ({"prompt", "chosen", "rejected"} per line), or are generated
  from the starting policy on a verifiable task: per question, `samples_per_question` samples,
  the first correct one chosen and the first incorrect one rejected (questions without both
  give no pair);
- the reference is the starting model, frozen; the loss of a pair is
  `compute_per_instance_dpo_loss` (lmlib.align.losses), a step averages `batch_size` pairs;
- the last `held_out_pairs` pairs are never trained on: reward accuracy on them (the implicit
  reward ranks chosen above rejected, i.e. a pair's loss is below log 2) is logged.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmlib.align.grpo import step_prompts
from lmlib.align.losses import compute_per_instance_dpo_loss
from lmlib.align.policy import OptimizerConfig, PolicyRun, deterministic_on_cpu
from lmlib.align.sft import batch_indices
from lmlib.align.tasks import VerifiableTask, accuracy
from lmlib.eval.generation import generate_completions
from lmlib.infer import Engine
from lmlib.stage import StageResult, check_positive
from lmlib.tokenizer import Tokenizer
from lmlib.train.interrupts import StopSignals


@dataclass
class DPOConfig(OptimizerConfig):
    steps: int = 40
    beta: float = 0.1
    batch_size: int = 8
    pairs_file: str = ""  # JSONL of prompt/chosen/rejected; empty: generate from the policy
    questions: int = 128
    samples_per_question: int = 8
    temperature: float = 1.0
    held_out_pairs: int = 32
    eval_interval: int = 20
    eval_problems: int = 128
    learning_rate: float = 1e-5
    min_learning_rate: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "beta", "batch_size", "questions", "samples_per_question",
                       "temperature", "eval_interval")


@dataclass
class DPOResult(StageResult):
    MANIFEST_COUNTS = ("steps", "pairs")

    steps: int
    pairs: int
    held_out_pairs: int
    reward_accuracy_before: float | None
    reward_accuracy: float | None
    validation_accuracy: float | None
    curve: list[dict] = field(default_factory=list)
    example_pairs: list[dict] = field(default_factory=list)
    loss_curve: Path | None = None
    seconds: float = 0.0


def read_pairs(path: str | Path) -> list[dict]:
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            record = json.loads(line)
            missing = {"prompt", "chosen", "rejected"} - set(record)
            if missing:
                raise ValueError(f"{path}:{number} lacks {sorted(missing)}")
            pairs.append({k: record[k] for k in ("prompt", "chosen", "rejected")})
    return pairs


def generated_pairs(engine: Engine, tokenizer, task: VerifiableTask, config: DPOConfig
                    ) -> list[dict]:
    """(correct, incorrect) samples of the policy per question, as preference pairs."""
    chosen = step_prompts(len(task.prompts), config.questions, 0, config.seed)
    outputs = generate_completions(engine, tokenizer, [task.prompts[i] for i in chosen],
                                   config.samples_per_question, task.max_new_tokens,
                                   config.temperature, task.stop_sequences, seed=config.seed)
    ending = task.stop_sequences[0] if task.stop_sequences else ""
    pairs = []
    for index, samples in zip(chosen, outputs, strict=True):
        graded = [(s, task.reward_fn(s, task.answers[index])["reward"] > 0) for s in samples]
        good = next((s for s, ok in graded if ok), None)
        bad = next((s for s, ok in graded if not ok), None)
        if good is not None and bad is not None:
            pairs.append({"prompt": task.prompts[index], "chosen": good + ending,
                          "rejected": bad + ending})
    return pairs


@deterministic_on_cpu
def run_dpo(model_dir: Path, tokenizer_dir: Path, task: VerifiableTask | None,
            validation: VerifiableTask | None, run_dir: Path, output_dir: Path,
            config: DPOConfig, progress=None) -> DPOResult:
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    run = PolicyRun(model_dir, run_dir, config, config.steps, progress)
    reference = copy.deepcopy(run.model).eval().requires_grad_(False)  # before any resume
    resumed = run.resume()
    engine = run.engine(max_batch_size=256)
    state = run.loop_state
    if "pairs" not in state:
        if resumed:
            raise ValueError(f"{run_dir} holds a checkpoint without its pairs; delete it")
        if config.pairs_file:
            pairs = read_pairs(config.pairs_file)
        elif task is not None:
            with run.timed("generation"):
                pairs = generated_pairs(engine, tokenizer, task, config)
        else:
            raise ValueError("DPO needs pairs_file or a task to generate pairs from")
        state["pairs"] = pairs
    pairs = state["pairs"]
    held = min(config.held_out_pairs, len(pairs) // 4)
    train_pairs, held_out = pairs[: len(pairs) - held], pairs[len(pairs) - held:]
    if not train_pairs:
        raise ValueError(f"no preference pairs to train on ({len(pairs)} in all): the policy "
                         "needs questions it answers both right and wrong")
    validation_task = validation.subset(0, config.eval_problems) if validation and \
        config.eval_problems else None

    def reward_accuracy() -> float | None:
        if not held_out:
            return None
        with torch.no_grad(), run.autocast():
            losses = [float(compute_per_instance_dpo_loss(run.model, reference, tokenizer,
                                                          config.beta, **pair))
                      for pair in held_out]
        return sum(loss < math.log(2) for loss in losses) / len(losses)

    if "accuracy_before" not in state:
        state["accuracy_before"] = reward_accuracy()
    with StopSignals() as stop_signals:
        while run.step < config.steps:
            with run.timed("training"):
                chosen = batch_indices(len(train_pairs), config.batch_size, run.step,
                                       config.seed)
                total = 0.0
                for index in chosen:
                    with run.autocast():
                        loss = compute_per_instance_dpo_loss(run.model, reference, tokenizer,
                                                             config.beta, **train_pairs[index])
                    (loss / len(chosen)).backward()
                    total += float(loss) / len(chosen)
                grad_norm = run.optimizer_step()
            if run.step % config.eval_interval == 0 or run.step == config.steps:
                with run.timed("evaluation"):
                    record = {"kind": "eval", "step": run.step,
                              "reward_accuracy": reward_accuracy()}
                    if validation_task is not None:
                        record["val_accuracy"] = accuracy(engine, tokenizer, validation_task,
                                                          config.seed)
                state.setdefault("curve", []).append(record)
                run.log.write(record)
            run.after_step(stop_signals, {"loss": total, "grad_norm": grad_norm,
                                          "lr": run.learning_rate()})
    curve = state.get("curve", [])
    plot = run.finish(output_dir)
    return DPOResult(
        steps=run.step, pairs=len(train_pairs), held_out_pairs=len(held_out),
        reward_accuracy_before=state["accuracy_before"],
        reward_accuracy=curve[-1].get("reward_accuracy") if curve else None,
        validation_accuracy=curve[-1].get("val_accuracy") if curve else None,
        curve=[{k: v for k, v in r.items() if k != "kind"} for r in curve],
        example_pairs=pairs[:3], loss_curve=plot, seconds=sum(run.seconds.values()))
