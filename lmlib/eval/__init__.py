"""Evaluation: reading answers out of model outputs, grading them, and scoring many problems.

Notable:
- `lmlib.eval.answers`: MMLU option letters, GSM8K numbers as lm-evaluation-harness extracts
  and matches them, MATH \\boxed{} answers and their equivalence (Hendrycks' and Minerva's
  normalisations, then sympy through `lmlib.eval.latex_values`);
- `lmlib.eval.metrics`: pass@k (Chen et al. 2021), Wilson and bootstrap intervals, mean and
  standard error;
- no torch, no Dagster; sympy is imported only when two answers need comparing as values.
"""

from lmlib.eval.answers import (
    OPTION_LETTERS,
    MultipleChoiceExample,
    OptionLetter,
    extract_boxed_answer,
    gsm8k_flexible_answer,
    gsm8k_is_correct,
    gsm8k_normalize,
    gsm8k_strict_answer,
    hendrycks_math_normalize,
    math_answers_equal,
    minerva_math_normalize,
    parse_gsm8k_response,
    parse_mmlu_response,
)
from lmlib.eval.metrics import (
    Interval,
    MeanAndStderr,
    bootstrap_interval,
    mean_and_stderr,
    mean_pass_at_k,
    pass_at_k,
    wilson_interval,
)

__all__ = [
    "OPTION_LETTERS",
    "Interval",
    "MeanAndStderr",
    "MultipleChoiceExample",
    "OptionLetter",
    "bootstrap_interval",
    "extract_boxed_answer",
    "gsm8k_flexible_answer",
    "gsm8k_is_correct",
    "gsm8k_normalize",
    "gsm8k_strict_answer",
    "hendrycks_math_normalize",
    "math_answers_equal",
    "mean_and_stderr",
    "mean_pass_at_k",
    "minerva_math_normalize",
    "parse_gsm8k_response",
    "parse_mmlu_response",
    "pass_at_k",
    "wilson_interval",
]
