"""Byte-level BPE training (GPT-2 style): `count_words` then `learn_merges`, each in C where
`lmlib.native` has the cores, else in pure Python, with the same result either way.

Notable:
- Counting runs over chunks of the file whose boundaries fall on special tokens or safe
  newlines (`pretokenize.chunk_boundaries`), as many chunks per worker process
  (`balanced_chunk_bytes`); a file under 16 MB (C) or 2 MB (regex) is one chunk counted in this
  process, cheaper than starting a pool. After that the trainer works on unique pre-tokens
  ("words") with their frequencies, never on the text.
- In C, the encoder's GPT-2 pre-tokenizer (`pretokenize.native_pretoken_ends`, bpe_encode.c)
  cuts the text and a hash table in `lmlib/native/bpe_train.c` counts the pieces and adds up
  the chunks' counts; without it, the regex and Counters of `pretokenize.iter_chunk_counts`.
- The merge loop runs in bpe_train.c, or here (`_learn_merges`) where there is no core: no
  compiler, or LMPIPE_NATIVE=0. Tests compare counts and merges of the two paths on real and
  random text; `stats["count_core"]` and `stats["merge_core"]` say which ran.
- Each merge touches only the words that contain the merged pair: pair counts are updated
  incrementally from a pair -> words index, not recounted.
- The most frequent pair wins; ties go to the lexicographically greater pair of byte strings
  (left token's bytes, then right token's). The C loop compares the tokens' bytes in an indexed
  heap. The Python loop uses a lazy max-heap with an order-reversing string key per token
  (byte x -> chr(255 - x), terminated by chr(256)), so a tie costs no Python comparison; entries
  are pushed only when a count grows, one whose count shrank is re-pushed when it surfaces, and
  the heap is rebuilt when stale entries outnumber live ones.
- Vocabulary ids: 0..255 are the single bytes, then one id per merge, then the special tokens
  (as GPT-2 puts <|endoftext|> last). Special tokens are never counted nor merged.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import math
import os
import time
from array import array
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from lmlib import native
from lmlib.parallel import ordered_map
from lmlib.tokenizer.pretokenize import (
    DEFAULT_CHUNK_BYTES,
    bpe_core,
    chunk_boundaries,
    iter_chunk_counts,
    native_pretoken_ends,
    special_token_regex,
    split_on_special_tokens,
)

if TYPE_CHECKING:
    import numpy as np

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]
NATIVE_CORE = "bpe_train"
# below these file sizes, counting in this process beats starting worker processes (~0.2 s),
# with the regex (~10 MB/s a core) and with the C pre-tokenizer and counter (~40 MB/s)
SERIAL_BELOW_BYTES = 2 << 20
SERIAL_BELOW_BYTES_NATIVE = 16 << 20


class _PackedWords(NamedTuple):
    """Unique words as the C core takes them: word k is data[offsets[k]:offsets[k + 1]], seen
    counts[k] times."""

    data: bytes
    offsets: array  # int64, one more than there are words
    counts: array  # int64


def _reversed_order_key(token: bytes) -> str:
    """A string whose ascending order is the descending order of the byte strings."""
    return "".join(chr(255 - byte) for byte in token) + chr(256)


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: list[str],
    *,
    workers: int | None = None,
    chunk_bytes: int | None = None,
    stats: dict | None = None,
) -> tuple[Vocab, Merges]:
    """Train a byte-level BPE on a UTF-8 text file.

    Returns (vocab, merges): vocab maps ids 0..vocab_size-1 to bytes (256 single bytes, one
    token per merge, then the special tokens); merges are in creation order. Training stops
    early, with a smaller vocabulary, when no pair of adjacent tokens is left to merge.

    Options: `workers` processes for pre-tokenization (default: all cores), `chunk_bytes`
    target chunk size (default: `balanced_chunk_bytes`), `stats` a dict that receives timings
    and counts.
    """
    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"train_bpe: training text {path} does not exist")
    special_tokens = list(dict.fromkeys(special_tokens or []))
    if any(not token for token in special_tokens):
        raise ValueError("train_bpe: special tokens must be non-empty strings")
    minimum = 256 + len(special_tokens)
    if vocab_size < minimum:
        raise ValueError(
            f"train_bpe: vocab_size={vocab_size} is below the {minimum} ids needed for the 256 "
            f"single bytes and {len(special_tokens)} special tokens"
        )
    started = time.perf_counter()
    word_counts = count_words(path, special_tokens, workers=workers, chunk_bytes=chunk_bytes)
    pretokenized = time.perf_counter()
    merges = learn_merges(word_counts, vocab_size - minimum)
    vocab: Vocab = {byte: bytes([byte]) for byte in range(256)}
    for left, right in merges:
        vocab[len(vocab)] = left + right
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    if stats is not None:
        stats.update(
            pretokenize_seconds=pretokenized - started,
            merge_seconds=time.perf_counter() - pretokenized,
            unique_pretokens=len(word_counts),
            merges=len(merges),
            count_core="C" if _native_cores() is not None else "Python",
            merge_core="C" if native.available(NATIVE_CORE) else "Python",
        )
    return vocab, merges


def balanced_chunk_bytes(file_size: int, workers: int, serial_below: int) -> int:
    """A chunk size that gives every worker as many chunks, each at most DEFAULT_CHUNK_BYTES:
    11 MB on two workers as 8 + 3 MB kept one worker idle for most of the pass. A file under
    `serial_below` bytes stays one chunk, counted in this process (no pool to start)."""
    if file_size < serial_below:
        return max(file_size, 1)
    rounds = math.ceil(file_size / (workers * DEFAULT_CHUNK_BYTES))
    return math.ceil(file_size / (workers * rounds))


def count_words(
    input_path: str | os.PathLike,
    special_tokens: list[str],
    *,
    workers: int | None = None,
    chunk_bytes: int | None = None,
) -> dict[bytes, int]:
    """Pre-token ("word") counts of a UTF-8 file, special tokens left out: split and counted in
    C where `lmlib.native` has both cores, else by the regex; the same counts either way."""
    path = Path(input_path)
    workers = workers or os.cpu_count() or 1
    core = _native_cores()
    serial_below = SERIAL_BELOW_BYTES if core is None else SERIAL_BELOW_BYTES_NATIVE
    chunk_bytes = chunk_bytes or balanced_chunk_bytes(path.stat().st_size, workers, serial_below)
    if core is None:
        counts: dict[str, int] = {}
        # unique pre-tokens are merged across chunks as they arrive: only counts stay in memory
        for chunk_counts in iter_chunk_counts(path, special_tokens, workers, chunk_bytes):
            if counts:
                for pretoken, count in chunk_counts.items():
                    counts[pretoken] = counts.get(pretoken, 0) + count
            else:
                counts = dict(chunk_counts)
        return {pretoken.encode("utf-8"): count for pretoken, count in counts.items()}
    boundaries = chunk_boundaries(path, special_tokens, chunk_bytes)
    tasks = [(str(path), start, end, special_tokens)
             for start, end in zip(boundaries[:-1], boundaries[1:]) if end > start]
    # the chunks' counts are added up in C as they arrive
    with _NativeCounter(core) as total:
        for words in ordered_map(_count_chunk_native, tasks, max(1, min(workers, len(tasks)))):
            total.add_counted(words)
        data, offsets, counts_out = total.export()
    return dict(zip(map(data.__getitem__, map(slice, offsets[:-1], offsets[1:])), counts_out))


def learn_merges(word_counts: Mapping[bytes, int], num_merges: int) -> Merges:
    """Up to num_merges merges learned from words (byte strings) and their frequencies.

    The merge loop in C where `lmlib.native` has the core, else in Python: the same merges.
    """
    core = native.load(NATIVE_CORE)
    if core is None:
        return _learn_merges([list(word) for word in word_counts], list(word_counts.values()),
                             num_merges)
    # a word of one byte holds no pair
    words = [word for word in word_counts if len(word) > 1]
    offsets = array("q", [0])
    offsets.extend(itertools.accumulate(map(len, words)))
    counts = array("q", map(word_counts.__getitem__, words))
    return _learn_merges_native(core, _PackedWords(b"".join(words), offsets, counts), num_merges)


def _native_cores() -> ctypes.CDLL | None:
    """The training core where the encoder's core (its pre-tokenizer) is built too, else None."""
    core = native.load(NATIVE_CORE)
    return core if core is not None and bpe_core() is not None else None


