"""Base -> SFT -> GRPO against the equal-compute SFT control, for several seeds, on the
embedded default's task: the comparison the post-training issue asks to report across seeds.

    python scripts/posttrain_seeds.py HOME [--seeds 0,1,2] [--problems 505]
        [--sft-steps N] [--group-size G] [--labelled-examples N] [--sft-lr LR]
        [--grpo-steps N] [--grpo-lr LR] [--loss-type T] [--epochs-per-rollout E]
        [--no-std-normalization]

HOME is an LMPIPE_HOME where `make demo` ran (its base_model and bpe_tokenizer are the start).
Every stage runs with its library defaults (what the demo runs) unless an option changes
them: --sft-steps and --sft-lr (SFTConfig; the control keeps the learning rate), --group-size,
--grpo-steps, --grpo-lr, --loss-type, --epochs-per-rollout and --no-std-normalization (Dr.
GRPO) (GRPOConfig), --labelled-examples (TaskConfig: the rest of the training prompts are
GRPO's); the seed of each changed; the task's examples and test split stay fixed. Accuracy
is greedy, on the first --problems of the arithmetic test split, with Wilson intervals.
Writes nothing into HOME (runs go to a temporary directory) and prints a markdown table.
"""

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmlib.align import GRPOConfig, SFTConfig, TaskConfig, build_tasks, run_grpo, run_sft  # noqa: E402
from lmlib.align.sft import equal_compute_steps  # noqa: E402
from lmlib.align.tasks import accuracy, arithmetic_task  # noqa: E402
from lmlib.eval.metrics import wilson_interval  # noqa: E402
from lmlib.infer import Engine  # noqa: E402
from lmlib.model import load_model  # noqa: E402
from lmlib.tasks import ArithmeticConfig  # noqa: E402
from lmlib.tokenizer import Tokenizer  # noqa: E402


def test_accuracy(model_dir: Path, tokenizer: Tokenizer, problems: int, digits: int) -> tuple:
    """Greedy accuracy on the first `problems` of the test split, with its Wilson interval."""
    task = arithmetic_task(ArithmeticConfig.sized(digits), "test").subset(0, problems)
    engine = Engine(load_model(model_dir).eval(), max_batch_size=256)
    value = accuracy(engine, tokenizer, task)
    return value, *wilson_interval(round(value * len(task.prompts)), len(task.prompts))

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("home", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--problems", type=int, default=505)
    parser.add_argument("--sft-steps", type=int, default=SFTConfig.steps)
    parser.add_argument("--group-size", type=int, default=GRPOConfig.group_size)
    parser.add_argument("--labelled-examples", type=int, default=TaskConfig.labelled_examples)
    parser.add_argument("--sft-lr", type=float, default=SFTConfig.learning_rate)
    parser.add_argument("--grpo-steps", type=int, default=GRPOConfig.steps)
    parser.add_argument("--grpo-lr", type=float, default=GRPOConfig.learning_rate)
    parser.add_argument("--loss-type", default=GRPOConfig.loss_type)
    parser.add_argument("--epochs-per-rollout", type=int, default=GRPOConfig.epochs_per_rollout)
    parser.add_argument("--no-std-normalization", action="store_true")
    args = parser.parse_args()
    artifacts = args.home / "artifacts"
    base, tokenizer_dir = artifacts / "base_model" / "model", artifacts / "bpe_tokenizer"
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    task_config = TaskConfig(labelled_examples=args.labelled_examples)
    splits = build_tasks(task_config)
    work = Path(tempfile.mkdtemp(prefix="posttrain_seeds_"))
    rows = [("base_model", "-", *test_accuracy(base, tokenizer, args.problems,
                                                task_config.arithmetic_digits), 0.0)]
    for seed in (int(s) for s in args.seeds.split(",")):
        out = work / f"seed{seed}"
        started = time.perf_counter()
        sft = SFTConfig(seed=seed, steps=args.sft_steps, learning_rate=args.sft_lr)
        run_sft(base, tokenizer_dir, splits.labelled, splits.validation, out / "sft_run",
                out / "sft", sft)
        sft_seconds = time.perf_counter() - started
        started = time.perf_counter()
        grpo = run_grpo(out / "sft" / "model", tokenizer_dir, splits.unlabelled,
                        splits.validation, out / "grpo_run", out / "grpo",
                        GRPOConfig(seed=seed, group_size=args.group_size,
                                   steps=args.grpo_steps, learning_rate=args.grpo_lr,
                                   loss_type=args.loss_type,
                                   epochs_per_rollout=args.epochs_per_rollout,
                                   normalize_by_std=not args.no_std_normalization))
        grpo_seconds = time.perf_counter() - started
        steps = equal_compute_steps(grpo.trained_tokens, grpo.generated_tokens, sft, tokenizer,
                                    splits.labelled)
        started = time.perf_counter()
        run_sft(out / "sft" / "model", tokenizer_dir, splits.labelled, splits.validation,
                out / "control_run", out / "control", dataclasses.replace(sft, steps=steps))
        control_seconds = time.perf_counter() - started
        for name, seconds in (("sft", sft_seconds), ("grpo", grpo_seconds),
                              ("control", control_seconds)):
            rows.append((name, seed, *test_accuracy(out / name / "model", tokenizer,
                                                    args.problems,
                                                    task_config.arithmetic_digits), seconds))
            print(rows[-1], flush=True)
    print(f"\nequal-compute control: SFT steps = GRPO's (3 x trained + generated tokens) / "
          f"(3 x batch x padded length); {args.problems} test problems, greedy\n")
    print("| model | seed | accuracy | 95% interval | seconds |")
    print("|---|---|---:|---|---:|")
    for name, seed, value, low, high, seconds in rows:
        print(f"| {name} | {seed} | {value:.3f} | [{low:.3f}, {high:.3f}] | {seconds:.0f} |")


if __name__ == "__main__":
    main()
