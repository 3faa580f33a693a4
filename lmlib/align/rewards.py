"""Verifiable rewards for RL post-training: a response and its ground truth (a str) to
{"format_reward", "answer_reward", "reward"}, each 0.0 or 1.0.

Notable:
- the answer is graded only when the response has the layout the reward asks for (the
  reference's r1_zero rule: "no format reward to avoid hacking" and no answer reward without
  it), so answer_reward = reward, and format_reward - reward is the rate of well-formed wrong
  answers;
- no grader is written here: answers go through lmlib.eval.answers (the MATH and GSM8K
  graders the evaluation battery uses) and lmlib.tasks.arithmetic's `check_arithmetic`, so a
  reward of 1 is exactly what the evaluation counts as correct;
- `r1_zero_reward_fn` wants "</think> <answer>" (one space, as the R1-Zero prompt ends) and
  "</answer>"; the answer is the text after the last "<answer>" up to its "</answer>", or the
  \\boxed{} inside it when there is one. `fast` is kept for the reference's signature:
  `math_answers_equal` has one mode (normalised strings first, sympy only when they differ);
- `boxed_reward_fn` takes the last \\boxed{} answer, else the GSM8K "#### N" one, and counts it
  right when either grader (math_answers_equal, gsm8k_is_correct) accepts it, so a reference
  that is a whole GSM8K solution ending in "#### N" works too;
- `arithmetic_reward_fn` wants the answer first: the response (spaces ignored, as
  check_arithmetic ignores them) starts with an integer followed by a newline or the end.
"""

from __future__ import annotations

import re

from lmlib.eval.answers import (
    extract_boxed_answer,
    gsm8k_is_correct,
    gsm8k_strict_answer,
    math_answers_equal,
)
from lmlib.tasks.arithmetic import ANSWER_END, ArithmeticExample, check_arithmetic

THINK_ANSWER_SEPARATOR = "</think> <answer>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_LEADING_ANSWER = re.compile(rf"-?\d+(?:{re.escape(ANSWER_END)}|\Z)")


def _rewards(formatted: bool, correct: bool) -> dict[str, float]:
    answer = float(formatted and correct)
    return {"format_reward": float(formatted), "answer_reward": answer, "reward": answer}


def r1_zero_reward_fn(response: str, ground_truth: str, fast: bool = True) -> dict[str, float]:
    """Reward of a "<think>...</think> <answer>...</answer>" response: 1 when it has that layout
    and its answer equals `ground_truth` (math_answers_equal)."""
    if THINK_ANSWER_SEPARATOR not in response or ANSWER_CLOSE not in response:
        return _rewards(False, False)
    answer = response.rsplit(ANSWER_OPEN, 1)[-1].split(ANSWER_CLOSE, 1)[0]
    if "\\boxed" in answer:
        answer = extract_boxed_answer(answer)  # None (wrong) when its braces do not close
    return _rewards(True, math_answers_equal(answer, ground_truth))


def boxed_reward_fn(response: str, ground_truth: str) -> dict[str, float]:
    """Reward of a response that boxes its answer (\\boxed{...}) or ends with "#### N": 1 when
    that answer equals `ground_truth`."""
    answer = extract_boxed_answer(response)
    if answer is None:
        answer = gsm8k_strict_answer(response)
    if answer is None:
        return _rewards(False, False)
    correct = math_answers_equal(answer, ground_truth) or gsm8k_is_correct(answer, ground_truth)
    return _rewards(True, correct)


def arithmetic_reward_fn(response: str, ground_truth: str) -> dict[str, float]:
    """Reward of a response to an lmlib.tasks.arithmetic prompt ("123+456="): 1 when it starts
    with the integer `ground_truth` followed by a newline or nothing."""
    formatted = _LEADING_ANSWER.match(response.replace(" ", "")) is not None
    # check_arithmetic reads only the example's answer; with the integer first it is the one
    # check_arithmetic finds
    example = ArithmeticExample(prompt="", answer=ground_truth, a=0, b=0, op="+")
    return _rewards(formatted, formatted and check_arithmetic(example, response))
