"""The `evaluate_checkpoint` stage: one battery for every checkpoint, so checkpoints compare.

Notable:
- language modelling: loss, perplexity and bits per byte on the validation token shards, and
  on any text or JSONL files named in the config;
- the synthetic arithmetic task (lmlib.tasks.make_arithmetic's test split, the split post-
  training never trains on): greedy accuracy and pass@k from `samples` samples at
  `temperature`; always on, so the embedded default has a task to compare checkpoints on;
- MMLU (log-likelihood of " A".." D" after the harness's prompt, `mmlu_shots` dev examples),
  GSM8K (5-shot, strict and flexible extraction) and MATH / MATH-500 (Minerva 4-shot, boxed or
  "final answer is" answers, graded for equivalence) when their data is configured: a path
  left empty skips the task, and the result says so;
- evaluation.json holds no timings (same checkpoint, data, config and seed: the same bytes);
  timings.json holds them, in all and per task row.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lmlib.artifacts import without_timings
from lmlib.eval.answers import (
    extract_boxed_answer,
    gsm8k_flexible_answer,
    gsm8k_is_correct,
    gsm8k_strict_answer,
    math_answers_equal,
)
from lmlib.eval.generation import generate_completions, score_generations
from lmlib.eval.likelihood import (
    encode_pair,
    evaluate_texts,
    evaluate_token_shards,
    read_texts,
    score_continuations,
)
from lmlib.eval.metrics import wilson_interval
from lmlib.formats import EVALUATION_FILE, EVALUATION_TIMINGS_FILE
from lmlib.formats import EVALUATION_SAMPLES_FILE as SAMPLES_FILE
from lmlib.infer import Engine
from lmlib.model.saved_model import load_model
from lmlib.stage import StageResult, check_positive
from lmlib.tasks import (
    GSM8K_STOP_SEQUENCES,
    MATH_STOP_SEQUENCES,
    MMLU_CONTINUATIONS,
    ArithmeticConfig,
    check_arithmetic,
    gsm8k_prompt,
    load_gsm8k,
    load_math,
    load_mmlu,
    make_arithmetic,
    math_prompt,
    mmlu_prompt,
    mmlu_shots,
)
from lmlib.tokenizer import Tokenizer
from lmlib.train.trainer import resolve_device

_MINERVA_FINAL = re.compile(r"[Tt]he final answer is\s*\$?(.+?)\$?\.?\s*(?:I hope|$)", re.S)


@dataclass
class EvalConfig:
    """What the battery runs and how big each part is (0 = every example there is)."""

    lm_tokens: int = 32_768  # validation tokens for loss and bits per byte
    text_files: tuple[str, ...] = ()  # more .txt / .jsonl(.gz) files for bits per byte
    text_documents: int = 100  # documents read from each text file
    arithmetic_digits: int = 2  # the post-training task's (lmlib.align.tasks.TaskConfig)
    arithmetic_problems: int = 256
    samples: int = 8  # samples per problem for pass@k
    pass_ks: tuple[int, ...] = (1, 8)
    temperature: float = 1.0
    mmlu_dir: str = ""  # the MMLU data/ directory (dev/ and test/ CSVs); empty: skipped
    mmlu_shots: int = 5
    mmlu_per_subject: int = 0
    gsm8k_dir: str = ""  # holds test.jsonl (and train.jsonl for the shots); empty: skipped
    gsm8k_problems: int = 0
    math_file: str = ""  # MATH or MATH-500 jsonl; empty: skipped
    math_problems: int = 0
    max_new_tokens: int = 256  # for GSM8K and MATH
    batch_size: int = 32
    device: str = "auto"  # auto: cuda when there is one
    seed: int = 0
    shown_samples: int = 3  # generations per task kept for the report

    def __post_init__(self) -> None:
        self.text_files, self.pass_ks = tuple(self.text_files), tuple(self.pass_ks)
        check_positive(self, "lm_tokens", "samples", "max_new_tokens", "batch_size",
                       "arithmetic_digits")
        for name in ("arithmetic_problems", "mmlu_shots", "mmlu_per_subject", "gsm8k_problems",
                     "math_problems", "text_documents", "shown_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"EvalConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.temperature <= 2:
            raise ValueError(f"EvalConfig.temperature must be in (0, 2], got {self.temperature}")
        if not self.pass_ks or min(self.pass_ks) < 1 or max(self.pass_ks) > self.samples:
            raise ValueError(f"EvalConfig.pass_ks must lie in 1..samples={self.samples}, got "
                             f"{self.pass_ks}")


@dataclass
class TaskResult:
    """One row of the report: a task's metric with its interval over `examples` examples."""

    task: str
    metric: str
    value: float
    low: float | None
    high: float | None
    examples: int
    settings: str  # shots, samples, temperature: what a reader needs to compare rows
    seconds: float = 0.0


