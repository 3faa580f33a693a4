"""Stable, vectorized 64-bit hashing of byte ranges, strings and integer tuples.

Notable:
- Everything is numpy uint64 arithmetic that wraps mod 2**64; no Python loop per string.
- Stable across processes, machines and library versions (unlike Python's `hash` or polars'
  `Series.hash`), so signatures written by one worker can be compared with another's.
- A string of at most 64 bytes is read as little-endian 8-byte chunks chained through the
  splitmix64 mixer, seeded by its length; a longer one is a polynomial over its bytes with a
  fixed odd multiplier (one prefix sum for all of them), mixed with its length. Not cryptographic: fine for deduplication of
  natural text, where a collision needs about 2**32 distinct keys to become likely.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Fixed odd constants (from splitmix64 and the golden ratio); changing them changes every hash.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_BYTE_MULTIPLIER = np.uint64(0xFF51AFD7ED558CCD)  # odd, so its powers never vanish mod 2**64
_LENGTH_SALT = np.uint64(0xD6E8FEB86659FD93)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a bijection on uint64 whose output bits all depend on all input bits."""
    x = values.astype(np.uint64, copy=True)
    x += _GOLDEN
    x ^= x >> np.uint64(30)
    x *= _MIX_1
    x ^= x >> np.uint64(27)
    x *= _MIX_2
    x ^= x >> np.uint64(31)
    return x


def _powers(multiplier: np.uint64, count: int, block: int = 4096) -> np.ndarray:
    """multiplier ** [0, 1, ..., count - 1] mod 2**64."""
    if count <= block:
        powers = np.full(max(count, 1), multiplier, dtype=np.uint64)
        powers[0] = 1
        return np.cumprod(powers, dtype=np.uint64)  # wraps mod 2**64, which is what we want
    # Long tables as an outer product (m**(4096 h) * m**l): vectorized, unlike a long cumprod.
    low = _powers(multiplier, block)
    high = _powers(np.uint64(pow(int(multiplier), block, 1 << 64)), -(-count // block))
    return np.multiply.outer(high, low).reshape(-1)[:count]


_INVERSE_MULTIPLIER = np.uint64(pow(int(_BYTE_MULTIPLIER), -1, 1 << 64))
_POWER_BLOCK = 4096
_INVERSE_LOW = _powers(_INVERSE_MULTIPLIER, _POWER_BLOCK)
_INVERSE_BLOCK = np.uint64(pow(int(_INVERSE_MULTIPLIER), _POWER_BLOCK, 1 << 64))


def _inverse_powers(exponents: np.ndarray) -> np.ndarray:
    """inverse_multiplier ** e for each e, from two small tables (e = high * 4096 + low)."""
    high = exponents // _POWER_BLOCK
    high_table = _powers(_INVERSE_BLOCK, int(high.max()) + 1 if len(high) else 1)
    return high_table[high] * _INVERSE_LOW[exponents % _POWER_BLOCK]


def _polynomial_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """sum_k (byte_k + 1) * M**k per range, from one prefix sum over the buffer.

    The range sum is (prefix[end] - prefix[start]) * M**-start (M odd, so invertible mod 2**64).
    """
    span_end = int(ends.max())
    prefix = np.zeros(span_end + 1, dtype=np.uint64)
    terms = data[:span_end].astype(np.uint64)
    terms += np.uint64(1)
    terms *= _powers(_BYTE_MULTIPLIER, span_end)[:span_end]
    np.cumsum(terms, out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * _inverse_powers(starts)


_PACKED_MAX_BYTES = 64
_LOW_BYTES_MASK = np.array([(1 << (8 * r)) - 1 for r in range(8)] + [2**64 - 1], dtype=np.uint64)


def _packed_hashes(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Chain hash of short ranges read 8 bytes at a time: h = splitmix64(h xor chunk)."""
    padded = np.concatenate((data, np.zeros(8, dtype=np.uint8)))
    # Every byte offset viewed as the start of a little-endian uint64 (unaligned reads).
    words = np.ndarray(shape=(len(data),), dtype="<u8", buffer=padded, strides=(1,))
    hashes = splitmix64(lengths.astype(np.uint64) * _LENGTH_SALT)
    active = np.flatnonzero(lengths > 0)
    chunk = 0
    while len(active):
        remaining = np.minimum(lengths[active] - 8 * chunk, 8)
        values = words[starts[active] + 8 * chunk] & _LOW_BYTES_MASK[remaining]
        hashes[active] = splitmix64(hashes[active] ^ values)
        chunk += 1
        active = active[lengths[active] > 8 * chunk]
    return hashes


def hash_byte_ranges(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Hash the byte ranges data[starts[i]:ends[i]] (uint8 data) to uint64, one per range.

    Ranges of at most 64 bytes (words) are read 8 bytes at a time and chained through
    splitmix64; longer ones (lines) take a polynomial over their bytes, finished by splitmix64
    together with the length. Both are plain functions of the bytes, so hashes are stable.
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64)
    lengths = ends - starts
    hashes = np.empty(len(starts), dtype=np.uint64)
    short = lengths <= _PACKED_MAX_BYTES
    if short.any():
        hashes[short] = _packed_hashes(data, starts[short], lengths[short])
    if not short.all():
        long_starts, long_ends = starts[~short], ends[~short]
        sums = _polynomial_hashes(data, long_starts, long_ends)
        long_lengths = (long_ends - long_starts).astype(np.uint64)
        hashes[~short] = splitmix64(sums ^ splitmix64(long_lengths * _LENGTH_SALT))
    return hashes


def string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 data, int64 offsets of length n+1) of a string array, whatever its arrow layout."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    array = array.cast(pa.large_string())
    if array.null_count:
        array = array.fill_null("")
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return data, offsets


def hash_strings(array: pa.Array) -> np.ndarray:
    """uint64 hash of each string's UTF-8 bytes (nulls hash like the empty string)."""
    data, offsets = string_buffers(array)
    return hash_byte_ranges(data, offsets[:-1], offsets[1:])


def combine_hash_columns(columns: np.ndarray) -> np.ndarray:
    """Order-sensitive hash of each row of a (rows, k) uint64 matrix (e.g. the r values of a band)."""
    multipliers = _powers(_BYTE_MULTIPLIER, columns.shape[1])
    combined = np.zeros(columns.shape[0], dtype=np.uint64)
    for position in range(columns.shape[1]):  # k is small (rows per band)
        combined += splitmix64(columns[:, position]) * multipliers[position]
    return splitmix64(combined)
