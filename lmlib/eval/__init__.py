"""Evaluation: one battery for every checkpoint, the answers graded as the field grades them.

Notable:
- `lmlib.eval.battery`: the `evaluate_checkpoint` stage (EvalConfig -> EvaluationResult):
  bits per byte, the arithmetic task, MMLU, GSM8K and MATH; `check_checkpoint` for the
  blocking check on checkpoints;
- `lmlib.eval.likelihood`: batched log-likelihood of continuations (multiple choice) and loss,
  perplexity and bits per byte of shards or text, on our model or any logits callable;
- `lmlib.eval.generation`: answers from lmlib.infer.Engine, greedy accuracy and pass@k;
- `lmlib.eval.answers`: MMLU option letters, GSM8K numbers as lm-evaluation-harness extracts
  and matches them, MATH \\boxed{} answers and their equivalence (Hendrycks' and Minerva's
  normalisations, then sympy through `lmlib.eval.latex_values`);
- `lmlib.eval.metrics`: pass@k (Chen et al. 2021), Wilson and bootstrap intervals, mean and
  standard error;
- no Dagster; answers and metrics need no torch; sympy is imported only when two answers need
  comparing as values.
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
from lmlib.eval.battery import (
    CheckpointCheck,
    EvalConfig,
    EvaluationResult,
    TaskResult,
    check_checkpoint,
    evaluate_checkpoint,
)
from lmlib.eval.generation import GenerationScore, generate_completions, score_generations
from lmlib.eval.likelihood import (
    ContinuationScore,
    LanguageModelingResult,
    encode_pair,
    evaluate_texts,
    evaluate_token_shards,
    hf_logits,
    read_texts,
    score_continuations,
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
    "CheckpointCheck",
    "ContinuationScore",
    "EvalConfig",
    "EvaluationResult",
    "GenerationScore",
    "LanguageModelingResult",
    "TaskResult",
    "check_checkpoint",
    "encode_pair",
    "evaluate_checkpoint",
    "evaluate_texts",
    "evaluate_token_shards",
    "generate_completions",
    "hf_logits",
    "read_texts",
    "score_continuations",
    "score_generations",
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
