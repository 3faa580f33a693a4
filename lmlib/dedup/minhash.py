"""Seeded MinHash signatures and LSH band hashes, vectorized with numpy uint64.

Notable:
- Hash function i is h_i(x) = a_i * x + b_i mod 2**64 (a_i odd, so a permutation of uint64)
  applied to shingle hashes that splitmix64 already mixed; the minimum is taken on the full 64
  bits, whose order is decided by the well-mixed high bits.
- One Python iteration per hash function, each vectorized over every shingle of the batch with
  np.minimum.reduceat: no loop per shingle or per document.
- A band hash is an order-sensitive 64-bit hash of the band's `rows` MinHash values.
"""

from __future__ import annotations

import numpy as np

from lmlib.dedup.hashing import combine_hash_columns

EMPTY_SIGNATURE_VALUE = np.iinfo(np.uint64).max
_BLOCK_SHINGLES = 1 << 15


def minhash_parameters(num_hashes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint64 vectors of the seeded hash functions; a is odd."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(0, 2**64, size=num_hashes, dtype=np.uint64, endpoint=False) | np.uint64(1)
    b = rng.integers(0, 2**64, size=num_hashes, dtype=np.uint64, endpoint=False)
    return a, b


def minhash_signatures(
    shingles: np.ndarray, offsets: np.ndarray, num_hashes: int, seed: int
) -> np.ndarray:
    """(documents, num_hashes) uint64 MinHash matrix of CSR shingle sets.

    Documents without shingles get the all-max signature; callers must not bucket them.
    """
    num_docs = len(offsets) - 1
    signatures = np.full((num_docs, num_hashes), EMPTY_SIGNATURE_VALUE, dtype=np.uint64)
    a, b = minhash_parameters(num_hashes, seed)
    rows = np.flatnonzero(offsets[1:] > offsets[:-1])
    # Blocks of whole documents holding about _BLOCK_SHINGLES shingles stay in the CPU cache
    # through the multiply, add and min of all hash functions.
    block_ends = np.searchsorted(offsets[rows + 1], offsets[rows] + _BLOCK_SHINGLES, side="left")
    first = 0
    while first < len(rows):
        last = max(int(block_ends[first]), first + 1)  # at least one document per block
        block_rows = rows[first:last]
        lo, hi = offsets[block_rows[0]], offsets[block_rows[-1] + 1]
        values = shingles[lo:hi]
        segment_starts = offsets[block_rows] - lo
        permuted = np.empty_like(values)
        block = np.empty((num_hashes, len(block_rows)), dtype=np.uint64)
        for i in range(num_hashes):
            np.multiply(values, a[i], out=permuted)
            permuted += b[i]
            np.minimum.reduceat(permuted, segment_starts, out=block[i])
        signatures[block_rows] = block.T
        first = last
    return signatures


def band_hashes(signatures: np.ndarray, num_bands: int) -> np.ndarray:
    """(documents, num_bands) uint64: hash of each band of `rows = num_hashes / num_bands` values."""
    num_docs, num_hashes = signatures.shape
    if num_hashes % num_bands:
        raise ValueError(f"num_hashes ({num_hashes}) must be divisible by num_bands ({num_bands})")
    rows = num_hashes // num_bands
    bands = signatures.reshape(num_docs, num_bands, rows).reshape(num_docs * num_bands, rows)
    return combine_hash_columns(bands).reshape(num_docs, num_bands)

