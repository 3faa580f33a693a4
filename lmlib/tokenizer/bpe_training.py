"""Byte-level BPE training (GPT-2 style), fast in pure Python.

Notable:
- Pre-token counting runs in parallel over chunks whose boundaries fall on special tokens
  (`pretokenize.iter_chunk_counts`); after that the trainer works on unique pre-tokens
  ("words") with their frequencies, never on the text.
- Each merge touches only the words that contain the merged pair: pair counts are updated
  incrementally from a pair -> words index, not recounted.
- The most frequent pair comes from a lazy max-heap. Ties go to the lexicographically greater
  pair of byte strings; the heap orders them with an order-reversing string key per token
  (byte x -> chr(255 - x), terminated by chr(256)), so a tie costs no Python comparison.
- Entries are pushed only when a count grows; an entry whose count shrank is re-pushed when it
  surfaces. The heap is rebuilt when stale entries outnumber live ones.
- Vocabulary ids: 0..255 are the single bytes, then one id per merge, then the special tokens
  (as GPT-2 puts <|endoftext|> last). Special tokens are never counted nor merged.
"""

from __future__ import annotations

import heapq
import os
import time
from collections import defaultdict
from pathlib import Path

from lmlib.tokenizer.pretokenize import DEFAULT_CHUNK_BYTES, iter_chunk_counts

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


def _reversed_order_key(token: bytes) -> str:
    """A string whose ascending order is the descending order of the byte strings."""
    return "".join(chr(255 - byte) for byte in token) + chr(256)


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: list[str],
    *,
    workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    stats: dict | None = None,
) -> tuple[Vocab, Merges]:
    """Train a byte-level BPE on a UTF-8 text file.

    Returns (vocab, merges): vocab maps ids 0..vocab_size-1 to bytes (256 single bytes, one
    token per merge, then the special tokens); merges are in creation order. Training stops
    early, with a smaller vocabulary, when no pair of adjacent tokens is left to merge.

    Options: `workers` processes for pre-tokenization (default: all cores), `chunk_bytes`
    target chunk size, `stats` a dict that receives timings and counts.
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
    workers = workers or os.cpu_count() or 1

    started = time.perf_counter()
    word_ids: dict[str, int] = {}
    frequencies: list[int] = []
    # unique pre-tokens are merged across chunks as they arrive: only counts stay in memory
    for counts in iter_chunk_counts(path, special_tokens, workers, chunk_bytes):
        for pretoken, count in counts.items():
            index = word_ids.get(pretoken)
            if index is None:
                word_ids[pretoken] = len(frequencies)
                frequencies.append(count)
            else:
                frequencies[index] += count
    words = [list(pretoken.encode("utf-8")) for pretoken in word_ids]
    del word_ids
    pretokenized = time.perf_counter()

    merges = _learn_merges(words, frequencies, vocab_size - minimum)
    vocab: Vocab = {byte: bytes([byte]) for byte in range(256)}
    for left, right in merges:
        vocab[len(vocab)] = left + right
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    if stats is not None:
        stats.update(
            pretokenize_seconds=pretokenized - started,
            merge_seconds=time.perf_counter() - pretokenized,
            unique_pretokens=len(words),
            merges=len(merges),
        )
    return vocab, merges


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