class _NativeCounter:
    """Unique byte strings with their counts, in a table of the C core (freed on exit)."""

    def __init__(self, core: ctypes.CDLL):
        _declare_signatures(core)
        self.core = core
        self.handle = core.lmpipe_counter_new()
        if not self.handle:
            raise MemoryError("train_bpe: no memory for the C pre-token counter")

    def __enter__(self) -> _NativeCounter:
        return self

    def __exit__(self, *_) -> None:
        self.core.lmpipe_counter_free(self.handle)

    def add_pretokens(self, data: bytes, ends: array | np.ndarray) -> None:
        """Counts data's pre-tokens, given by their int64 end offsets (`native_pretoken_ends`)."""
        offsets = (ctypes.c_int64 * len(ends)).from_buffer(ends)
        self._check(self.core.lmpipe_counter_add_pretokens(self.handle, data, offsets,
                                                           len(ends)))

    def add_counted(self, words: _PackedWords) -> None:
        self._check(self.core.lmpipe_counter_add_counted(
            self.handle, words.data, words.offsets.buffer_info()[0],
            words.counts.buffer_info()[0], len(words.counts)))

    def export(self) -> _PackedWords:
        size = self.core.lmpipe_counter_size(self.handle)
        data = ctypes.create_string_buffer(self.core.lmpipe_counter_bytes(self.handle))
        offsets, counts = array("q", bytes(8 * (size + 1))), array("q", bytes(8 * size))
        self.core.lmpipe_counter_export(self.handle, data, offsets.buffer_info()[0],
                                        counts.buffer_info()[0])
        return _PackedWords(data.raw, offsets, counts)

    @staticmethod
    def _check(status: int) -> None:
        if status:
            raise MemoryError("train_bpe: the C pre-token counter ran out of memory")


