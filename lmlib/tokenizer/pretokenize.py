"""Pre-tokenization shared by training and encoding: split patterns and special-token splitting.

Notable:
- Training splits text with GPT-2's pattern; an encoding `Tokenizer` may carry another (Llama 3's,
  Qwen2's, any regex a Hugging Face `Split` names). A pattern outside `SPACE_CUT_PATTERNS` keeps
  the text between its matches as pre-tokens too, as Hugging Face's isolated `Split` does.
- Special tokens split the text first and match longest first, so overlapping special tokens
  (``<|endoftext|>`` and ``<|endoftext|><|endoftext|>``) resolve to the longer one.
- Training reads a file as byte ranges whose boundaries fall on special tokens, or, when a
  stretch has none, on a ``\\n`` between two printable ASCII bytes: a pre-token boundary in the
  GPT-2 pattern on both sides, so chunking never changes the pre-token counts.
- Chunks are counted in worker processes (lmlib.parallel's process map), each reading its own
  byte range, so the parent never holds more than the pre-token counts: memory stays bounded on
  files of many GB. Counts come back in chunk order, so training sees the same sequence on
  every run.
- `bpe_core` loads lmlib/native/bpe_encode.c (the encoder's C core) and gives it the code point
  classes of the patterns in `NATIVE_PATTERNS`, read from the `regex` module at run time
  (`character_class_ranges`, `contraction_case_folds`), so C and Python split alike;
  `native_pretoken_ends` is its pre-tokenizer alone, for counting.
"""

from __future__ import annotations

import ctypes
import functools
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path

import numpy as np
import regex

from lmlib import native
from lmlib.parallel import ordered_map

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_REGEX = regex.compile(GPT2_PATTERN)
# Llama 3's (tiktoken's cl100k in Hugging Face's spelling) and Qwen2's, as their tokenizer.json
# files write them: a letter run may take one leading character other than a digit or a line
# break, and digits go three at a time (Llama 3) or one (Qwen2)
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
                  r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                 r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
# Patterns the encoder may cut text with, checked for each (tests/tokenizer): every character is
# matched; no pre-token holds a non-space character followed by a space, and a space followed by
# a non-space character starts one, so text cuts before such a space; and a pre-token depends on
# at most the two after it, so all but the last two pre-tokens of a text are final.
SPACE_CUT_PATTERNS = frozenset({GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN})
# the character classes the patterns tell apart, numbered as in lmlib/native/bpe_encode.c
CLASS_OTHER, CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE = range(4)
_CLASS_PATTERNS = ((CLASS_LETTER, r"\p{L}+"), (CLASS_NUMBER, r"\p{N}+"), (CLASS_SPACE, r"\s+"))
# the patterns the C core splits with, by its number for them (PATTERN_* in bpe_encode.c)
NATIVE_PATTERNS = {GPT2_PATTERN: 0, LLAMA3_PATTERN: 1, QWEN2_PATTERN: 2}

DEFAULT_CHUNK_BYTES = 8 << 20
# how far to look past a desired boundary for a special token or a safe newline
_BOUNDARY_SEARCH_BYTES = 1 << 20
_PRINTABLE_ASCII = frozenset(range(0x21, 0x7F))


def special_token_regex(special_tokens: list[str] | tuple[str, ...]) -> regex.Pattern | None:
    """The special tokens as one pattern that matches the longest token at the earliest place.

    Written as a trie (shared prefixes once, each node's longer continuations tried before
    ending there), not as a flat alternation: with 100k placeholder tokens a flat alternation
    took 13 s to scan 100 kB holding 6,000 of them, the trie 2 ms, and it compiles 3x faster."""
    if not special_tokens:
        return None
    trie: dict = {}
    for token in set(special_tokens):
        node = trie
        for character in token:
            node = node.setdefault(character, {})
        node[""] = {}  # a token ends here

    def pattern(node: dict) -> str:
        branches = [regex.escape(character) + pattern(child)
                    for character, child in sorted(node.items()) if character]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body  # greedy: the longer token first

    return regex.compile(pattern(trie))


