"""Verifiable tasks for post-training: prompts, ground truths, a reward, and for SFT responses.

Notable:
- one shape for every loop: SFT reads `responses` (labelled), expert iteration, GRPO and DPO
  read `prompts` and `answers` and score generations with `reward_fn(response, answer) ->
  {"reward", "format_reward", "answer_reward"}`;
- `arithmetic_task`: the synthetic task of lmlib.tasks (the embedded default's);
  `gsm8k_task`: GSM8K's published jsonl, zero-shot "Question: …\\nAnswer:" prompts, the
  reference solutions (ending in "#### N") as SFT responses, graded on the "#### N" answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmlib.align.rewards import arithmetic_reward_fn, boxed_reward_fn
from lmlib.tasks import (
    GSM8K_STOP_SEQUENCES,
    ArithmeticConfig,
    gsm8k_prompt,
    load_gsm8k,
    make_arithmetic,
)


@dataclass
class VerifiableTask:
    name: str
    prompts: list[str]
    answers: list[str]
    responses: list[str] | None  # labelled responses (SFT); None for prompts alone
    reward_fn: Callable[[str, str], dict]
    stop_sequences: tuple[str, ...]
    max_new_tokens: int

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.answers) or (
                self.responses is not None and len(self.responses) != len(self.prompts)):
            raise ValueError(f"task {self.name}: prompts, answers and responses differ in length")
        if not self.prompts:
            raise ValueError(f"task {self.name} has no prompts")

    def subset(self, start: int, stop: int | None, labelled: bool = True) -> VerifiableTask:
        """Prompts start..stop, with their responses when `labelled`."""
        responses = self.responses[start:stop] if labelled and self.responses else None
        return VerifiableTask(self.name, self.prompts[start:stop], self.answers[start:stop],
                              responses, self.reward_fn, self.stop_sequences,
                              self.max_new_tokens)


def arithmetic_task(config: ArithmeticConfig, split: str) -> VerifiableTask:
    """A split ("train", "val", "test") of lmlib.tasks.make_arithmetic(config)."""
    examples = make_arithmetic(config)[split]
    return VerifiableTask(
        name=f"arithmetic ({config.digits} digits)", prompts=[e.prompt for e in examples],
        answers=[e.answer for e in examples], responses=[e.answer + "\n" for e in examples],
        reward_fn=arithmetic_reward_fn, stop_sequences=("\n",),
        max_new_tokens=config.digits + 3)


def gsm8k_task(path_or_root: str | Path, split: str = "train") -> VerifiableTask:
    examples = load_gsm8k(path_or_root, split)
    return VerifiableTask(
        name="gsm8k", prompts=[gsm8k_prompt(e) for e in examples],
        answers=[e.answer for e in examples], responses=[" " + e.solution for e in examples],
        reward_fn=boxed_reward_fn, stop_sequences=GSM8K_STOP_SEQUENCES, max_new_tokens=256)


def accuracy(engine, tokenizer, task: VerifiableTask, seed: int = 0) -> float:
    """Greedy answer accuracy of the engine's model on every prompt of the task."""
    from lmlib.eval.generation import generate_completions, score_generations

    outputs = generate_completions(engine, tokenizer, task.prompts, 1, task.max_new_tokens, 0.0,
                                   task.stop_sequences, seed=seed)
    score = score_generations(
        outputs, lambda i, output: task.reward_fn(output, task.answers[i])["answer_reward"] > 0,
        temperature=0.0)
    return score.metrics["accuracy"]

@dataclass
class TaskConfig:
    """The task every post-training stage shares: its first `labelled_examples` training
    examples are SFT's (deliberately few), the rest of the training prompts are unlabelled
    prompts for GRPO, expert iteration and DPO; the validation split is held out."""

    task: str = "arithmetic"  # "arithmetic" or "gsm8k"
    arithmetic_digits: int = 2
    labelled_examples: int = 1024
    gsm8k_dir: str = ""  # GSM8K's train.jsonl and test.jsonl, for task="gsm8k"
    seed: int = 0  # of the task's splits, not of training

    def __post_init__(self) -> None:
        if self.task not in ("arithmetic", "gsm8k"):
            raise ValueError(f"TaskConfig.task must be 'arithmetic' or 'gsm8k', got {self.task!r}")
        if self.task == "gsm8k" and not self.gsm8k_dir:
            raise ValueError("TaskConfig.gsm8k_dir is required for task='gsm8k'")
        if self.labelled_examples < 1:
            raise ValueError("TaskConfig.labelled_examples must be >= 1")


@dataclass
class TaskSplits:
    labelled: VerifiableTask  # SFT's pairs
    unlabelled: VerifiableTask  # prompts and answers only
    validation: VerifiableTask


def build_tasks(config: TaskConfig) -> TaskSplits:
    if config.task == "arithmetic":
        arithmetic = ArithmeticConfig.sized(config.arithmetic_digits, seed=config.seed)
        train, validation = arithmetic_task(arithmetic, "train"), arithmetic_task(arithmetic,
                                                                                 "val")
    else:
        train, validation = gsm8k_task(config.gsm8k_dir, "train"), gsm8k_task(config.gsm8k_dir,
                                                                              "test")
    if config.labelled_examples >= len(train.prompts):
        raise ValueError(f"TaskConfig.labelled_examples={config.labelled_examples} leaves no "
                         f"unlabelled prompts of the {len(train.prompts)} in {train.name}")
    return TaskSplits(labelled=train.subset(0, config.labelled_examples),
                      unlabelled=train.subset(config.labelled_examples, None, labelled=False),
                      validation=validation)