def _count_chunk_native(task: tuple[str, int, int, list[str]]) -> _PackedWords:
    """Pre-token counts of one byte range of the file, split and counted in C (a worker)."""
    path, start, end, special_tokens = task
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    # decoded as `pretokenize` does, so invalid UTF-8 counts as U+FFFD there and here
    text = data.decode("utf-8", errors="replace")
    with _NativeCounter(native.load(NATIVE_CORE)) as counter:
        for piece in split_on_special_tokens(text, special_token_regex(special_tokens)):
            if piece:
                encoded = piece.encode("utf-8")
                counter.add_pretokens(encoded, native_pretoken_ends(encoded))
        return counter.export()


def _declare_signatures(core: ctypes.CDLL) -> None:
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    core.lmpipe_counter_new.restype = pointer
    core.lmpipe_counter_new.argtypes = []
    core.lmpipe_counter_free.restype = None
    core.lmpipe_counter_free.argtypes = [pointer]
    core.lmpipe_counter_add_pretokens.argtypes = [pointer, ctypes.c_char_p, pointer, size]
    core.lmpipe_counter_add_counted.argtypes = [pointer, ctypes.c_char_p, pointer, pointer,
                                                size]
    core.lmpipe_counter_size.restype = size
    core.lmpipe_counter_size.argtypes = [pointer]
    core.lmpipe_counter_bytes.restype = size
    core.lmpipe_counter_bytes.argtypes = [pointer]
    core.lmpipe_counter_export.restype = None
    core.lmpipe_counter_export.argtypes = [pointer, pointer, pointer, pointer]
    core.lmpipe_bpe_train.restype = size
    core.lmpipe_bpe_train.argtypes = [ctypes.c_char_p, pointer, pointer, size, size, pointer]


