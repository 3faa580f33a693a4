"""MATH (Hendrycks et al. 2021) and MATH-500 from jsonl files, prompted in the Minerva style
that lm-evaluation-harness's `minerva_math` tasks use.

Notable:
- `load_math` reads one jsonl file in any of the published shapes, line by line:
  - {problem, level, subject, unique_id, answer}: short answer, no solution (CS336's copy);
  - {problem, solution, answer, subject, level, unique_id}: HuggingFaceH4/MATH-500 and
    PRM800K's `math_splits` (level an int);
  - {problem, level, type, solution}: Hendrycks' original per-problem json objects;
  - {question, answer} where "answer" is the full solution (a MATH-500 copy in that shape);
  where no short answer is given it is the content of the solution's last \\boxed{...};
- `last_boxed_answer` matches braces (nested groups, escaped \\{ \\} skipped), reads
  \\fbox{...} too, and "\\boxed 5" up to the next "$" or line end, as the harness does;
- `level` is an int (1..5) or None where the source says "Level ?". An "answer" field is taken
  as it is, even empty (two multiple-choice problems of CS336's MATH train copy, lines 7037 and
  7437, have answer ""; filter them where a reward needs an answer);
- the prompt follows lm_eval/tasks/minerva_math (utils.py and minerva_math_algebra.yaml):
      doc_to_text: "Problem:" + "\\n" + problem + "\\n\\n" + "Solution:"
      doc_to_target for a shot: its solution; num_fewshot: 4, sampler first_n over the four
      fixed examples of `list_fewshot_samples()` (copied below, quirks included: a stray "}"
      after the first problem, "\\" + newline where LaTeX has "\\\\");
      generation until "Problem:"
  with TaskConfig's target_delimiter " " and fewshot_delimiter "\\n\\n". Each shot's solution
  ends in "Final Answer: The final answer is $X$. I hope it is correct.", the sentence the
  harness's exact-match scoring looks for in the generation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# generation stops here (minerva_math_algebra.yaml generation_kwargs.until)
MATH_STOP_SEQUENCES = ("Problem:",)

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_LEVEL = re.compile(r"(?:Level\s*)?(\d+)")


@dataclass(frozen=True)
class MathExample:
    problem: str
    answer: str  # the final answer as LaTeX, without \boxed: "\frac{1}{9}"
    solution: str | None = None  # worked solution, where the source has one
    subject: str | None = None  # "Prealgebra", "Intermediate Algebra", ...
    level: int | None = None  # 1..5
    unique_id: str | None = None  # "test/prealgebra/126.json"


def _closing_brace(text: str, opening: int) -> int | None:
    """Index of the "}" that closes the "{" at `opening`; None when it is never closed."""
    depth = 0
    index = opening
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2  # "\{", "\}" are literal braces, "\\" a line break: never a group
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def last_boxed_answer(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}) in `text`: "\\boxed{\\frac{1}{2}}"
    gives "\\frac{1}{2}", "$\\boxed 5$" gives "5". None when there is none or it is unclosed."""
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    command = next(command for command in _BOX_COMMANDS if text.startswith(command, start))
    rest = start + len(command)
    after = text[rest:].lstrip(" ")
    if after.startswith("{"):
        opening = len(text) - len(after)
        closing = _closing_brace(text, opening)
        return None if closing is None else text[opening + 1:closing]
    if rest < len(text) and text[rest] == " ":
        # "\boxed 5": the harness reads up to the next "$"; a line end also ends it here
        return re.split(r"[$\n]", after, maxsplit=1)[0].strip() or None
    return None


def _level(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _LEVEL.fullmatch(str(value).strip()) if value is not None else None
    return int(match.group(1)) if match else None  # "Level ?" in a few MATH problems


def _example(record: dict) -> MathExample:
    """One jsonl record in any of the shapes of the module docstring; raises KeyError or
    ValueError when it is none of them."""
    if "problem" in record:
        problem, solution, answer = record["problem"], record.get("solution"), record.get("answer")
    elif "question" in record:  # MATH-500 as {question, answer = full solution}
        problem, solution, answer = record["question"], record["answer"], None
    else:
        raise KeyError("'problem' (or 'question')")
    if answer is None and isinstance(solution, str):
        answer = last_boxed_answer(solution)
    if not isinstance(problem, str) or not isinstance(answer, str):
        raise ValueError("no final answer: neither an 'answer' field nor a \\boxed{...} in the "
                         "solution")
    return MathExample(
        problem=problem,
        answer=answer,
        solution=solution,
        subject=record.get("subject", record.get("type")),
        level=_level(record.get("level")),
        unique_id=record.get("unique_id"),
    )


def load_math(path: str | Path) -> list[MathExample]:
    """The problems of one MATH or MATH-500 jsonl file, in file order; a bad line raises a
    ValueError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected a MATH or MATH-500 jsonl file; "
                                "lmlib.tasks.download_math / download_math500 write them")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                examples.append(_example(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}:{number}: not a MATH record ({type(error).__name__}: "
                                 f"{error}); expected problem/answer, problem/solution or "
                                 "question/answer fields") from error
    return examples


# The four fixed shots of lm_eval/tasks/minerva_math/utils.py `list_fewshot_samples()`, verbatim.
MINERVA_SHOTS = (
    MathExample(
        problem="Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}",
        answer="[2,5)",
        solution=(
            "The expressions inside each square root must be non-negative. Therefore, "
            "$x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator "
            "cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the "
            "expression is $\\boxed{[2,5)}$.\n"
            "Final Answer: The final answer is $[2,5)$. I hope it is correct."),
    ),
    MathExample(
        problem=("If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find "
                 "$\\det (\\mathbf{A} \\mathbf{B}).$"),
        answer="24",
        solution=(
            "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det "
            "\\mathbf{B}) = (2)(12) = \\boxed{24}.$\n"
            "Final Answer: The final answer is $24$. I hope it is correct."),
    ),
    MathExample(
        problem=("Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound "
                 "weights instead, how many times must Terrell lift them in order to lift the "
                 "same total weight?"),
        answer="16",
        solution=(
            "If Terrell lifts two 20-pound weights 12 times, he lifts a total of "
            "$2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights "
            "instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of "
            "weight.  Equating this to 480 pounds, we can solve for $n$:\n"
            "\\begin{align*}\n30n&=480\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n"
            "\\end{align*}\n"
            "Final Answer: The final answer is $16$. I hope it is correct."),
    ),
    MathExample(
        problem=("If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\n6y-9x &=b.\n"
                 "\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\n"
                 "find $\\frac{a}{b},$ assuming $b$ is nonzero."),
        answer="-\\frac{2}{3}",
        solution=(
            "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n"
            "$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n"
            "$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\n"
            "Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct."),
    ),
)


def _problem_text(example: MathExample) -> str:
    return f"Problem:\n{example.problem}\n\nSolution:"


def math_prompt(example: MathExample, shots: Sequence[MathExample] = MINERVA_SHOTS) -> str:
    """The harness's minerva_math context: each shot as "Problem:\\n...\\n\\nSolution: <its
    solution>\\n\\n", then "Problem:\\n<problem>\\n\\nSolution:". Four Minerva shots by default."""
    missing = [shot.problem[:40] for shot in shots if not shot.solution]
    if missing:
        raise ValueError(f"few-shot examples need a worked solution; these have none: {missing}")
    answered = "".join(f"{_problem_text(shot)} {shot.solution}\n\n" for shot in shots)
    return answered + _problem_text(example)
