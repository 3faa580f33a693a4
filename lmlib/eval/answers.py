"""Reading a model's final answer out of its output, and deciding whether it is the right one.

Notable:
- MMLU (`parse_mmlu_response`): the option letter the output commits to, or None. A letter
  counts when it is the whole output ("B", "(B)", "B."), opens it ("B) Paris", "B. Paris"),
  follows an answer phrase ("The answer is B", "Answer: (B)", "the correct option is B") or is
  boxed (\\boxed{B}); one distinct letter is the answer, two different ones are ambiguous (None).
  With no letter, an output that states exactly one option's text verbatim (case-insensitive,
  whole words; an option found only inside a longer option's text does not count) commits to
  that option. Anything else ("I don't know") is None;
- GSM8K: both extractions of lm-evaluation-harness's gsm8k.yaml, "strict-match" (the first
  `#### N`) and "flexible-extract" (the last number-like run, group_select -1), and its
  exact_match (ignore_case, regexes_to_ignore "," "\\$" "(?s).*#### " "\\.$", in that order),
  so our scores line up with the harness's; `parse_gsm8k_response` is the plain last number
  (commas and "$" dropped, never a trailing ".");
- MATH / MATH-500: the last \\boxed{...} (or \\fbox{...}, or `\\boxed 5`) with nested braces;
  two normalisations, Hendrycks et al.'s `strip_string` (the MATH paper's grader, also the
  harness's hendrycks_math) and Minerva's `normalize_final_answer` (Lewkowycz et al. 2022,
  appendix D; the harness's minerva_math); `math_answers_equal` is true when the answers agree
  after either, or when both read as numbers, expressions in single-letter variables,
  tuples, intervals or unions of intervals that sympy finds equal (lmlib.eval.latex_values, our
  own small reader; what it cannot read is left to the string comparisons). It never raises;
- our additions to the graders, each because it fixes a false verdict: a repeating decimal
  (0.\\overline{3}) is rewritten as its exact fraction before either normalisation (Hendrycks
  would call it unequal to \\frac{1}{3}, Minerva strips \\overline and calls it equal to 0.3);
  a multiple-choice answer matches by letter whatever its wrapping (\\text{(C)}, (C), C).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, Protocol

from lmlib.eval.latex_values import LatexSequence, latex_values_equal, read_latex_value
from lmlib.tasks.competition_math import last_boxed_answer

if TYPE_CHECKING:
    import sympy

OptionLetter = Literal["A", "B", "C", "D"]
OPTION_LETTERS: tuple[OptionLetter, ...] = ("A", "B", "C", "D")


class MultipleChoiceExample(Protocol):
    """What `parse_mmlu_response` reads of an example (lmlib.tasks.mmlu.MMLUExample has it)."""

    @property
    def choices(self) -> Sequence[str]: ...


# --------------------------------------------------------------------------------------------
# MMLU

_LETTER = r"\(?([A-D])\)?(?![A-Za-z0-9])"
# Letters must be capitals: "the answer is a prime" commits to nothing.
_LETTER_COMMITMENTS = (
    re.compile(r"^\s*\(?([A-Da-d])\)?\s*[.:)]?\s*$"),  # the whole output: "B", "(b)", "B."
    re.compile(r"^\s*(?:\(([A-D])\)|([A-D])[.):])(?:\s|$)"),  # opens it: "B) Paris", "(B) ..."
    re.compile(r"(?i:\banswer)(?:\s+(?i:is|would\s+be|will\s+be|must\s+be|should\s+be)\s*:?"
               r"|\s*[:\-=])\s*(?:(?i:option|choice)\s*)?" + _LETTER),
    re.compile(r"(?i:\b(?:correct|right|best)\s+(?:option|choice))(?:\s+(?i:is)|\s*:)\s*"
               + _LETTER),
    re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-D])\)?\s*\}?\s*\}"),
)


def parse_mmlu_response(example: MultipleChoiceExample,
                        model_output: str) -> OptionLetter | None:
    """The option letter `model_output` commits to, None when it commits to none or to two.

    A stated letter wins over option text; the text of an option counts only when no letter is
    stated and exactly one option's text appears (see the module docstring for the rule).
    """
    # Markdown emphasis ("**Answer: B**") and code marks carry no meaning here.
    text = model_output.replace("*", "").replace("`", "").strip()
    if not text:
        return None
    letters = {
        letter.upper()
        for pattern in _LETTER_COMMITMENTS
        for match in pattern.finditer(text)
        for letter in match.groups() if letter
    }
    if len(letters) == 1:
        return letters.pop()
    if letters:
        return None
    stated = _options_stated_verbatim(example.choices, text)
    return OPTION_LETTERS[stated[0]] if len(stated) == 1 else None


def _options_stated_verbatim(choices: Sequence[str], text: str) -> list[int]:
    """Indices of the options whose text appears in `text` as whole words, not only inside the
    appearance of a longer option ("14" does not state "4")."""
    haystack = " ".join(text.casefold().split())
    spans: dict[int, list[tuple[int, int]]] = {}
    for index, choice in enumerate(choices[: len(OPTION_LETTERS)]):
        needle = " ".join(str(choice).casefold().split()).rstrip(".")
        if not needle:
            continue
        pattern = re.compile(r"(?<!\w)" + re.escape(needle) + r"(?!\w)")
        found = [match.span() for match in pattern.finditer(haystack)]
        if found:
            spans[index] = found
    stated = []
    for index, own in spans.items():
        others = [span for other, found in spans.items() if other != index for span in found]
        inside_another = all(
            any(start <= s and e <= end and (end - start) > (e - s) for start, end in others)
            for s, e in own)
        if not inside_another:
            stated.append(index)
    return stated


# --------------------------------------------------------------------------------------------
# GSM8K

# lm-evaluation-harness gsm8k.yaml (metadata version 3.0), filter_list and metric_list.
GSM8K_STRICT_PATTERN = re.compile(r"#### (\-?[0-9\.\,]+)")
GSM8K_FLEXIBLE_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
GSM8K_IGNORED_PATTERNS = (",", r"\$", r"(?s).*#### ", r"\.$")

# A number as a person writes one: thousands groups or plain digits, an optional decimal part,
# an optional "$"; a "-" only as a sign (not the minus of "5-3").
_NUMBER = re.compile(
    r"(?:(?<![\w)])-)?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?:(?<![\w)])-)?\$?\.\d+")


def gsm8k_strict_answer(text: str) -> str | None:
    """The harness's "strict-match": the number after the first "#### ", None when there is
    none (the harness writes "[invalid]", which matches no reference)."""
    match = GSM8K_STRICT_PATTERN.search(text)
    return match.group(1).strip() if match else None


def gsm8k_flexible_answer(text: str) -> str | None:
    """The harness's "flexible-extract": the last run the pattern finds, as it finds it (it may
    keep a "$", commas or a trailing "." that `gsm8k_is_correct` then ignores)."""
    matches = GSM8K_FLEXIBLE_PATTERN.findall(text)
    if not matches:
        return None
    # findall yields (group 1, group 2) pairs; exactly one group of the last pair matched
    return next(group for group in matches[-1] if group).strip()


def gsm8k_normalize(answer: str) -> str:
    """The harness's exact_match normalisation: the ignored patterns removed in order (the third
    drops a reference solution up to its "#### "), then lower case."""
    for pattern in GSM8K_IGNORED_PATTERNS:
        answer = re.sub(pattern, "", answer)
    return answer.lower()


def gsm8k_is_correct(prediction: str | None, reference: str) -> bool:
    """The harness's exact_match of an extracted answer against a reference, which may be the
    bare number or the whole solution ending in "#### N"."""
    if prediction is None:
        return False
    return gsm8k_normalize(prediction) == gsm8k_normalize(reference)


def parse_gsm8k_response(model_output: str) -> str | None:
    """The last number in `model_output`, without commas or "$" ("$1,234.50" gives "1234.50");
    None when it has no number."""
    numbers = _NUMBER.findall(model_output)
    if not numbers:
        return None
    return numbers[-1].replace(",", "").replace("$", "")


# --------------------------------------------------------------------------------------------
# MATH: extraction and the two graders' normalisations


def extract_boxed_answer(text: str) -> str | None:
    """The answer a model boxed last (lmlib.tasks' `last_boxed_answer`, the one brace matcher),
    stripped; None when there is none, its braces do not close, or it is empty."""
    answer = last_boxed_answer(text)
    return (answer.strip() or None) if answer is not None else None


def hendrycks_math_normalize(answer: str) -> str:
    """Hendrycks et al.'s `strip_string` (MATH, modeling/math_equivalence.py), step for step.

    Where the original raises (a second "\\text{ ", a bare "\\sqrt" or "\\frac" at the end) and its
    grader falls back to comparing raw strings, this keeps the text before the first "\\text{ "
    and leaves the bare command as it is.
    """
    s = answer.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    s = s.split("\\text{ ")[0]  # "\text{ " only ever introduces units, on the right
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]  # "k = 5" -> " 5"
    s = _fix_sqrt(s).replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def _fix_sqrt(s: str) -> str:
    """\\sqrt3 -> \\sqrt{3} (one character; \\sqrt[3]{x} is left alone, where the original
    braces the "[" on both sides alike)."""
    return re.sub(r"\\sqrt([^{\[])", r"\\sqrt{\1}", s)


def _fix_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{72} -> \\frac{1}{72}, \\frac1b -> \\frac{1}{b}."""
    pieces = s.split("\\frac")
    fixed = [pieces[0]]
    for piece in pieces[1:]:
        if piece.startswith("{"):
            fixed.append(piece)
        elif len(piece) < 2:
            return s  # nothing to take the two arguments from; the original gives up too
        elif piece[1] == "{":
            fixed.append("{" + piece[0] + "}" + piece[1:])
        else:
            fixed.append("{" + piece[0] + "}{" + piece[1] + "}" + piece[2:])
    return "\\frac".join(fixed)


def _fix_a_slash_b(s: str) -> str:
    """"3/4" -> \\frac{3}{4}, only when the whole answer is two integers around one slash."""
    match = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    if not match or s != f"{int(match[1])}/{int(match[2])}":  # "03/4" stays as it is
        return s
    return f"\\frac{{{int(match[1])}}}{{{int(match[2])}}}"


# Lewkowycz et al. 2022 (Minerva), appendix D, as lm-evaluation-harness minerva_math has them.
MINERVA_SUBSTITUTIONS = (
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""),
    ("mbox", "text"), (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
)
MINERVA_REMOVED_EXPRESSIONS = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units",
    "\\ldots", "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm",
    "pounds", "meters", "meals", "edges", "students", "childrentickets", "multiples",
    "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}",
    "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"', "\\dots",
)


