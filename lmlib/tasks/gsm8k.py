"""GSM8K (Cobbe et al. 2021) from OpenAI's jsonl files, prompted as lm-evaluation-harness does.

Notable:
- files: `train.jsonl` (7,473) and `test.jsonl` (1,319), one `{"question", "answer"}` object a
  line, where "answer" is the worked solution (with `<<48/2=24>>` calculator annotations)
  ending in a line `#### N`. `GSM8KExample.solution` keeps that text whole, because the
  harness's few-shot targets are exactly it; `answer` is N with its commas removed;
- the prompt is the harness's `gsm8k` task (lm_eval/tasks/gsm8k/gsm8k.yaml):
      doc_to_text: "Question: {{question}}\\nAnswer:"
      doc_to_target: "{{answer}}"    (the whole solution)
      fewshot_split: train, num_fewshot: 5, generation until "Question:", "</s>", "<|im_end|>"
  with TaskConfig's target_delimiter " " and fewshot_delimiter "\\n\\n". Its shots are a
  random draw from train (the "default" sampler, `random.Random(1234)` advanced question by
  question), so `gsm8k_prompt` takes the shots from the caller;
- the harness scores the generation two ways: "strict-match", the number after `#### `, and
  "flexible-extract", the last number in the text; both against `answer`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GSM8K_SPLITS = ("train", "test")
# generation stops at any of these (gsm8k.yaml generation_kwargs.until)
GSM8K_STOP_SEQUENCES = ("Question:", "</s>", "<|im_end|>")
ANSWER_MARK = "####"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class GSM8KExample:
    question: str
    solution: str  # the published "answer" field: worked solution ending in "#### N"
    answer: str  # N without commas: "18", "-3", "1600"


def final_answer(solution: str) -> str | None:
    """The number after the last "####", commas removed; None when there is no mark."""
    if ANSWER_MARK not in solution:
        return None
    return solution.rsplit(ANSWER_MARK, 1)[1].strip().replace(",", "")


def gsm8k_file(path_or_root: str | Path, split: str = "test") -> Path:
    """A jsonl file as given, or `split`.jsonl inside a directory."""
    path = Path(path_or_root)
    if path.is_dir():
        if split not in GSM8K_SPLITS:
            raise ValueError(f"unknown GSM8K split {split!r}; expected one of {GSM8K_SPLITS}")
        path = path / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected GSM8K's {split}.jsonl; "
                                "lmlib.tasks.download_gsm8k(root) writes it")
    return path


def load_gsm8k(path_or_root: str | Path, split: str = "test") -> list[GSM8KExample]:
    """The examples of a GSM8K jsonl file (or of `split`.jsonl in a directory), in file order;
    a bad line raises a ValueError naming the file and line."""
    path = gsm8k_file(path_or_root, split)
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
                question, solution = record["question"], record["answer"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{where}: expected a JSON object with 'question' and "
                                 f"'answer' ({type(error).__name__}: {error})") from error
            answer = final_answer(solution)
            if answer is None or not _NUMBER.fullmatch(answer):
                raise ValueError(f"{where}: the answer does not end in '#### <number>'")
            examples.append(GSM8KExample(question, solution, answer))
    return examples


def gsm8k_prompt(example: GSM8KExample, shots: Sequence[GSM8KExample] = ()) -> str:
    """The harness's context: each shot as "Question: ...\\nAnswer: <solution>\\n\\n", then
    "Question: <question>\\nAnswer:". The harness uses 5 shots drawn from train."""
    answered = "".join(f"Question: {shot.question}\nAnswer: {shot.solution}\n\n" for shot in shots)
    return f"{answered}Question: {example.question}\nAnswer:"
