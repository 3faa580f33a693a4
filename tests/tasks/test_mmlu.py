"""MMLU: the original CSVs load, and prompts match lm-evaluation-harness's default mmlu task."""

import re

import pytest

from lmlib.tasks import (
    MMLU_CONTINUATIONS,
    MMLU_SUBJECTS,
    MMLUExample,
    load_mmlu,
    mmlu_prompt,
    mmlu_shots,
)
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def mmlu_root():
    return shared_path("data/mmlu")


def test_subjects_are_the_57_of_the_release(mmlu_root):
    assert len(MMLU_SUBJECTS) == len(set(MMLU_SUBJECTS)) == 57
    assert list(MMLU_SUBJECTS) == sorted(MMLU_SUBJECTS)
    on_disk = sorted(path.name.removesuffix("_test.csv") for path in (mmlu_root / "test").iterdir())
    assert on_disk == list(MMLU_SUBJECTS)


def test_dev_has_five_examples_per_subject(mmlu_root):
    dev = load_mmlu(mmlu_root, "dev")
    assert len(dev) == 57 * 5
    for subject in MMLU_SUBJECTS:
        assert sum(example.subject == subject for example in dev) == 5


def test_split_sizes(mmlu_root):
    assert len(load_mmlu(mmlu_root, "val")) == 1531
    assert len(load_mmlu(mmlu_root, "test")) == 14042


def test_known_row(mmlu_root):
    first = load_mmlu(mmlu_root, "test", subjects=["anatomy"])[0]
    assert first == MMLUExample(
        subject="anatomy",
        question="A lesion causing compression of the facial nerve at the stylomastoid foramen "
                 "will cause ipsilateral",
        choices=("paralysis of the facial muscles.",
                 "paralysis of the facial muscles and loss of taste.",
                 "paralysis of the facial muscles, loss of taste and lacrimation.",
                 "paralysis of the facial muscles, loss of taste, lacrimation and decreased "
                 "salivation."),
        answer="A",
    )
    assert first.answer_index == 0


def test_quoted_multiline_csv_fields_parse(mmlu_root):
    # abstract_algebra dev row 2 is a quoted question with choices holding commas
    second = load_mmlu(mmlu_root, "dev", subjects=["abstract_algebra"])[1]
    assert second.choices == ("True, True", "False, False", "True, False", "False, True")
    assert second.answer == "B"


def test_prompt_matches_the_harness_template(mmlu_root):
    """One dev shot then the first test question, written by hand from
    lm_eval/tasks/mmlu/default/_default_template_yaml and the subject's description."""
    dev = load_mmlu(mmlu_root, "dev", subjects=["abstract_algebra"])
    test = load_mmlu(mmlu_root, "test", subjects=["abstract_algebra"])
    expected = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\n"
        "A. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert mmlu_prompt(test[0], mmlu_shots(dev, "abstract_algebra", k=1)) == expected
    assert MMLU_CONTINUATIONS == (" A", " B", " C", " D")


def test_five_shot_prompt_uses_first_dev_rows_in_order(mmlu_root):
    dev = load_mmlu(mmlu_root, "dev")
    question = load_mmlu(mmlu_root, "test", subjects=["high_school_us_history"])[0]
    prompt = mmlu_prompt(question, mmlu_shots(dev, question.subject))
    assert prompt.startswith("The following are multiple choice questions (with answers) about "
                             "high school us history.\n\n")
    assert prompt.count("\nAnswer: ") == 5
    assert prompt.endswith("\nD. " + question.choices[3] + "\nAnswer:")
    shots = [example for example in dev if example.subject == question.subject]
    assert prompt.index(shots[0].question.strip()) < prompt.index(shots[4].question.strip())


def test_zero_shot_strips_the_question_but_not_the_choices():
    example = MMLUExample("virology", "  What?\n", (" a", "b ", "c", "d"), "C")
    assert mmlu_prompt(example) == (
        "The following are multiple choice questions (with answers) about virology.\n\n"
        "What?\nA.  a\nB. b \nC. c\nD. d\nAnswer:")


def test_shots_from_another_subject_are_refused():
    question = MMLUExample("virology", "q", ("a", "b", "c", "d"), "A")
    shot = MMLUExample("anatomy", "q", ("a", "b", "c", "d"), "A")
    with pytest.raises(ValueError, match="anatomy"):
        mmlu_prompt(question, [shot])


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "test"))):
        load_mmlu(tmp_path)


def test_missing_subject_file_names_the_file(tmp_path):
    (tmp_path / "dev").mkdir()
    with pytest.raises(FileNotFoundError, match="anatomy_dev.csv"):
        load_mmlu(tmp_path, "dev", subjects=["anatomy"])


@pytest.mark.parametrize("bad_row, message", [
    ("only,four,columns,here\n", "expected 6 columns"),
    ("q,a,b,c,d,E\n", "answer must be one of"),
])
def test_bad_row_names_file_and_line(tmp_path, bad_row, message):
    (tmp_path / "dev").mkdir()
    path = tmp_path / "dev" / "anatomy_dev.csv"
    path.write_text("q,a,b,c,d,A\n" + bad_row)
    with pytest.raises(ValueError, match=f"anatomy_dev.csv:2: {message}"):
        load_mmlu(tmp_path, "dev", subjects=["anatomy"])


def test_unknown_split_and_subject_are_refused(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_mmlu(tmp_path, "validation")
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match="astrology"):
        load_mmlu(tmp_path, "test", subjects=["astrology"])