def minerva_math_normalize(answer: str) -> str:
    """Minerva's `normalize_final_answer`: the right of the last "=", the substitutions and
    removals above, the inside of the first $...$, \\text{}, \\textbf{}, \\overline{} and
    \\boxed{} unwrapped, \\fracab and \\sqrta braced, "$" dropped, commas of a plain integer
    dropped. Its rules are blunt and kept as published: "an " goes from "tan x", "ft" from
    "\\left", an equation keeps only its right side ("11x + 6y = 0" equals "0") and a list of
    integers loses its commas ("1,2" equals "12"); `math_answers_equal` inherits these."""
    s = answer.split("=")[-1]
    for before, after in MINERVA_SUBSTITUTIONS:
        s = s.replace(before, after)
    for expression in MINERVA_REMOVED_EXPRESSIONS:
        s = s.replace(expression, "")
    s = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", r"$\3$", s)
    s = re.sub(r"(\\text\{)(.*?)(\})", r"\2", s)
    s = re.sub(r"(\\textbf\{)(.*?)(\})", r"\2", s)
    s = re.sub(r"(\\overline\{)(.*?)(\})", r"\2", s)
    s = re.sub(r"(\\boxed\{)(.*)(\})", r"\2", s)
    s = re.sub(r"(frac)([^{])(.)", r"frac{\2}{\3}", s)
    s = re.sub(r"(sqrt)([^{])", r"sqrt{\2}", s)
    s = s.replace("$", "")
    if s.replace(",", "").isdigit():
        s = s.replace(",", "")
    return s


