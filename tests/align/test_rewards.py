"""The three verifiable rewards on responses written by hand."""

import pytest

from lmlib.align.rewards import arithmetic_reward_fn, boxed_reward_fn, r1_zero_reward_fn


def rewards(format_reward: float, answer_reward: float, reward: float) -> dict[str, float]:
    return {"format_reward": format_reward, "answer_reward": answer_reward, "reward": reward}


RIGHT, WRONG_ANSWER, UNFORMATTED = rewards(1, 1, 1), rewards(1, 0, 0), rewards(0, 0, 0)


@pytest.mark.parametrize("response, ground_truth, expected", [
    ("<think>2 + 2 is 4</think> <answer>4</answer>", "4", RIGHT),
    ("<think>2 + 2 is 5</think> <answer>5</answer>", "4", WRONG_ANSWER),
    ("<think>halve it</think> <answer>\\boxed{\\frac{1}{2}}</answer>", "0.5", RIGHT),
    ("<think>x</think> <answer> $\\frac12$ </answer> trailing", "\\frac{1}{2}", RIGHT),
    ("<think>x</think> <answer>\\boxed{4</answer>", "4", WRONG_ANSWER),  # unclosed box
    ("<think>2 + 2 is 4</think><answer>4</answer>", "4", UNFORMATTED),  # no space
    ("<think>2 + 2 is 4</think> <answer>4", "4", UNFORMATTED),  # never closed
    ("The answer is 4.", "4", UNFORMATTED),
])
def test_r1_zero_reward(response, ground_truth, expected):
    assert r1_zero_reward_fn(response, ground_truth) == expected


@pytest.mark.parametrize("response, ground_truth, expected", [
    ("So the total is \\boxed{42}.", "42", RIGHT),
    ("So the total is \\boxed{41}.", "42", WRONG_ANSWER),
    ("First \\boxed{1}, then \\boxed{\\dfrac{3}{4}}", "\\frac34", RIGHT),  # the last box
    ("She pays 10 * 100 = 1000.\n#### 1,000", "1000", RIGHT),
    ("\\boxed{72}", "Natalia sold 48/2 = 24 clips in May.\n#### 72", RIGHT),  # a whole solution
    ("The answer is 42.", "42", UNFORMATTED),
])
def test_boxed_reward(response, ground_truth, expected):
    assert boxed_reward_fn(response, ground_truth) == expected


@pytest.mark.parametrize("response, expected", [
    ("579\n", RIGHT),
    ("579", RIGHT),
    ("579\n12+3=15\n", RIGHT),  # what follows the newline is not graded
    (" 5 79\n", RIGHT),  # spaces ignored, as check_arithmetic ignores them
    ("5790\n", WRONG_ANSWER),
    ("57\n", WRONG_ANSWER),
    ("579abc", UNFORMATTED),
    ("the sum is 579\n", UNFORMATTED),  # check_arithmetic would accept it; the reward wants it first
    ("\n579", UNFORMATTED),
])
def test_arithmetic_reward(response, expected):
    assert arithmetic_reward_fn(response, "579") == expected


def test_arithmetic_reward_with_a_negative_answer():
    assert arithmetic_reward_fn("-12\n", "-12") == RIGHT
