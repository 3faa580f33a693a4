"""Gopher quality rules at both sides of every boundary, their fast stats against the plain
definitions; repetition rules and their stats."""

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.web.gopher import (
    DUPLICATE_FRACTION_LIMITS,
    DUPLICATE_NGRAM_LIMITS,
    TOP_NGRAM_LIMITS,
    GopherQualityStats,
    gopher_quality_filter,
    gopher_quality_stats,
    gopher_repetition_failures,
    gopher_repetition_filter,
    gopher_repetition_stats,
)

PROSE = (
    "The river runs through the old town, past the market and the church. In spring the water "
    "rises and the boats come back to the harbour. Fishermen sell their catch on the stone quay, "
    "and children watch the gulls. Later in the year the streets fill with visitors who walk "
    "along the banks, take pictures of the bridges and eat in the small restaurants near the "
    "square."
)


def words(n: int, word: str = "abcd") -> str:
    return " ".join([word] * n)


def test_natural_prose_passes():
    assert gopher_quality_stats(PROSE).words == len(PROSE.split()) == 67
    assert gopher_quality_filter(PROSE)


@pytest.mark.parametrize(("n_words", "passes"), [(49, False), (50, True), (100_000, True),
                                                  (100_001, False)])
def test_word_count_bounds(n_words, passes):
    assert gopher_quality_filter(words(n_words)) is passes


def test_words_are_whitespace_separated_runs_with_punctuation_attached():
    stats = gopher_quality_stats("Hello,  world!\n\tIt's\u00a0done.")
    assert stats.words == 4  # "Hello," "world!" "It's" "done."
    assert stats.mean_word_length == (6 + 6 + 4 + 5) / 4


@pytest.mark.parametrize(
    ("text", "passes"),
    [
        (words(50, "abc"), True),  # mean exactly 3
        (words(49, "abc") + " ab", False),  # mean 2.98
        (words(50, "abcdefghij"), True),  # mean exactly 10
        (words(49, "abcdefghij") + " abcdefghijk", False),  # mean 10.02
    ],
)
def test_mean_word_length_bounds(text, passes):
    assert gopher_quality_filter(text) is passes


def ellipsis_document(ending_lines: int, ellipsis: str = "...") -> str:
    lines = [words(10) + (ellipsis if i < ending_lines else ".") for i in range(10)]
    return "\n\n".join(lines) + "\n"  # blank lines are not lines


@pytest.mark.parametrize(("ending_lines", "passes"), [(3, True), (4, False)])
@pytest.mark.parametrize("ellipsis", ["...", "…"])
def test_ellipsis_line_fraction_bounds(ending_lines, passes, ellipsis):
    stats = gopher_quality_stats(ellipsis_document(ending_lines, ellipsis))
    assert stats.ellipsis_line_fraction == ending_lines / 10
    assert gopher_quality_filter(ellipsis_document(ending_lines, ellipsis)) is passes


def test_trailing_whitespace_does_not_hide_an_ellipsis():
    assert gopher_quality_stats("wait for it...   \nok").ellipsis_line_fraction == 0.5


@pytest.mark.parametrize(("numeric_words", "passes"), [(20, True), (21, False)])
def test_alphabetic_word_fraction_bounds(numeric_words, passes):
    text = words(100 - numeric_words, "abcd") + " " + words(numeric_words, "1234")
    assert gopher_quality_stats(text).alphabetic_word_fraction == (100 - numeric_words) / 100
    assert gopher_quality_filter(text) is passes


def test_a_single_letter_makes_a_word_alphabetic():
    stats = gopher_quality_stats("1a 22 -- x. 3.5 ü 42")
    assert stats.alphabetic_word_fraction == 3 / 7


def test_thresholds_can_be_overridden():
    assert not gopher_quality_filter(words(20))
    assert gopher_quality_filter(words(20), min_words=20)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Z", "Cc", "S"))))
def test_alphabetic_count_matches_the_definition(text):
    """The fast regex count equals the plain definition over str.split() words."""
    stats = gopher_quality_stats(text)
    split = text.split()
    assert stats.words == len(split)
    if split:
        with_letter = sum(any(ch.isalpha() for ch in word) for word in split)
        assert stats.alphabetic_word_fraction == with_letter / len(split)


