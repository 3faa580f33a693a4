"""The synthetic arithmetic task: deterministic, disjoint splits, correct answers, exact checker."""

import pytest

from lmlib.tasks import (
    ArithmeticConfig,
    ArithmeticExample,
    arithmetic_example,
    check_arithmetic,
    make_arithmetic,
)


def _pairs(examples):
    return {frozenset((example.a, example.b)) for example in examples}


def test_same_seed_same_examples():
    config = ArithmeticConfig(operations=("+", "-", "*"), train_size=500, val_size=50,
                              test_size=50, seed=7)
    assert make_arithmetic(config) == make_arithmetic(config)
    other = make_arithmetic(ArithmeticConfig(operations=("+", "-", "*"), train_size=500,
                                             val_size=50, test_size=50, seed=8))
    assert other != make_arithmetic(config)


def test_stream_is_pinned():
    """random.Random(seed).random() is the sequence Python keeps across versions and machines:
    if this changes, every split made so far would silently change with it."""
    splits = make_arithmetic(ArithmeticConfig(seed=0))
    assert [example.prompt for example in splits["train"][:3]] == [
        "844+757=", "258+420=", "404+511="]
    assert splits["test"][0].prompt == "75+214="


def test_sizes_and_answers():
    splits = make_arithmetic(ArithmeticConfig(digits=3, operations=("+", "-", "*"),
                                              train_size=2000, val_size=200, test_size=300))
    assert {name: len(examples) for name, examples in splits.items()} == {
        "train": 2000, "val": 200, "test": 300}
    expected = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for examples in splits.values():
        for example in examples:
            assert 0 <= example.a < 1000 and 0 <= example.b < 1000
            assert example.prompt == f"{example.a}{example.op}{example.b}="
            assert int(example.answer) == expected[example.op](example.a, example.b)
            assert example.op != "-" or example.a >= example.b  # never a negative result
    assert {example.op for example in splits["train"]} == {"+", "-", "*"}


@pytest.mark.parametrize("config", [
    ArithmeticConfig(digits=3, operations=("+", "*"), train_size=5000, val_size=500,
                     test_size=500),
    # dense: 45 of the 55 one-digit pairs, drawn by the shuffle rather than by rejection
    ArithmeticConfig(digits=1, operations=("+", "-"), train_size=35, val_size=5, test_size=5),
])
def test_splits_share_no_operand_pair(config):
    splits = make_arithmetic(config)
    train, val, test = (_pairs(splits[name]) for name in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    # no pair twice within a split either, in either order
    assert len(train) == config.train_size and len(test) == config.test_size


def test_every_one_digit_pair_can_be_asked_for():
    splits = make_arithmetic(ArithmeticConfig(digits=1, train_size=45, val_size=5, test_size=5))
    assert len(set().union(*(_pairs(examples) for examples in splits.values()))) == 55


@pytest.mark.parametrize("fields, message", [
    ({"digits": 1, "train_size": 50, "val_size": 5, "test_size": 5}, "only 55 distinct pairs"),
    ({"operations": ("/",)}, "operations"),
    ({"operations": ()}, "operations"),
    ({"digits": 0}, "digits"),
    ({"digits": 10}, "digits"),
    ({"val_size": 0}, "val_size"),
])
def test_bad_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ArithmeticConfig(**fields)


def test_training_text_is_prompt_answer_newline():
    example = arithmetic_example(123, 456, "+")
    assert example == ArithmeticExample(prompt="123+456=", answer="579", a=123, b=456, op="+")
    assert example.text == "123+456=579\n"


@pytest.mark.parametrize("output, right", [
    ("579", True),
    ("579\n123+1=124", True),
    (" 579", True),
    ("5 7 9\n", True),
    ("the answer is 579.", True),
    ("57", False),
    ("5790", False),
    ("-579", False),
    ("578\n579", False),
    ("", False),
    ("five hundred", False),
])
def test_checker_reads_the_first_integer(output, right):
    assert check_arithmetic(arithmetic_example(123, 456, "+"), output) is right


def test_checker_with_multiplication_and_subtraction():
    assert check_arithmetic(arithmetic_example(999, 999, "*"), "998001\n")
    assert check_arithmetic(arithmetic_example(7, 7, "-"), "0")
    assert not check_arithmetic(arithmetic_example(7, 7, "-"), "-")