@functools.cache
def character_class_ranges() -> tuple[tuple[int, int, int], ...]:
    """(first code point, last + 1, class) of every run of letters (\\p{L}), numbers (\\p{N}) and
    whitespace (\\s) as the `regex` module sees them; other code points are CLASS_OTHER. A C
    pre-tokenizer built from these splits exactly as `PRETOKEN_REGEX` does, whatever Unicode
    version the installed `regex` has (a table committed to the repository could drift)."""
    every_code_point = np.arange(0x110000, dtype="<u4").tobytes().decode("utf-32-le",
                                                                          "surrogatepass")
    ranges = sorted((*match.span(), cls) for cls, pattern in _CLASS_PATTERNS
                    for match in regex.finditer(pattern, every_code_point))
    if any(end > next_start for (_, end, _), (next_start, _, _) in zip(ranges, ranges[1:])):
        raise RuntimeError("the regex module's \\p{L}, \\p{N} and \\s overlap: the C "
                           "pre-tokenizer cannot follow GPT-2's pattern")
    return tuple(ranges)


@functools.cache
def contraction_case_folds() -> tuple[tuple[int, int], ...]:
    """(code point, ASCII letter) for every code point that a letter of Llama 3's and Qwen2's
    case-insensitive contractions matches, as the `regex` module decides (U+017F for "s")."""
    every_code_point = np.arange(0x110000, dtype="<u4").tobytes().decode("utf-32-le",
                                                                          "surrogatepass")
    return tuple((ord(found), ord(letter)) for found in regex.findall("(?i:[stremvld])",
                                                                      every_code_point)
                 for letter in "stremvld" if regex.fullmatch(f"(?i:{letter})", found))


