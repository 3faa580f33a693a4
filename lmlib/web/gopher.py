r"""Gopher heuristics (Rae et al. 2021, "Scaling Language Models", appendix A1.1).

Quality rules (`gopher_quality_filter`); a document passes when all hold:
- 50 ≤ words ≤ 100,000;
- mean word length in [3, 10] characters;
- at most 30% of lines end with an ellipsis ("..." or "…");
- at least 80% of words contain an alphabetic character.

How things are counted (the paper does not pin this down, so we state it):
- A word is a maximal run of non-whitespace characters, exactly what `str.split()` returns;
  punctuation attached to a word is part of it ("end." is one 4-character word). No tokenizer
  model, so the rule is language-independent and fast.
- Mean word length is characters in words / words.
- "Alphabetic" is a Unicode letter (`str.isalpha()`; regex's `\p{L}`, which knows the letters of
  newer Unicode versions too); we count the words with no letter at all.
- Lines are `str.splitlines()` lines that are not blank; trailing whitespace is ignored when
  checking for the ellipsis.

Repetition rules (`gopher_repetition_filter`, optional; table A1's thresholds):
duplicate line / paragraph fractions (≤ 0.30 of lines / paragraphs, ≤ 0.20 of characters),
top 2/3/4-gram character fraction (≤ 0.20 / 0.18 / 0.16) and duplicate 5..10-gram character
fraction (≤ 0.15 ... 0.10). Paragraphs are separated by blank lines; n-grams are over words as
above; "characters" of an n-gram are the characters of its words (spaces excluded).

Notable:
- The quality stats look each code point of the text up once in a table of classes (letter,
  whitespace, other) and count words, word characters and words without a letter with numpy:
  a word without a letter is a run of "other" characters with whitespace on both sides. The
  regex tried at every position and the Python loops over words that this replaces took most
  of the filter's time; the numbers are the same. The table fills lazily, a code point the
  first time a text holds one, from the rule's definitions (`str.isspace`, regex's `\p{L}`).
- Lines are only split when the text holds an ellipsis at all; otherwise the fraction is 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from operator import methodcaller

import numpy as np
import regex

_PARAGRAPH_BREAK = regex.compile(r"\n[^\S\n]*\n\s*")
# A letter, as in the rule: regex's \p{L}, which knows a newer Unicode than str.isalpha().
_LETTER = regex.compile(r"\p{L}")

# Classes of code points, looked up in one table; filled the first time a text holds one.
_OTHER, _LETTER_CLASS, _SPACE, _UNKNOWN = 0, 1, 2, 255
_CLASSES = np.full(0x110000, _UNKNOWN, dtype=np.uint8)
_ENDS_WITH_ELLIPSIS = methodcaller("endswith", ("...", "…"))


@dataclass(frozen=True)
class GopherQualityStats:
    """The quantities the quality rules look at (recorded in the decisions table)."""

    words: int
    mean_word_length: float
    ellipsis_line_fraction: float
    alphabetic_word_fraction: float


def _classify(code_points: np.ndarray) -> None:
    """Fill the table for these code points: whitespace as str.split() sees it, else a letter
    (regex's \\p{L}) or other."""
    for code_point in np.unique(code_points).tolist():
        char = chr(code_point)
        if char.isspace():
            _CLASSES[code_point] = _SPACE
        else:
            _CLASSES[code_point] = _LETTER_CLASS if _LETTER.match(char) else _OTHER


def _character_classes(text: str) -> np.ndarray:
    """The class of each code point of the text (a lone surrogate is one), between two spaces."""
    code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    classes = np.full(len(code_points) + 2, _SPACE, dtype=np.uint8)
    # every code point is below 0x110000; "clip" only spares numpy a bounds-checked copy
    np.take(_CLASSES, code_points, out=classes[1:-1], mode="clip")
    if _UNKNOWN in classes:
        _classify(code_points[classes[1:-1] == _UNKNOWN])
        np.take(_CLASSES, code_points, out=classes[1:-1], mode="clip")
    return classes


def _ellipsis_line_fraction(text: str) -> float:
    """Of the lines that are not blank, the fraction that end with an ellipsis."""
    if "..." not in text and "…" not in text:
        return 0.0  # what the count below gives, without splitting the lines
    lines = text.splitlines()
    non_blank = len(lines) - lines.count("") - sum(map(str.isspace, lines))
    ellipsis_lines = sum(map(_ENDS_WITH_ELLIPSIS, map(str.rstrip, lines)))
    return ellipsis_lines / non_blank if non_blank else 0.0


def gopher_quality_stats(text: str) -> GopherQualityStats:
    """Words, mean word length, ellipsis-line and alphabetic-word fractions, as the module
    docstring counts them."""
    classes = _character_classes(text)  # padded with a space at both ends
    in_word = classes < _SPACE
    n_words = int(np.count_nonzero(in_word[1:] & ~in_word[:-1]))  # first characters of words
    if n_words == 0:
        return GopherQualityStats(0, 0.0, 0.0, 0.0)
    # A word without a letter is a run of "other" characters with whitespace on both sides.
    other = classes == _OTHER
    edges = np.flatnonzero(other[1:] != other[:-1]) + 1  # run starts and ends, alternating
    without_letter = int(np.count_nonzero((classes[edges[0::2] - 1] == _SPACE)
                                          & (classes[edges[1::2]] == _SPACE)))
    return GopherQualityStats(
        words=n_words,
        mean_word_length=int(np.count_nonzero(in_word)) / n_words,
        ellipsis_line_fraction=_ellipsis_line_fraction(text),
        alphabetic_word_fraction=(n_words - without_letter) / n_words,
    )


def gopher_quality_failures(
    stats: GopherQualityStats,
    *,
    min_words: int = 50,
    max_words: int = 100_000,
    min_mean_word_length: float = 3.0,
    max_mean_word_length: float = 10.0,
    max_ellipsis_line_fraction: float = 0.3,
    min_alphabetic_word_fraction: float = 0.8,
) -> list[str]:
    """Names of the rules the document breaks (empty when it passes)."""
    failures = []
    if not min_words <= stats.words <= max_words:
        failures.append("word_count")
    if not min_mean_word_length <= stats.mean_word_length <= max_mean_word_length:
        failures.append("mean_word_length")
    if stats.ellipsis_line_fraction > max_ellipsis_line_fraction:
        failures.append("ellipsis_lines")
    if stats.alphabetic_word_fraction < min_alphabetic_word_fraction:
        failures.append("alphabetic_words")
    return failures


def gopher_quality_filter(text: str, **thresholds: float) -> bool:
    """True when `text` passes every Gopher quality rule (thresholds as keyword overrides)."""
    return not gopher_quality_failures(gopher_quality_stats(text), **thresholds)


# --- repetition -------------------------------------------------------------------------------

DUPLICATE_FRACTION_LIMITS = {
    "duplicate_line_fraction": 0.30,
    "duplicate_paragraph_fraction": 0.30,
    "duplicate_line_char_fraction": 0.20,
    "duplicate_paragraph_char_fraction": 0.20,
}
TOP_NGRAM_LIMITS = {2: 0.20, 3: 0.18, 4: 0.16}
DUPLICATE_NGRAM_LIMITS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """Fraction of items that repeat an earlier one, and of characters in those repeats."""
    seen: set[str] = set()
    duplicates = duplicate_chars = 0
    for item in items:
        if item in seen:
            duplicates += 1
            duplicate_chars += len(item)
        else:
            seen.add(item)
    total_chars = sum(map(len, items))
    return duplicates / max(len(items), 1), duplicate_chars / max(total_chars, 1)


def _top_ngram_char_fraction(words: list[str], n: int, total_chars: int) -> float:
    """Characters covered by the most frequent n-gram's occurrences (the paper's "top n-gram")."""
    if len(words) < n:
        return 0.0
    counts = Counter(zip(*(words[i:] for i in range(n))))
    ngram, count = counts.most_common(1)[0]
    if count < 2:
        return 0.0
    return sum(map(len, ngram)) * count / total_chars


def _duplicate_ngram_char_fraction(words: list[str], n: int, total_chars: int) -> float:
    """Characters of words that lie inside an n-gram seen earlier (each word counted once)."""
    if len(words) < n:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for start, ngram in enumerate(zip(*(words[i:] for i in range(n)))):
        if ngram in seen:
            covered[start : start + n] = [True] * n
        else:
            seen.add(ngram)
    return sum(len(word) for word, hit in zip(words, covered) if hit) / total_chars


def gopher_repetition_stats(text: str) -> dict[str, float]:
    lines = [line for line in (line.strip() for line in text.splitlines()) if line]
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]
    stats = {}
    stats["duplicate_line_fraction"], stats["duplicate_line_char_fraction"] = (
        _duplicate_fractions(lines)
    )
    stats["duplicate_paragraph_fraction"], stats["duplicate_paragraph_char_fraction"] = (
        _duplicate_fractions(paragraphs)
    )
    words = text.split()
    total_chars = max(sum(map(len, words)), 1)
    for n in TOP_NGRAM_LIMITS:
        stats[f"top_{n}_gram_char_fraction"] = _top_ngram_char_fraction(words, n, total_chars)
    for n in DUPLICATE_NGRAM_LIMITS:
        stats[f"duplicate_{n}_gram_char_fraction"] = _duplicate_ngram_char_fraction(
            words, n, total_chars
        )
    return stats


def gopher_repetition_failures(stats: dict[str, float]) -> list[str]:
    limits = dict(DUPLICATE_FRACTION_LIMITS)
    limits.update({f"top_{n}_gram_char_fraction": v for n, v in TOP_NGRAM_LIMITS.items()})
    limits.update({f"duplicate_{n}_gram_char_fraction": v for n, v in DUPLICATE_NGRAM_LIMITS.items()})
    return [name for name, limit in limits.items() if stats[name] > limit]


def gopher_repetition_filter(text: str) -> bool:
    """True when `text` passes every Gopher repetition rule."""
    return not gopher_repetition_failures(gopher_repetition_stats(text))
