"""Generating answers with the batched engine and grading them: greedy accuracy and pass@k.

Notable:
- every problem gets `n` samples from one prefill (lmlib.infer.Engine), seeded per problem, so
  a rerun gives the same outputs on the same device;
- a completion stops at <|endoftext|>, at any stop sequence that is one token of the
  vocabulary (a newline), and is cut at the first of the task's stop sequences after decoding
  (multi-token ones such as "Question:");
- sampled ids beyond the tokenizer's vocabulary (a model's padded rows) decode to nothing;
- a prompt longer than the engine leaves room for is cut from the left (the few-shot examples
  go first, the question stays);
- pass@k uses the unbiased estimator over the n samples, with a bootstrap interval over
  problems; greedy accuracy (n = 1, temperature 0) a Wilson interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lmlib.eval.metrics import bootstrap_interval, mean_pass_at_k, pass_at_k, wilson_interval
from lmlib.infer import Engine, Request
from lmlib.tokenizer import Tokenizer
from lmlib.tokenizer.corpus import DOCUMENT_SEPARATOR as END_OF_TEXT


def generate_completions(engine: Engine, tokenizer: Tokenizer, prompts: Sequence[str], n: int,
                         max_new_tokens: int, temperature: float = 0.0,
                         stop_sequences: Sequence[str] = (), seed: int = 0) -> list[list[str]]:
    """n decoded completions per prompt, each cut at its first stop sequence."""
    stop_tokens = {tokenizer.token_id(END_OF_TEXT)} if END_OF_TEXT in tokenizer.special_tokens \
        else set()
    for sequence in stop_sequences:
        ids = tokenizer.encode(sequence)
        if len(ids) == 1:
            stop_tokens.add(ids[0])
    room = engine.max_seq_len - max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the "
                         f"engine's max_seq_len={engine.max_seq_len}")
    requests = [Request(tokenizer.encode(prompt)[-room:], n=n, max_new_tokens=max_new_tokens,
                        temperature=temperature, seed=seed + index,
                        stop_tokens=tuple(sorted(stop_tokens)))
                for index, prompt in enumerate(prompts)]
    outputs: list[list[str]] = [[] for _ in prompts]
    for completion in engine.generate(requests):
        # ids of a padded vocabulary beyond the tokenizer's (50304 for 50257) decode to nothing
        text = tokenizer.decode([t for t in completion.tokens if t in tokenizer.vocab])
        for sequence in (*stop_sequences, END_OF_TEXT):
            text = text.split(sequence, 1)[0]
        outputs[completion.request_index].append(text)
    return outputs


@dataclass
class GenerationScore:
    """One task's generative score: correct samples per problem and the metrics over them."""

    samples_per_problem: int
    temperature: float
    correct: list[int]  # per problem, of samples_per_problem
    metrics: dict[str, float] = field(default_factory=dict)  # "accuracy" or "pass@k"
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def problems(self) -> int:
        return len(self.correct)


def score_generations(outputs: list[list[str]], is_correct: Callable[[int, str], bool],
                      temperature: float, ks: Sequence[int] = (1,), seed: int = 0
                      ) -> GenerationScore:
    """Grades outputs[i][j] with is_correct(i, output): accuracy with a Wilson interval when
    each problem has one sample, else pass@k for every k <= samples with bootstrap intervals."""
    n = len(outputs[0]) if outputs else 0
    if any(len(samples) != n for samples in outputs):
        raise ValueError("every problem needs the same number of samples")
    correct = [sum(is_correct(i, output) for output in samples) for i, samples in
               enumerate(outputs)]
    score = GenerationScore(samples_per_problem=n, temperature=temperature, correct=correct)
    if not outputs:
        return score
    if n == 1:
        score.metrics["accuracy"] = sum(correct) / len(correct)
        score.intervals["accuracy"] = tuple(wilson_interval(sum(correct), len(correct)))
        return score
    for k in sorted({k for k in ks if k <= n}):
        name = f"pass@{k}"
        score.metrics[name] = mean_pass_at_k([(n, c) for c in correct], k)
        per_problem = [pass_at_k(n, c, k) for c in correct]
        score.intervals[name] = tuple(bootstrap_interval(
            per_problem, lambda values: sum(values) / len(values), seed=seed))
    return score