def plain_quality_stats(text):
    """The quality stats by the module docstring's definitions, one word and line at a time."""
    words = text.split()
    if not words:
        return GopherQualityStats(0, 0.0, 0.0, 0.0)
    with_letter = sum(1 for word in words if regex.search(r"\p{L}", word))
    lines = [line.rstrip() for line in text.splitlines() if line.rstrip()]
    ellipsis_lines = sum(line.endswith(("...", "…")) for line in lines)
    return GopherQualityStats(len(words), sum(map(len, words)) / len(words),
                              ellipsis_lines / len(lines) if lines else 0.0,
                              with_letter / len(words))


def test_quality_stats_equal_the_plain_definition_on_real_pages(real_texts):
    for text in real_texts:
        assert gopher_quality_stats(text) == plain_quality_stats(text), text[:200]


# Every kind of whitespace str.split() knows (line breaks of str.splitlines() among them, and
# "\r\n"), ellipses, letters outside Latin-1 and of a newer Unicode than Python's (U+31350),
# digits, punctuation, a lone surrogate and an emoji.
GOPHER_PIECES = [" ", "  ", "\n", "\r\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
                 "\x1f", "\x85", "\xa0", "\u2028", "\u2029", "\u3000", "...", "…", ".", "....",
                 "a", "word", "é", "ß", "中文", "\U00031350", "1", "42", "²", "٣", "-", "(1)", "!?",
                 "\ud800", "\U0001f600"]
GOPHER_TEXTS = st.lists(st.sampled_from(GOPHER_PIECES), max_size=40).map("".join)


@settings(max_examples=2000, deadline=None)
@given(GOPHER_TEXTS)
def test_quality_stats_equal_the_plain_definition(text):
    assert gopher_quality_stats(text) == plain_quality_stats(text)


def test_empty_text_fails():
    assert gopher_quality_stats("").words == 0
    assert not gopher_quality_filter("")


# --- repetition ---------------------------------------------------------------------------

ALL_LIMITS = {
    **DUPLICATE_FRACTION_LIMITS,
    **{f"top_{n}_gram_char_fraction": v for n, v in TOP_NGRAM_LIMITS.items()},
    **{f"duplicate_{n}_gram_char_fraction": v for n, v in DUPLICATE_NGRAM_LIMITS.items()},
}


def test_repetition_limits_are_the_papers():
    assert ALL_LIMITS["duplicate_line_fraction"] == 0.30
    assert ALL_LIMITS["duplicate_paragraph_char_fraction"] == 0.20
    assert [TOP_NGRAM_LIMITS[n] for n in (2, 3, 4)] == [0.20, 0.18, 0.16]
    assert [DUPLICATE_NGRAM_LIMITS[n] for n in range(5, 11)] == [0.15, 0.14, 0.13, 0.12, 0.11,
                                                                 0.10]


@pytest.mark.parametrize("rule", sorted(ALL_LIMITS))
def test_each_repetition_rule_at_both_sides_of_its_limit(rule):
    at_limit = dict.fromkeys(ALL_LIMITS, 0.0) | {rule: ALL_LIMITS[rule]}
    assert gopher_repetition_failures(at_limit) == []
    above = at_limit | {rule: ALL_LIMITS[rule] + 1e-9}
    assert gopher_repetition_failures(above) == [rule]


def test_repetition_stats_on_known_text():
    text = "alpha beta\ngamma delta\nalpha beta\n\nepsilon zeta eta"
    stats = gopher_repetition_stats(text)
    assert stats["duplicate_line_fraction"] == 1 / 4
    assert stats["duplicate_line_char_fraction"] == len("alpha beta") / (10 + 11 + 10 + 16)
    assert stats["duplicate_paragraph_fraction"] == 0.0
    # top 2-gram ("alpha", "beta") occurs twice: 2 * 9 characters of 42 word characters
    assert stats["top_2_gram_char_fraction"] == 18 / 42
    assert stats["duplicate_5_gram_char_fraction"] == 0.0


def test_duplicate_ngrams_count_each_word_once():
    text = " ".join(["a1 b2 c3 d4 e5"] * 3)  # 15 words of 2 chars: the last 10 are repeats
    assert gopher_repetition_stats(text)["duplicate_5_gram_char_fraction"] == 20 / 30


def test_repetitive_page_fails_and_prose_passes():
    assert gopher_repetition_filter(PROSE)
    spam = "\n".join(["Buy cheap watches now"] * 10 + [PROSE])
    assert not gopher_repetition_filter(spam)
    assert "duplicate_line_fraction" in gopher_repetition_failures(gopher_repetition_stats(spam))