def _learn_merges_native(core: ctypes.CDLL, words: _PackedWords, num_merges: int) -> Merges:
    """`_learn_merges` in C: the merges come back as pairs of token ids."""
    _declare_signatures(core)
    # each merge shortens a word by one token: no more merges than that can be made
    num_merges = max(0, min(num_merges, len(words.data) - len(words.counts)))
    pairs = array("i", bytes(8 * num_merges))
    made = core.lmpipe_bpe_train(words.data, words.offsets.buffer_info()[0],
                                 words.counts.buffer_info()[0], len(words.counts), num_merges,
                                 pairs.buffer_info()[0])
    if made < 0:
        raise MemoryError(f"train_bpe: the C merge loop ran out of memory on "
                          f"{len(words.counts):,} unique pre-tokens; LMPIPE_NATIVE=0 selects "
                          "the pure-Python one")
    token_bytes = [bytes([byte]) for byte in range(256)]
    merges: Merges = []
    for left, right in zip(pairs[0:2 * made:2], pairs[1:2 * made:2]):
        merges.append((token_bytes[left], token_bytes[right]))
        token_bytes.append(token_bytes[left] + token_bytes[right])
    return merges


def _learn_merges(words: list[list[int]], frequencies: list[int], num_merges: int) -> Merges:
    """The merge loop over unique words (lists of token ids, modified in place)."""
    token_bytes: list[bytes] = [bytes([byte]) for byte in range(256)]
    order_keys: list[str] = [_reversed_order_key(token) for token in token_bytes]

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        if len(word) < 2:
            continue
        frequency = frequencies[index]
        for pair in zip(word, word[1:]):
            pair_counts[pair] += frequency
            pair_words[pair].add(index)
    pair_counts = dict(pair_counts)

    def entry(pair: tuple[int, int], count: int) -> tuple:
        return (-count, order_keys[pair[0]], order_keys[pair[1]], pair)

    heap = [entry(pair, count) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop

    merges: Merges = []
    while len(merges) < num_merges:
        # pop until the top entry carries its pair's current count
        best = None
        while heap:
            negative_count, _, _, pair = pop(heap)
            current = pair_counts.get(pair)
            if current is None:
                continue
            if current == -negative_count:
                best = pair
                break
            if current < -negative_count:  # shrank since pushed: re-file at its current count
                push(heap, entry(pair, current))
        if best is None:
            break
        left, right = best
        new_id = len(token_bytes)
        token_bytes.append(token_bytes[left] + token_bytes[right])
        order_keys.append(order_keys[left][:-1] + order_keys[right])
        merges.append((token_bytes[left], token_bytes[right]))

        delta: dict[tuple[int, int], int] = defaultdict(int)
        for index in pair_words.pop(best):
            word = words[index]
            merged = _merge_word(word, left, right, new_id)
            if merged is None:  # stale index entry: the pair left this word earlier
                continue
            frequency = frequencies[index]
            for pair in zip(word, word[1:]):
                delta[pair] -= frequency
            for pair in zip(merged, merged[1:]):
                delta[pair] += frequency
                if new_id in pair:
                    pair_words[pair].add(index)
            words[index] = merged
        for pair, change in delta.items():
            if not change:
                continue
            count = pair_counts.get(pair, 0) + change
            if count > 0:
                pair_counts[pair] = count
                if change > 0:
                    push(heap, entry(pair, count))
            else:
                pair_counts.pop(pair, None)
                pair_words.pop(pair, None)
        if len(heap) > 4 * len(pair_counts) + 100_000:
            heap = [entry(pair, count) for pair, count in pair_counts.items()]
            heapq.heapify(heap)
    return merges


def _merge_word(word: list[int], left: int, right: int, new_id: int) -> list[int] | None:
    """word with every (left, right) replaced by new_id, left to right; None if absent."""
    try:
        position = word.index(left)
    except ValueError:
        return None
    merged = word[:position]
    end = len(word) - 1
    found = False
    while position <= end:
        token = word[position]
        if token == left and position < end and word[position + 1] == right:
            merged.append(new_id)
            position += 2
            found = True
        else:
            merged.append(token)
            position += 1
    return merged if found else None
