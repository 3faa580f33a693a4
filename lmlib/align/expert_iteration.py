"""Expert iteration: sample answers, keep the correct ones, fine-tune on them, repeat.

Notable:
- a round: `questions_per_round` prompts (a seeded draw per round), `samples_per_question`
  samples each from the engine, the ones the task's reward calls correct kept (each kept
  response ends with the task's first stop sequence, so the model learns to stop), then
  `steps` SFT steps on them (lmlib.align.sft's step);
- the kept pairs of the current round are saved with each checkpoint, so a run killed mid-round
  resumes on the same data rather than sampling from changed weights;
- per round: how many samples were correct, how many questions had at least one, the
  validation accuracy after the round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmlib.align.grpo import step_prompts
from lmlib.align.policy import PolicyRun, deterministic_on_cpu
from lmlib.align.sft import SFTConfig, sft_steps
from lmlib.align.tasks import VerifiableTask, accuracy
from lmlib.eval.generation import generate_completions
from lmlib.stage import StageResult, check_positive
from lmlib.tokenizer import Tokenizer
from lmlib.train.interrupts import StopSignals


@dataclass
class ExpertIterationConfig(SFTConfig):
    rounds: int = 2
    questions_per_round: int = 128
    samples_per_question: int = 8
    temperature: float = 1.0
    steps: int = 30  # SFT steps per round
    learning_rate: float = 1e-4
    min_learning_rate: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "rounds", "questions_per_round", "samples_per_question",
                       "temperature")


@dataclass
class ExpertIterationResult(StageResult):
    MANIFEST_COUNTS = ("rounds", "steps")

    rounds: int
    steps: int
    validation_accuracy: float | None
    per_round: list[dict] = field(default_factory=list)  # round, kept, solved, val_accuracy
    loss_curve: Path | None = None
    seconds: float = 0.0


@deterministic_on_cpu
def run_expert_iteration(model_dir: Path, tokenizer_dir: Path, train: VerifiableTask,
                         validation: VerifiableTask | None, run_dir: Path, output_dir: Path,
                         config: ExpertIterationConfig, progress=None) -> ExpertIterationResult:
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    run = PolicyRun(model_dir, run_dir, config, config.rounds * config.steps, progress)
    run.resume()
    engine = run.engine(max_batch_size=min(
        config.questions_per_round * config.samples_per_question, 256))
    held_out = validation.subset(0, config.eval_problems) if validation and \
        config.eval_problems else None
    state = run.loop_state
    ending = train.stop_sequences[0] if train.stop_sequences else ""
    with StopSignals() as stop_signals:
        while run.step < run.total_steps:
            round_index = run.step // config.steps
            if state.get("round") != round_index:  # a new round: sample and keep the correct
                chosen = step_prompts(len(train.prompts), config.questions_per_round,
                                      round_index, config.seed)
                with run.timed("generation"):
                    outputs = generate_completions(
                        engine, tokenizer, [train.prompts[i] for i in chosen],
                        config.samples_per_question, train.max_new_tokens, config.temperature,
                        train.stop_sequences, seed=config.seed * 1_000_003 + round_index)
                kept, solved = [], 0
                for index, samples in zip(chosen, outputs, strict=True):
                    correct = [s for s in samples
                               if train.reward_fn(s, train.answers[index])["reward"] > 0]
                    solved += bool(correct)
                    kept += [[train.prompts[index], s + ending] for s in dict.fromkeys(correct)]
                state.update(round=round_index, kept=kept)
                state.setdefault("per_round", []).append(
                    {"round": round_index, "samples": len(chosen) * config.samples_per_question,
                     "kept": len(kept), "solved": solved, "questions": len(chosen)})
                run.log.status(f"round {round_index}: kept {len(kept)} correct samples, "
                               f"{solved}/{len(chosen)} questions solved")
            kept = state["kept"]
            steps = (round_index + 1) * config.steps - run.step
            if kept:
                with run.timed("training"):
                    sft_steps(run, tokenizer, [p for p, _ in kept], [r for _, r in kept],
                              steps, config, stop_signals, seed=config.seed + round_index)
            else:  # nothing correct to learn from: the round passes without steps
                run.step += steps
                run.write_checkpoint()
            if held_out is not None:
                with run.timed("evaluation"):
                    value = accuracy(engine, tokenizer, held_out, config.seed)
                state["per_round"][-1]["val_accuracy"] = value
                run.log.write({"kind": "eval", "step": run.step, "val_accuracy": value})
    plot = run.finish(output_dir)
    per_round = state.get("per_round", [])
    return ExpertIterationResult(
        rounds=config.rounds, steps=run.step,
        validation_accuracy=per_round[-1].get("val_accuracy") if per_round else None,
        per_round=per_round, loss_curve=plot, seconds=sum(run.seconds.values()))