def bpe_core(pattern: str = GPT2_PATTERN) -> ctypes.CDLL | None:
    """The C core lmlib/native/bpe_encode.c with its signatures and the tables that pattern needs
    set (once per process), or None where it is not to be had (no compiler, LMPIPE_NATIVE=0)."""
    if not native.enabled():
        return None
    library = native.load("bpe_encode")
    if library is None:
        return None
    if not getattr(library, "lmlib_ready", False):
        _prepare(library)
    if pattern != GPT2_PATTERN and not getattr(library, "lmlib_case_folds", False):
        # only Llama 3's and Qwen2's contractions ignore case
        folds = array("i", chain.from_iterable(contraction_case_folds()))
        if library.bpe_set_case_folds(folds.buffer_info()[0], len(folds) // 2) != 0:
            raise RuntimeError("bpe_encode.c refused the case folds of the regex module")
        library.lmlib_case_folds = True
    return library


def _prepare(library: ctypes.CDLL) -> None:
    """Declares the C core's signatures and gives it the character classes."""
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.bpe_set_classes.argtypes = [pointer, size]
    library.bpe_set_case_folds.argtypes = [pointer, size]
    library.bpe_encoder_new.argtypes = [pointer] * 5 + [size, size, size]
    library.bpe_encoder_new.restype = pointer
    library.bpe_encoder_set_whole_tokens.argtypes = [pointer, ctypes.c_char_p, pointer, pointer,
                                                     size]
    library.bpe_encoder_free.argtypes = [pointer]
    library.bpe_encoder_free.restype = None
    library.bpe_encode.argtypes = [pointer, ctypes.c_char_p, size]
    library.bpe_encode.restype = size
    library.bpe_encoder_ids.argtypes = [pointer]
    library.bpe_encoder_ids.restype = pointer
    library.bpe_pretokenize.argtypes = [ctypes.c_char_p, size, pointer, size]
    library.bpe_pretokenize.restype = size
    library.bpe_pretokenize_pattern.argtypes = [size, ctypes.c_char_p, size, pointer, size]
    library.bpe_pretokenize_pattern.restype = size
    ranges = array("i", chain.from_iterable(character_class_ranges()))
    if library.bpe_set_classes(ranges.buffer_info()[0], len(ranges) // 3) != 0:
        raise RuntimeError("bpe_encode.c refused the character classes of the regex module")
    library.lmlib_ready = True


def native_pretoken_ends(data: bytes, pattern: str = GPT2_PATTERN) -> array | None:
    """End offsets (array of int64) of the pre-tokens of UTF-8 data under pattern (one of
    `NATIVE_PATTERNS`), cut in C exactly where the regex's findall cuts the decoded text; None
    where the C core is not to be had."""
    library = bpe_core(pattern)
    if library is None:
        return None
    ends = array("q", [0]) * len(data)  # a pre-token holds at least one byte
    count = library.bpe_pretokenize_pattern(NATIVE_PATTERNS[pattern], data, len(data),
                                            ends.buffer_info()[0], len(data))
    del ends[count:]
    return ends


def split_keeping_gaps(pattern: regex.Pattern, text: str) -> list[str]:
    """Each match of pattern in text and each stretch of text between two matches, in order:
    the pieces of Hugging Face's `Split(pattern, behavior="isolated")`."""
    pieces, position = [], 0
    for match in pattern.finditer(text):
        if match.start() > position:
            pieces.append(text[position:match.start()])
        if match.end() > match.start():
            pieces.append(match.group())
        position = match.end()
    if position < len(text):
        pieces.append(text[position:])
    return pieces


def pretoken_splitter(pattern: str) -> Callable[[str], list[str]]:
    """The function cutting a text into its pre-tokens under pattern: the regex's own findall for
    the patterns that match every character, else `split_keeping_gaps`, which loses no text."""
    try:
        compiled = regex.compile(pattern)
    except regex.error as error:
        raise ValueError(f"pre-tokenization pattern {pattern!r} is not a regular expression the "
                         f"`regex` module compiles: {error}") from None
    if pattern in SPACE_CUT_PATTERNS:
        return compiled.findall
    return partial(split_keeping_gaps, compiled)


def split_on_special_tokens(text: str, special_regex: regex.Pattern | None) -> list[str]:
    """The pieces of text between special tokens (the special tokens themselves dropped)."""
    if special_regex is None:
        return [text]
    return special_regex.split(text)


def count_pretokens(text: str, special_regex: regex.Pattern | None) -> Counter[str]:
    """Pre-token frequencies of text; special tokens are removed and never counted."""
    counts: Counter[str] = Counter()
    findall = PRETOKEN_REGEX.findall
    for piece in split_on_special_tokens(text, special_regex):
        if piece:
            counts.update(findall(piece))
    return counts


def _find_boundary(handle, position: int, file_size: int, specials: list[bytes]) -> int:
    """First safe chunk boundary at or after position: the start of a special token, or just
    after a newline between two printable ASCII bytes; file_size when there is none."""
    overlap = max([2, *map(len, specials)])
    while 0 < position < file_size:
        handle.seek(position)
        window = handle.read(_BOUNDARY_SEARCH_BYTES + overlap)
        candidates = [index for index in (window.find(token) for token in specials) if index >= 0]
        newline = 0
        while True:
            newline = window.find(b"\n", newline + 1)
            if newline < 0 or newline + 1 >= len(window):
                break
            if window[newline - 1] in _PRINTABLE_ASCII and window[newline + 1] in _PRINTABLE_ASCII:
                candidates.append(newline + 1)
                break
        if candidates:
            return position + min(candidates)
        position += _BOUNDARY_SEARCH_BYTES
    return min(max(position, 0), file_size)


def chunk_boundaries(
    path: Path, special_tokens: list[str], chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> list[int]:
    """Byte offsets [0, ..., size] cutting the file into chunks of about chunk_bytes that
    pre-tokenize independently (see the module docstring for why the cuts are safe)."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    file_size = path.stat().st_size
    specials = [token.encode("utf-8") for token in special_tokens]
    boundaries = [0]
    with path.open("rb") as handle:
        while boundaries[-1] < file_size:
            boundary = _find_boundary(handle, boundaries[-1] + chunk_bytes, file_size, specials)
            boundaries.append(max(boundary, boundaries[-1] + 1))
    return boundaries


def _count_chunk(task: tuple[str, int, int, list[str]]) -> Counter[str]:
    path, start, end, special_tokens = task
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    text = data.decode("utf-8", errors="replace")
    return count_pretokens(text, special_token_regex(special_tokens))


def iter_chunk_counts(
    path: Path, special_tokens: list[str], workers: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Counter[str]]:
    """Pre-token counts of each chunk of the file, computed by `workers` processes."""
    boundaries = chunk_boundaries(path, special_tokens, chunk_bytes)
    tasks = [
        (str(path), start, end, list(special_tokens))
        for start, end in zip(boundaries[:-1], boundaries[1:])
        if end > start
    ]
    yield from ordered_map(_count_chunk, tasks, max(1, min(workers, len(tasks))))


def count_file_pretokens(
    path: Path, special_tokens: list[str], workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Counter[str]:
    """Pre-token frequencies of a whole UTF-8 file, in parallel over safe chunks."""
    workers = workers or os.cpu_count() or 1
    total: Counter[str] = Counter()
    for counts in iter_chunk_counts(path, special_tokens, workers, chunk_bytes):
        if total:
            total.update(counts)
        else:
            total = counts
    return total
