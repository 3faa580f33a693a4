"""MATH and MATH-500: every published jsonl shape loads, \\boxed answers come out whole, and
prompts match lm-evaluation-harness's minerva_math."""

import json

import pytest

from lmlib.tasks import (
    MATH_STOP_SEQUENCES,
    MINERVA_SHOTS,
    MathExample,
    last_boxed_answer,
    load_math,
    math_prompt,
)
from tests.conftest import shared_path


@pytest.mark.parametrize("text, answer", [
    ("so $x = \\boxed{5}$.", "5"),
    ("$\\boxed{\\frac{1}{\\sqrt{2}}}$", "\\frac{1}{\\sqrt{2}}"),
    ("$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("first \\boxed{1}, then \\boxed{2}", "2"),
    ("$\\boxed{\\{1,2\\}}$", "\\{1,2\\}"),  # escaped braces are not groups
    ("$\\boxed{\\text{(C)}}$", "\\text{(C)}"),
    ("\\fbox{7} is it", "7"),
    ("\\boxed{1} and later \\fbox{x^{2}}", "x^{2}"),
    ("$\\boxed 5$.", "5"),
    ("the answer is \\boxed {12}", "12"),
    ("no box here", None),
    ("$\\boxed{\\frac{1}{2}$", None),  # never closed
])
def test_last_boxed_answer(text, answer):
    assert last_boxed_answer(text) == answer


@pytest.fixture(scope="module")
def math_dir():
    return shared_path("data/math")


def test_math_splits_load(math_dir):
    validation = load_math(math_dir / "MATH" / "validation.jsonl")
    assert len(validation) == 5000
    assert validation[0] == MathExample(
        problem="What is $10.0000198\\cdot 5.9999985401\\cdot 6.9999852$ to the nearest whole "
                "number?",
        answer="420", solution=None, subject="Prealgebra", level=3,
        unique_id="test/prealgebra/126.json")
    assert validation[1].answer == "\\dfrac{1}{9}"
    assert {example.level for example in validation} == {1, 2, 3, 4, 5}
    train = load_math(math_dir / "MATH" / "train.jsonl")
    assert len(train) == 7500
    assert [number for number, example in enumerate(train, start=1) if not example.answer] == [
        7037, 7437]  # the copy's two empty answers load as they are


def test_math500_question_answer_shape_loads(math_dir):
    math500 = load_math(math_dir / "math500" / "test.jsonl")
    assert len(math500) == 500
    first = math500[0]
    assert first.problem.startswith("Convert the point $(0,3)$ in rectangular coordinates")
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.solution.startswith("We have that $r = \\sqrt{0^2 + 3^2} = 3.$")
    assert first.subject is first.level is first.unique_id is None


def test_math500_boxed_answers_agree_with_both_other_sources(math_dir):
    """This copy also states each answer after "The answer is: ", and MATH's test split holds
    every MATH-500 problem with its short answer: three sources, one answer."""
    math500 = load_math(math_dir / "math500" / "test.jsonl")
    by_problem = {example.problem: example.answer
                  for example in load_math(math_dir / "MATH" / "validation.jsonl")}
    for example in math500:
        assert example.answer == example.solution.rsplit("The answer is: ", 1)[1].strip()
        assert example.answer == by_problem[example.problem]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_huggingface_math500_shape_loads(tmp_path):
    record = {"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$.", "answer": "2",
              "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"}
    [example] = load_math(_write_jsonl(tmp_path / "test.jsonl", [record]))
    assert example == MathExample("What is $1+1$?", "2", "It is $\\boxed{2}$.", "Prealgebra", 1,
                                  "test/prealgebra/1.json")


def test_original_hendrycks_shape_loads(tmp_path):
    record = {"problem": "Find $x$.", "level": "Level ?", "type": "Algebra",
              "solution": "So $x=\\boxed{\\frac{3}{4}}$."}
    [example] = load_math(_write_jsonl(tmp_path / "1.jsonl", [record]))
    assert (example.answer, example.subject, example.level) == ("\\frac{3}{4}", "Algebra", None)


@pytest.mark.parametrize("record", [
    {"text": "no problem field"},
    {"problem": "p", "solution": "no box"},
    {"question": "q", "answer": "no box either"},
])
def test_bad_line_names_file_and_line(tmp_path, record):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "p", "answer": "1"}, record])
    with pytest.raises(ValueError, match="bad.jsonl:2: not a MATH record"):
        load_math(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_math(tmp_path / "nope.jsonl")


def test_minerva_shots_are_the_harness_four():
    assert len(MINERVA_SHOTS) == 4
    assert [shot.answer for shot in MINERVA_SHOTS] == ["[2,5)", "24", "16", "-\\frac{2}{3}"]
    for shot in MINERVA_SHOTS:
        assert last_boxed_answer(shot.solution) == shot.answer
        assert shot.solution.endswith(f"The final answer is ${shot.answer}$. I hope it is correct.")
    # quirks of lm_eval/tasks/minerva_math/utils.py, kept: a stray "}" and "\" + newline
    assert MINERVA_SHOTS[0].problem.endswith("$.}")
    assert "30n&=480\\\n\\Rightarrow" in MINERVA_SHOTS[2].solution


def test_prompt_matches_the_harness_template(math_dir):
    """The second Minerva shot then the first MATH test problem, by hand from
    lm_eval/tasks/minerva_math/utils.py doc_to_text and the yaml's target delimiter " "."""
    question = load_math(math_dir / "MATH" / "validation.jsonl")[0]
    expected = (
        "Problem:\n"
        "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find "
        "$\\det (\\mathbf{A} \\mathbf{B}).$\n\n"
        "Solution: We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det "
        "\\mathbf{B}) = (2)(12) = \\boxed{24}.$\n"
        "Final Answer: The final answer is $24$. I hope it is correct.\n\n"
        "Problem:\n"
        "What is $10.0000198\\cdot 5.9999985401\\cdot 6.9999852$ to the nearest whole number?\n\n"
        "Solution:"
    )
    assert math_prompt(question, [MINERVA_SHOTS[1]]) == expected
    assert MATH_STOP_SEQUENCES == ("Problem:",)


def test_default_prompt_has_the_four_shots_in_order():
    question = MathExample("What is $2+2$?", "4")
    prompt = math_prompt(question)
    assert prompt.count("Problem:\n") == 5 and prompt.count("\n\nSolution: ") == 4
    assert prompt.startswith("Problem:\nFind the domain of the expression  $")
    assert prompt.endswith("I hope it is correct.\n\nProblem:\nWhat is $2+2$?\n\nSolution:")
    assert math_prompt(question, []) == "Problem:\nWhat is $2+2$?\n\nSolution:"


def test_shots_need_a_solution():
    with pytest.raises(ValueError, match="worked solution"):
        math_prompt(MathExample("q", "1"), [MathExample("shot", "2")])