@dataclass
class EvaluationResult(StageResult):
    MANIFEST_COUNTS = ("parameters", "validation_bits_per_byte")

    checkpoint: str
    parameters: int
    device: str
    validation_loss: float
    validation_perplexity: float
    validation_bits_per_byte: float
    validation_tokens: int
    texts: dict[str, dict] = field(default_factory=dict)  # file name -> loss, bpb, ...
    tasks: list[TaskResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict,  # task -> why
                                    metadata={"key": "task", "value": "skipped because"})
    samples: list[dict] = field(default_factory=list)  # task, prompt, output, correct
    subjects: list[dict] = field(default_factory=list)  # MMLU: task, subject, accuracy, examples
    seconds: float = 0.0


def evaluate_checkpoint(model_dir: Path, tokenizer_dir: Path, shards_dir: Path,
                        output_dir: Path, config: EvalConfig, name: str = "checkpoint"
                        ) -> EvaluationResult:
    """Runs the battery on the saved model in model_dir; writes evaluation.json and
    samples.jsonl into output_dir."""
    started = time.perf_counter()
    device = resolve_device(config.device)
    model = load_model(model_dir, device=device).eval()
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    lm = evaluate_token_shards(model, tokenizer, shards_dir, "val", max_tokens=config.lm_tokens,
                               batch_size=config.batch_size)
    result = EvaluationResult(
        checkpoint=name, parameters=model.num_parameters(), device=str(device),
        validation_loss=lm.loss, validation_perplexity=lm.perplexity,
        validation_bits_per_byte=lm.bits_per_byte, validation_tokens=lm.tokens)
    for path in config.text_files:
        texts = read_texts(path, limit=config.text_documents or None)
        result.texts[Path(path).name] = asdict(evaluate_texts(model, tokenizer, texts,
                                                              batch_size=config.batch_size))
    engine = Engine(model, max_batch_size=max(config.batch_size, config.samples))
    _arithmetic(result, engine, tokenizer, config)
    for task, setting, run in (("mmlu", config.mmlu_dir, _mmlu), ("gsm8k", config.gsm8k_dir,
                                                                  _gsm8k),
                               ("math", config.math_file, _math)):
        if not setting:
            result.skipped[task] = "no data configured"
            continue
        run(result, model, engine, tokenizer, config)
    result.seconds = time.perf_counter() - started
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    record = without_timings({**asdict(result), "config": asdict(config)})
    (output_dir / EVALUATION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    timings = {"seconds": result.seconds,
               "tasks": [{"task": row.task, "metric": row.metric, "seconds": row.seconds}
                         for row in result.tasks]}
    (output_dir / EVALUATION_TIMINGS_FILE).write_text(json.dumps(timings, indent=2) + "\n")
    with (output_dir / SAMPLES_FILE).open("w", encoding="utf-8") as handle:
        for sample in result.samples:
            handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
    return result


def _generative(result: EvaluationResult, task: str, engine: Engine, tokenizer: Tokenizer,
                prompts: list[str], graders: dict[str, Callable[[int, str], bool]],
                config: EvalConfig, max_new_tokens: int, stop_sequences: tuple[str, ...],
                shots: int) -> None:
    """Greedy accuracy, then pass@k over config.samples samples, for each grader (GSM8K has
    two): rows of the result, named "task" or "task grader"."""
    started = time.perf_counter()
    greedy = generate_completions(engine, tokenizer, prompts, 1, max_new_tokens, 0.0,
                                  stop_sequences, seed=config.seed)
    sampled = generate_completions(engine, tokenizer, prompts, config.samples, max_new_tokens,
                                   config.temperature, stop_sequences, seed=config.seed)
    rows = []
    for grader, is_correct in graders.items():
        name = f"{task} {grader}".strip()
        score = score_generations(greedy, is_correct, 0.0)
        rows.append(TaskResult(name, "accuracy", score.metrics["accuracy"],
                               *score.intervals["accuracy"], score.problems,
                               f"{shots}-shot, greedy"))
        pass_score = score_generations(sampled, is_correct, config.temperature, config.pass_ks,
                                       seed=config.seed)
        rows += [TaskResult(name, metric, value, *pass_score.intervals[metric],
                            pass_score.problems,
                            f"{shots}-shot, n={config.samples}, T={config.temperature:g}")
                 for metric, value in pass_score.metrics.items()]
        if len(rows) <= len(pass_score.metrics) + 1:  # the first grader: samples shown once
            result.samples += [{"task": name, "prompt": prompts[index][-300:],
                                "output": greedy[index][0],
                                "correct": bool(is_correct(index, greedy[index][0]))}
                               for index in range(min(config.shown_samples, len(prompts)))]
    seconds = time.perf_counter() - started
    for row in rows:
        row.seconds = seconds / len(rows)
    result.tasks += rows


def _arithmetic(result, engine, tokenizer, config: EvalConfig) -> None:
    if not config.arithmetic_problems:
        result.skipped["arithmetic"] = "arithmetic_problems = 0"
        return
    problems = make_arithmetic(ArithmeticConfig.sized(config.arithmetic_digits,
                                                      seed=config.seed))["test"]
    problems = problems[: config.arithmetic_problems]
    _generative(result, f"arithmetic ({config.arithmetic_digits} digits)", engine, tokenizer,
                [p.prompt for p in problems],
                {"": lambda i, output: check_arithmetic(problems[i], output)}, config,
                max_new_tokens=config.arithmetic_digits + 3, stop_sequences=("\n",), shots=0)


def _mmlu(result, model, engine, tokenizer, config: EvalConfig) -> None:
    started = time.perf_counter()
    test, dev = load_mmlu(config.mmlu_dir, "test"), load_mmlu(config.mmlu_dir, "dev")
    if config.mmlu_per_subject:
        seen: dict[str, int] = {}
        test = [e for e in test
                if (seen.__setitem__(e.subject, seen.get(e.subject, 0) + 1)
                    or seen[e.subject] <= config.mmlu_per_subject)]
    requests, shots = [], {}
    for example in test:
        if example.subject not in shots:
            shots[example.subject] = mmlu_shots(dev, example.subject, config.mmlu_shots)
        prompt = mmlu_prompt(example, shots[example.subject])
        requests += [encode_pair(tokenizer, prompt, letter) for letter in MMLU_CONTINUATIONS]
    scores = score_continuations(model, requests, batch_size=config.batch_size)
    letters = "ABCD"
    correct_by_subject: dict[str, list[bool]] = {}
    for index, example in enumerate(test):
        options = [s.logprob for s in scores[4 * index : 4 * index + 4]]
        chosen = letters[max(range(4), key=options.__getitem__)]
        correct_by_subject.setdefault(example.subject, []).append(chosen == example.answer)
    correct = sum(sum(v) for v in correct_by_subject.values())
    low, high = wilson_interval(correct, len(test))
    result.tasks.append(TaskResult("mmlu", "accuracy", correct / len(test), low, high, len(test),
                                   f"{config.mmlu_shots}-shot, log-likelihood of the letter",
                                   time.perf_counter() - started))
    # per-subject accuracy goes to the samples file: 57 rows would drown the report's table
    result.subjects += [{"task": "mmlu", "subject": subject,
                        "accuracy": sum(values) / len(values), "examples": len(values)}
                       for subject, values in sorted(correct_by_subject.items())]


def _gsm8k(result, model, engine, tokenizer, config: EvalConfig) -> None:
    directory = Path(config.gsm8k_dir)
    test = load_gsm8k(directory, "test")
    if config.gsm8k_problems:
        test = test[: config.gsm8k_problems]
    shots = load_gsm8k(directory, "train")[:5] if (directory / "train.jsonl").exists() else []
    prompts = [gsm8k_prompt(example, shots) for example in test]
    graders = {name: (lambda i, output, extract=extract:
                      gsm8k_is_correct(extract(output), test[i].answer))
               for name, extract in (("strict", gsm8k_strict_answer),
                                     ("flexible", gsm8k_flexible_answer))}
    _generative(result, "gsm8k", engine, tokenizer, prompts, graders, config,
                config.max_new_tokens, GSM8K_STOP_SEQUENCES, shots=len(shots))


def math_final_answer(output: str) -> str | None:
    """The boxed answer, else Minerva's "The final answer is X"."""
    boxed = extract_boxed_answer(output)
    if boxed is not None:
        return boxed
    match = _MINERVA_FINAL.search(output)
    return match.group(1).strip() if match else None


def _math(result, model, engine, tokenizer, config: EvalConfig) -> None:
    problems = load_math(config.math_file)
    if config.math_problems:
        problems = problems[: config.math_problems]
    prompts = [math_prompt(example) for example in problems]

    def is_correct(index: int, output: str) -> bool:
        answer = math_final_answer(output)
        return answer is not None and math_answers_equal(answer, problems[index].answer)

    _generative(result, Path(config.math_file).parent.name or "math", engine, tokenizer,
                prompts, {"": is_correct}, config, config.max_new_tokens, MATH_STOP_SEQUENCES,
                shots=4)



@dataclass
class CheckpointCheck:
    """Whether a checkpoint is fit to flow on: finite loss, bits per byte below the bound."""

    passed: bool
    reason: str
    loss: float
    bits_per_byte: float
    bound: float  # the bound applied: the configured one, or a uniform guess's
    tokens: int


def check_checkpoint(model_dir: Path, tokenizer_dir: Path, shards_dir: Path,
                     max_tokens: int = 8192, max_bits_per_byte: float | None = None,
                     device: str = "auto") -> CheckpointCheck:
    """Validation loss and bits per byte over `max_tokens` tokens. Without a configured bound,
    a checkpoint must beat a uniform guess over its vocabulary (log2(vocab) bits a token, over
    the tokens' bytes): what any trained model does and a broken one does not."""
    model = load_model(model_dir, device=resolve_device(device)).eval()
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    lm = evaluate_token_shards(model, tokenizer, shards_dir, "val", max_tokens=max_tokens)
    bound = max_bits_per_byte
    if bound is None:
        bound = math.log2(model.config.vocab_size) * lm.tokens / max(lm.bytes, 1)
    if not math.isfinite(lm.loss):
        passed, reason = False, f"validation loss is {lm.loss}"
    elif not lm.bits_per_byte < bound:
        passed, reason = False, (f"bits per byte {lm.bits_per_byte:.4f} is not below "
                                 f"{bound:.4f}")
    else:
        passed, reason = True, f"bits per byte {lm.bits_per_byte:.4f} < {bound:.4f}"
    return CheckpointCheck(passed, reason, lm.loss, lm.bits_per_byte, bound, lm.tokens)
