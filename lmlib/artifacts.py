"""Artifact directories that are either complete or absent.

Every stage writes its output into a fresh temporary directory beside the final one; only when
the stage has finished is a `manifest.json` (sha256 of every file, counts, config, code and library
versions) added and the directory renamed into place. A crash therefore never leaves a directory
that looks complete, and re-running a stage replaces the old artifact in one rename.

The manifest holds no timestamps, so the same inputs, config and seed give byte-identical
artifacts, manifest included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmlib

MANIFEST_NAME = "manifest.json"
_HASH_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_directory(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory` (manifest excluded), keyed by relative path."""
    hashes = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME:
            hashes[path.relative_to(directory).as_posix()] = sha256_file(path)
    return hashes


def code_version() -> str:
    """The git commit of the checkout lmlib runs from (with '+dirty' for local changes), else the
    library version; Dagster shows it beside each materialization."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"lmlib-{lmlib.__version__}"


def without_timings(record: Any) -> Any:
    """`record` with every key that ends in "seconds" dropped, at any depth: what a JSON record
    of an artifact leaves to its manifest's counts and the run's metadata, so that the same
    inputs, config and seed give byte-identical files."""
    if isinstance(record, Mapping):
        return {key: without_timings(value) for key, value in record.items()
                if not str(key).endswith("seconds")}
    if isinstance(record, list | tuple):
        return [without_timings(value) for value in record]
    return record


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def write_manifest(
    directory: Path,
    *,
    stage: str,
    config: Any = None,
    counts: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write `directory`'s manifest; `extra` fields (such as the orchestrator's code version of
    the stage) are recorded as they are."""
    manifest = {
        **_jsonable(extra),
        "stage": stage,
        "files": hash_directory(directory),
        "counts": _jsonable(counts or {}),
        "config": _jsonable(config),
        "inputs": _jsonable(inputs or {}),
        "code_version": code_version(),
        "library_version": lmlib.__version__,
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"{directory} has no {MANIFEST_NAME}: the artifact is missing or was never completed; "
            "materialize the upstream asset first"
        )
    return json.loads(path.read_text())


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `final` only if the block completes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    retired = None
    if final.exists():
        retired = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, retired)
    os.rename(temporary, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final` that replaces it only if the block completes (a
    reader never sees half a file: downloads, single-file records)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, final)
