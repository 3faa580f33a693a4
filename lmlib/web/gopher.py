"""Gopher heuristics (Rae et al. 2021, "Scaling Language Models", appendix A1.1).

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
- "Alphabetic" is `str.isalpha()` (Unicode letters); we count the words with no letter at all.
- Lines are `str.splitlines()` lines that are not blank; trailing whitespace is ignored when
  checking for the ellipsis.

Repetition rules (`gopher_repetition_filter`, optional; table A1's thresholds):
duplicate line / paragraph fractions (≤ 0.30 of lines / paragraphs, ≤ 0.20 of characters),
top 2/3/4-gram character fraction (≤ 0.20 / 0.18 / 0.16) and duplicate 5..10-gram character
fraction (≤ 0.15 ... 0.10). Paragraphs are separated by blank lines; n-grams are over words as
above; "characters" of an n-gram are the characters of its words (spaces excluded).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import regex

# str.split() whitespace is Unicode White_Space plus the four information separators \x1c-\x1f.
_WHITESPACE = r"\s\x1c-\x1f"
# A word with no letter: bounded by whitespace or the text's ends; possessive, so linear time.
_WORD_WITHOUT_LETTER = regex.compile(rf"(?<![^{_WHITESPACE}])[^{_WHITESPACE}\p{{L}}]++(?![^{_WHITESPACE}])")
_ELLIPSES = ("...", "…")
_PARAGRAPH_BREAK = regex.compile(r"\n[^\S\n]*\n\s*")


@dataclass(frozen=True)
class GopherQualityStats:
    """The quantities the quality rules look at (recorded in the decisions table)."""

    words: int
    mean_word_length: float
    ellipsis_line_fraction: float
    alphabetic_word_fraction: float


def gopher_quality_stats(text: str) -> GopherQualityStats:
    words = text.split()
    n_words = len(words)
    if n_words == 0:
        return GopherQualityStats(0, 0.0, 0.0, 0.0)
    mean_length = sum(map(len, words)) / n_words
    without_letter = len(_WORD_WITHOUT_LETTER.findall(text))
    lines = [line.rstrip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    ellipsis_lines = sum(1 for line in lines if line.endswith(_ELLIPSES))
    return GopherQualityStats(
        words=n_words,
        mean_word_length=mean_length,
        ellipsis_line_fraction=ellipsis_lines / len(lines) if lines else 0.0,
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
