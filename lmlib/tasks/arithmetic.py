"""A synthetic task the project generates itself: multi-digit arithmetic with an exact checker.

Notable:
- the format is "123+456=" with the answer "579" and a newline after it (`example.text` is the
  whole training line). Why this shape: a tiny model must learn the digits and nothing else.
  No spaces or words, so a character-level model sees one digit per token and a GPT-2 style
  BPE sees each number as its own pre-token (the pattern splits digits from "+", "=" and "\\n");
  "=" marks where the answer begins, so a prompt ends exactly there; the newline marks where it
  ends, so generation can stop at a fixed token and the checker knows the answer is complete;
- operands are uniform in [0, 10**digits); "-" puts the larger operand first, so results are
  never negative (a sign the model would have to learn for half the examples); "+" and "*"
  show the pair in either order;
- train, validation and test are disjoint: an unordered operand pair {a, b} appears in at most
  one example of one split, whatever the operation, so 456+123 in test never has 123+456 or
  123*456 in train;
- deterministic from the seed on any machine: every draw is `random.Random(seed).random()`,
  the one method whose sequence Python promises to keep across versions (randrange, sample
  and shuffle have changed before); no numpy, no global state;
- `check_arithmetic` is exact: the first integer in the output, with spaces removed, must equal
  the answer, so "579\\n..." is right, "57" and "5790" are wrong.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import ClassVar

from lmlib.stage import check_positive

OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
ANSWER_END = "\n"
_FIRST_INTEGER = re.compile(r"-?\d+")


@dataclass
class ArithmeticConfig:
    digits: int = 3  # operands have up to this many digits
    operations: tuple[str, ...] = ("+",)
    train_size: int = 10_000
    val_size: int = 1_000
    test_size: int = 1_000
    seed: int = 0

    MAX_DIGITS: ClassVar[int] = 9  # 53-bit random() draws stay uniform enough below 10**9

    def __post_init__(self):
        self.operations = tuple(self.operations)
        check_positive(self, "digits", "train_size", "val_size", "test_size")
        if self.digits > self.MAX_DIGITS:
            raise ValueError(f"ArithmeticConfig.digits must be <= {self.MAX_DIGITS}, got "
                             f"{self.digits}")
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if not self.operations or unknown or len(set(self.operations)) != len(self.operations):
            raise ValueError(f"ArithmeticConfig.operations must be distinct ones of "
                             f"{tuple(OPERATIONS)}, got {self.operations}")
        if self.total > self.distinct_pairs:
            raise ValueError(
                f"ArithmeticConfig asks for {self.total} examples but {self.digits}-digit "
                f"operands make only {self.distinct_pairs} distinct pairs; raise digits or "
                "lower the split sizes")

    @classmethod
    def sized(cls, digits: int, operations: tuple[str, ...] = ("+",), seed: int = 0
              ) -> ArithmeticConfig:
        """The default split sizes, shrunk to 80/10/10% of the distinct pairs when the digits
        leave fewer (2 digits: 5,050 pairs)."""
        pairs = (10 ** digits) * (10 ** digits + 1) // 2
        return cls(digits=digits, operations=tuple(operations), seed=seed,
                   train_size=min(cls.train_size, pairs * 8 // 10),
                   val_size=min(cls.val_size, pairs // 10),
                   test_size=min(cls.test_size, pairs // 10))

    @property
    def total(self) -> int:
        return self.train_size + self.val_size + self.test_size

    @property
    def distinct_pairs(self) -> int:
        values = 10 ** self.digits
        return values * (values + 1) // 2  # unordered, a == b allowed


@dataclass(frozen=True)
class ArithmeticExample:
    prompt: str  # "123+456="
    answer: str  # "579"
    a: int
    b: int
    op: str

    @property
    def text(self) -> str:
        """The training line: prompt, answer, newline."""
        return f"{self.prompt}{self.answer}{ANSWER_END}"


def arithmetic_example(a: int, b: int, op: str) -> ArithmeticExample:
    return ArithmeticExample(prompt=f"{a}{op}{b}=", answer=str(OPERATIONS[op](a, b)), a=a, b=b,
                             op=op)


def _below(rng: random.Random, n: int) -> int:
    """Uniform in [0, n) from random() alone (module docstring: the stable method)."""
    return int(rng.random() * n)


def _distinct_pairs(rng: random.Random, config: ArithmeticConfig) -> list[tuple[int, int]]:
    """`config.total` distinct unordered pairs, in draw order."""
    values = 10 ** config.digits
    if 2 * config.total <= config.distinct_pairs:
        # sparse: draw and reject repeats (fewer than one draw in two is a repeat)
        seen: set[tuple[int, int]] = set()
        pairs = []
        while len(pairs) < config.total:
            x, y = _below(rng, values), _below(rng, values)
            pair = (min(x, y), max(x, y))
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
        return pairs
    # dense (few digits, so the list is small): a partial Fisher-Yates shuffle of every pair
    pairs = [(a, b) for a in range(values) for b in range(a, values)]
    for i in range(config.total):
        j = i + _below(rng, len(pairs) - i)
        pairs[i], pairs[j] = pairs[j], pairs[i]
    return pairs[:config.total]


def make_arithmetic(config: ArithmeticConfig | None = None) -> dict[str, list[ArithmeticExample]]:
    """{"train", "val", "test"}: examples of the sizes asked, disjoint by operand pair, the same
    for the same config on any machine."""
    config = config or ArithmeticConfig()
    rng = random.Random(config.seed)
    examples = []
    for low, high in _distinct_pairs(rng, config):
        op = config.operations[_below(rng, len(config.operations))]
        # drawn for every op, so the draws after it do not depend on which op came up
        swap = _below(rng, 2) == 1
        if op == "-":
            a, b = high, low
        else:
            a, b = (high, low) if swap else (low, high)
        examples.append(arithmetic_example(a, b, op))
    train_end = config.train_size
    val_end = train_end + config.val_size
    return {"train": examples[:train_end], "val": examples[train_end:val_end],
            "test": examples[val_end:]}


def check_arithmetic(example: ArithmeticExample, model_output: str) -> bool:
    """Exact: the first integer of `model_output` (spaces removed) equals the answer."""
    match = _FIRST_INTEGER.search(model_output.replace(" ", ""))
    return match is not None and int(match.group()) == int(example.answer)
