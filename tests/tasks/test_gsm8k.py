"""GSM8K: OpenAI's jsonl loads, answers parse, prompts match lm-evaluation-harness's gsm8k."""

import json

import pytest

from lmlib.tasks import GSM8K_STOP_SEQUENCES, GSM8KExample, gsm8k_prompt, load_gsm8k
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def gsm8k_root():
    return shared_path("data/math/gsm8k")


def test_split_sizes(gsm8k_root):
    assert len(load_gsm8k(gsm8k_root, "test")) == 1319
    assert len(load_gsm8k(gsm8k_root, "train")) == 7473


def test_a_file_path_loads_too(gsm8k_root):
    assert load_gsm8k(gsm8k_root / "test.jsonl") == load_gsm8k(gsm8k_root, "test")


def test_known_row(gsm8k_root):
    first = load_gsm8k(gsm8k_root, "test")[0]
    assert first.question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first.solution.endswith("every day at the farmer\u2019s market.\n#### 18")
    assert first.answer == "18"


def test_answers_lose_commas_and_keep_signs(gsm8k_root):
    test = load_gsm8k(gsm8k_root, "test")
    assert test[146].solution.endswith("#### 2,125") and test[146].answer == "2125"
    assert test[489].answer == "-10"
    assert all(example.answer.lstrip("-").replace(".", "").isdigit() for example in test)


def test_prompt_matches_the_harness_template(gsm8k_root):
    """One train shot then the first test question, by hand from
    lm_eval/tasks/gsm8k/gsm8k.yaml: "Question: {{question}}\\nAnswer:", target " {{answer}}"."""
    shot = load_gsm8k(gsm8k_root, "train")[0]
    question = load_gsm8k(gsm8k_root, "test")[0]
    expected = (
        "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as "
        "many clips in May. How many clips did Natalia sell altogether in April and May?\n"
        "Answer: Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
        "#### 72\n\n"
        "Question: Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every "
        "morning and bakes muffins for her friends every day with four. She sells the remainder "
        "at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she "
        "make every day at the farmers' market?\n"
        "Answer:"
    )
    assert gsm8k_prompt(question, [shot]) == expected
    assert GSM8K_STOP_SEQUENCES == ("Question:", "</s>", "<|im_end|>")


def test_zero_shot_prompt():
    example = GSM8KExample("What is 2+2?", "2+2=4\n#### 4", "4")
    assert gsm8k_prompt(example) == "Question: What is 2+2?\nAnswer:"


def test_missing_split_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        load_gsm8k(tmp_path, "train")


@pytest.mark.parametrize("line, message", [
    ("not json", "expected a JSON object"),
    (json.dumps({"question": "q"}), "expected a JSON object"),
    (json.dumps({"question": "q", "answer": "no mark"}), "the answer does not end in '#### "),
    (json.dumps({"question": "q", "answer": "#### many"}), "the answer does not end in '#### "),
])
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"test.jsonl:2: {message}"):
        load_gsm8k(path)
