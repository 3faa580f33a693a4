"""Text normalization and word n-gram shingles, vectorized over a batch of documents.

Notable:
- Normalization: NFD and removal of combining marks (accents), only for texts that contain
  non-ASCII (where Unicode whitespace also becomes a space); then lowercase and removal of every
  character that is neither a word character nor whitespace; all in polars (Rust).
  "Café, NAÏVE!" gives the words ["cafe", "naive"].
- Words are then found and hashed straight on the UTF-8 buffer with numpy (runs of bytes that
  are not ASCII whitespace, which also collapses whitespace); no Python string per word.
- A shingle is the hash of n consecutive word hashes, so no n-gram string is ever built. Shingle
  hashes keep 48 bits (SHINGLE_BITS) so that one uint64 sort orders (document, shingle) pairs
  and removes repeats; two different n-grams of a pair collide with odds about 1e-9.
- A document with fewer than n words (but at least one) has exactly one shingle, made of all its
  words, so short identical documents still match. A document with no words has no shingles and
  can never be a near-duplicate.
- Shingle sets come back sorted and unique per document, in a CSR layout (flat values +
  offsets), ready for MinHash and for exact Jaccard verification.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmlib.dedup.hashing import hash_byte_ranges, splitmix64, string_buffers

SHINGLE_BITS = 48
MAX_BATCH_DOCUMENTS = 1 << (64 - SHINGLE_BITS)
_NGRAM_MULTIPLIERS = splitmix64(np.arange(1, 65, dtype=np.uint64)) | np.uint64(1)
_WIDTH_SALT = np.uint64(0x2545F4914F6CDD1D)
_ASCII_WHITESPACE = np.zeros(256, dtype=bool)
_ASCII_WHITESPACE[list(b" \t\n\v\f\r")] = True


def normalized_series(texts):
    """Each text normalized, as a polars String Series (words separated by ASCII whitespace)."""
    import polars as pl

    series = texts if isinstance(texts, pl.Series) else pl.Series("text", texts, dtype=pl.String)
    series = series.fill_null("")
    non_ascii = series.str.contains(r"[^\x00-\x7F]")
    if non_ascii.any():
        fixed = (
            series.filter(non_ascii)
            .str.normalize("NFD")
            .str.replace_all(r"\p{Mn}", "")
            .str.replace_all(r"\s", " ")
        )
        series = series.scatter(np.flatnonzero(non_ascii.to_numpy()), fixed)
    return series.str.to_lowercase().str.replace_all(r"[^\w\s]", "")


def normalize_texts(texts: Sequence[str]) -> list[str]:
    """The normalized form of each text: words joined by single spaces (for inspection and tests)."""
    return [" ".join(text.split()) for text in normalized_series(texts).to_list()]


def word_ranges(data: np.ndarray, doc_offsets: np.ndarray):
    """(starts, ends, doc) of every run of non-whitespace bytes; runs never cross documents."""
    total = int(doc_offsets[-1])
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    is_word = ~_ASCII_WHITESPACE[data[:total]]
    boundary = np.zeros(total + 1, dtype=bool)
    boundary[doc_offsets] = True
    previous_is_word = np.concatenate(([False], is_word[:-1])) & ~boundary[:-1]
    next_is_word = np.concatenate((is_word[1:], [False])) & ~boundary[1:]
    starts = np.flatnonzero(is_word & ~previous_is_word)
    ends = np.flatnonzero(is_word & ~next_is_word) + 1
    doc = np.searchsorted(doc_offsets, starts, side="right") - 1
    return starts, ends, doc


def shingle_sets(texts, ngrams: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique 48-bit word-n-gram hashes of each text, as uint64.

    Returns (values, offsets): the shingles of text i are values[offsets[i]:offsets[i + 1]].
    """
    if ngrams < 1:
        raise ValueError(f"ngrams must be >= 1, got {ngrams}")
    data, doc_offsets = string_buffers(normalized_series(texts).to_arrow())
    data = data[doc_offsets[0] :]
    doc_offsets = doc_offsets - doc_offsets[0]
    num_docs = len(doc_offsets) - 1
    if num_docs > MAX_BATCH_DOCUMENTS:
        raise ValueError(f"at most {MAX_BATCH_DOCUMENTS} documents per batch, got {num_docs}")
    starts, ends, doc_of_word = word_ranges(data, doc_offsets)
    word_hashes = hash_byte_ranges(data, starts, ends)

    counts = np.bincount(doc_of_word, minlength=num_docs)
    doc_start = np.cumsum(counts) - counts
    position = np.arange(len(word_hashes), dtype=np.int64) - doc_start[doc_of_word]
    remaining = counts[doc_of_word] - position  # words from this one to the end of its document
    # A shingle starts at every position with n words left, and at position 0 of short documents.
    first = np.flatnonzero((remaining >= ngrams) | ((position == 0) & (remaining < ngrams)))
    width = np.minimum(remaining[first], ngrams)
    padded = np.concatenate((word_hashes, np.zeros(ngrams, dtype=np.uint64)))
    combined = np.zeros(len(first), dtype=np.uint64)
    for offset in range(ngrams):  # n is small; each step is vectorized over all shingles
        combined += padded[first + offset] * _NGRAM_MULTIPLIERS[offset]
    short = np.flatnonzero(width < ngrams)  # rare: documents with fewer than n words
    if len(short):
        combined[short] = 0
        for offset in range(ngrams):
            inside = short[width[short] > offset]
            combined[inside] += padded[first[inside] + offset] * _NGRAM_MULTIPLIERS[offset]
    combined = splitmix64(combined ^ (width.astype(np.uint64) * _WIDTH_SALT))

    # One sort of (document << 48 | shingle) keys groups by document and sorts within it.
    keys = (doc_of_word[first].astype(np.uint64) << np.uint64(SHINGLE_BITS)) | (
        combined >> np.uint64(64 - SHINGLE_BITS)
    )
    keys.sort()
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]
    keys = keys[keep]
    shingles = keys & np.uint64((1 << SHINGLE_BITS) - 1)
    offsets = np.zeros(num_docs + 1, dtype=np.int64)
    shingle_doc = (keys >> np.uint64(SHINGLE_BITS)).astype(np.int64)
    np.cumsum(np.bincount(shingle_doc, minlength=num_docs), out=offsets[1:])
    return shingles, offsets
