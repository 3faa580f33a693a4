"""Exact line (or paragraph) deduplication: keep only the units that occur once in the corpus.

Notable:
- Works on raw bytes: lines are split at b"\\n" (the terminator is not part of the key, so a final
  line without a newline matches the same line elsewhere), hashed with a stable vectorized 64-bit
  hash, and counted as (hash, count) arrays: memory grows with distinct lines, not their text.
- Two passes for files: count every line of every file, then rewrite each file (same basename)
  keeping only lines whose corpus count is 1, with their original terminators.
- "paragraph" units are maximal runs of non-empty lines; blank lines are never removed in
  that mode.
- The same helpers serve the pipeline: the global clusters stage counts the line hashes of the
  surviving documents, and the per-partition stage removes the repeated ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmlib.dedup.hashing import hash_byte_ranges

UNITS = ("line", "paragraph")


def line_ranges(data: np.ndarray, doc_offsets: np.ndarray):
    """Lines of each document inside one byte buffer.

    Returns (starts, ends, terminator_lengths, doc_index): line i is data[starts[i]:ends[i]]
    followed by terminator_lengths[i] (0 or 1) newline bytes. A document ending in a newline has
    no empty line after it; an empty document has no lines.
    """
    doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
    total = int(doc_offsets[-1]) if len(doc_offsets) else 0
    newlines = np.flatnonzero(data[:total] == 10).astype(np.int64)
    nonempty_doc_starts = doc_offsets[:-1][doc_offsets[1:] > doc_offsets[:-1]]
    starts = np.union1d(nonempty_doc_starts, newlines + 1)
    starts = starts[starts < total]
    # The document of a start: the last document whose offset is <= start (skips empty ones).
    doc_index = np.searchsorted(doc_offsets, starts, side="right") - 1
    doc_end = doc_offsets[doc_index + 1]
    newline_at = np.append(newlines, total)[np.searchsorted(newlines, starts)]
    ends = np.minimum(newline_at, doc_end)
    terminators = (ends < doc_end).astype(np.int64)
    return starts, ends, terminators, doc_index


def unit_hashes(data: np.ndarray, doc_offsets: np.ndarray, unit: str = "line"):
    """Hash of each dedup unit, and which unit each line belongs to (-1: never removed).

    Returns (hashes, unit_doc, line_unit, lines): unit_doc is each unit's document and lines is
    the line_ranges tuple.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    lines = line_ranges(data, doc_offsets)
    starts, ends, _, doc_index = lines
    if unit == "line":
        return hash_byte_ranges(data, starts, ends), doc_index, np.arange(len(starts)), lines
    nonempty = ends > starts
    previous_continues = np.zeros(len(starts), dtype=bool)
    previous_continues[1:] = nonempty[:-1] & nonempty[1:] & (doc_index[1:] == doc_index[:-1])
    begins = nonempty & ~previous_continues
    line_unit = np.where(nonempty, np.cumsum(begins) - 1, -1)
    next_continues = np.append(previous_continues[1:], False)
    last_line = np.flatnonzero(nonempty & ~next_continues)  # one per paragraph, in order
    # A paragraph's key spans its first line's start to its last line's end (inner newlines in).
    hashes = hash_byte_ranges(data, starts[begins], ends[last_line])
    return hashes, doc_index[begins], line_unit, lines


def count_hashes(hash_arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique hashes, counts) over several arrays of hashes."""
    if not hash_arrays:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    unique, counts = np.unique(np.concatenate(hash_arrays), return_counts=True)
    return unique, counts


def _merge_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    hashes = np.concatenate([h for h, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    unique, inverse = np.unique(hashes, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)


def drop_lines(data: np.ndarray, doc_offsets: np.ndarray, lines, drop_line: np.ndarray):
    """Remove the given lines (with their terminators); returns (new data, new doc offsets)."""
    starts, ends, terminators, _ = lines
    total = len(data)
    delta = np.zeros(total + 1, dtype=np.int64)
    np.add.at(delta, starts[drop_line], 1)
    np.add.at(delta, (ends + terminators)[drop_line], -1)
    keep_byte = np.cumsum(delta[:-1]) == 0
    kept_before = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(keep_byte, out=kept_before[1:])
    return data[keep_byte], kept_before[np.asarray(doc_offsets, dtype=np.int64)]


def repeated_unit_mask(unit_hash: np.ndarray, line_unit: np.ndarray, repeated: np.ndarray):
    """Which lines to drop: those whose unit's hash is in the sorted array `repeated`."""
    if len(repeated) == 0 or len(unit_hash) == 0:
        return np.zeros(len(line_unit), dtype=bool)
    position = np.minimum(np.searchsorted(repeated, unit_hash), len(repeated) - 1)
    unit_is_repeated = repeated[position] == unit_hash
    return (line_unit >= 0) & unit_is_repeated[np.maximum(line_unit, 0)]


def exact_line_deduplication(
    input_files: Sequence[str | Path], output_directory: str | Path, unit: str = "line"
) -> dict:
    """Rewrite every file under its basename in output_directory keeping only corpus-unique lines.

    A line is kept when it occurs exactly once in the whole corpus (all files, all positions),
    so two identical one-line files both come out empty.
    """
    started = time.perf_counter()
    paths = [Path(p) for p in input_files]
    check_unique_basenames(paths)
    output_directory = Path(output_directory)
    output_directory.mkdir(parents=True, exist_ok=True)

    parts: list[tuple[np.ndarray, np.ndarray]] = []
    pending = 0
    for path in paths:
        data = np.fromfile(path, dtype=np.uint8)
        hashes, _, _, _ = unit_hashes(data, np.array([0, len(data)]), unit)
        parts.append(count_hashes([hashes]))
        pending += len(parts[-1][0])
        if pending > 8_000_000 and len(parts) > 1:  # bound memory by distinct lines
            parts = [_merge_counts(parts)]
            pending = len(parts[0][0])
    distinct, counts = _merge_counts(parts) if parts else count_hashes([])
    repeated = distinct[counts > 1]

    lines_in = lines_out = bytes_in = bytes_out = 0
    for path in paths:
        data = np.fromfile(path, dtype=np.uint8)
        doc_offsets = np.array([0, len(data)])
        hashes, _, line_unit, lines = unit_hashes(data, doc_offsets, unit)
        drop = repeated_unit_mask(hashes, line_unit, repeated)
        kept, _ = drop_lines(data, doc_offsets, lines, drop)
        (output_directory / path.name).write_bytes(kept.tobytes())
        lines_in += len(line_unit)
        lines_out += int((~drop).sum())
        bytes_in += len(data)
        bytes_out += len(kept)
    return {
        "files": len(paths),
        "unit": unit,
        "distinct_units": int(len(distinct)),
        "repeated_units": int(len(repeated)),
        "lines_in": lines_in,
        "lines_out": lines_out,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "seconds": round(time.perf_counter() - started, 4),
    }


def check_unique_basenames(paths: Sequence[Path]) -> None:
    """Every input is a file and no two share a basename (outputs are written under it)."""
    seen: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"dedup input {path} does not exist or is not a file")
        if path.name in seen:
            raise ValueError(
                f"two inputs share the basename {path.name!r} ({seen[path.name]} and {path}); "
                "outputs are written under their basenames, so rename one of them"
            )
        seen[path.name] = path