_REPEATING_DECIMAL = re.compile(r"(\d*)\.(\d*)\\overline\{(\d+)\}")


def _repeating_decimals_as_fractions(answer: str) -> str:
    """0.\\overline{3} -> \\frac{1}{3}, 1.2\\overline{45} -> \\frac{137}{110}, exactly."""

    def as_fraction(match: re.Match[str]) -> str:
        whole, fixed, repeating = match.groups()
        value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
        value += Fraction(int(repeating), (10 ** len(repeating) - 1) * 10 ** len(fixed))
        return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"

    return _REPEATING_DECIMAL.sub(as_fraction, answer)


_CHOICE_LETTER = re.compile(r"\(?([A-E])\)?")


def _choice_letter(answer: str) -> str | None:
    """"C" for \\text{(C)}, \\textbf{(C)}, (C) and C; None for anything else."""
    inner = re.sub(r"\\(?:text|textbf|mathrm)\{(.*)\}", r"\1", answer.strip().strip("$"))
    match = _CHOICE_LETTER.fullmatch(inner.strip())
    return match.group(1) if match else None


def math_answers_equal(prediction: str | None, reference: str | None) -> bool:
    """Whether two final answers (the insides of \\boxed{}) are the same mathematically: equal
    after Hendrycks' or Minerva's normalisation, the same choice letter, or equal as values
    (numbers, expressions, tuples, intervals) to sympy. Never raises; None equals nothing."""
    if prediction is None or reference is None or not prediction.strip():
        return False
    prediction = _repeating_decimals_as_fractions(prediction)
    reference = _repeating_decimals_as_fractions(reference)
    if hendrycks_math_normalize(prediction) == hendrycks_math_normalize(reference):
        return True
    if minerva_math_normalize(prediction) == minerva_math_normalize(reference):
        return True
    letter = _choice_letter(prediction)
    if letter is not None:
        return letter == _choice_letter(reference)
    predicted_value, reference_value = _math_value(prediction), _math_value(reference)
    if predicted_value is None or reference_value is None:
        return False
    return latex_values_equal(predicted_value, reference_value)


def _math_value(answer: str) -> sympy.Expr | LatexSequence | None:
    """The answer as a value, read after Hendrycks' normalisation (which drops units and "x="),
    else as written (the normalisation mangles a few: "\\frac \\pi4" loses its \\pi)."""
    value = read_latex_value(hendrycks_math_normalize(answer))
    return value if value is not None else read_latex_value(answer)
