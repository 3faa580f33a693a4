"""Data versions of the crawl files: each file's sha256, reported as an observation of its
`crawl_files` partition, so Dagster marks stale the chain of a file whose bytes changed.

Crawl files are about 1 GB each at scale, so hashes are cached in $LMPIPE_HOME/crawl_sha256.json
keyed by (path, size, mtime_ns): an unchanged file is never read twice, and a file whose size or
mtime changed is a cache miss, which is how the crawl sensor notices a rewritten file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from dagster import AssetObservation
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from lmlib.artifacts import sha256_file

CACHE_NAME = "crawl_sha256.json"
CRAWL_FILES = "crawl_files"  # the asset key; named, not imported (the asset module imports this)


class Sha256Cache:
    """{path: [size, mtime_ns, sha256]} in a JSON file; `save` writes it atomically."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries: dict[str, list] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            self.entries = {}

    @staticmethod
    def _stat(file: Path) -> tuple[int, int]:
        stat = file.stat()
        return stat.st_size, stat.st_mtime_ns

    def cached(self, file: Path) -> str | None:
        """The file's sha256 when its size and mtime are those it was hashed with, else None."""
        entry = self.entries.get(str(file))
        return entry[2] if entry and tuple(entry[:2]) == self._stat(file) else None

    def sha256(self, file: Path) -> str:
        if (digest := self.cached(file)) is None:
            stat = self._stat(file)
            digest = sha256_file(file)
            self.entries[str(file)] = [*stat, digest]
        return digest

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(self.entries, sort_keys=True))
        os.replace(temporary, self.path)


def crawl_file_versions(home: Path, crawl_dir: Path, keys: Iterable[str], *,
                        only_changed: bool = False,
                        budget_seconds: float | None = None) -> dict[str, str]:
    """{partition key: sha256} of the crawl files `keys` (missing files left out).

    `only_changed`: only the files not hashed yet with their current size and mtime (new or
    rewritten). `budget_seconds`: stop hashing after that long; the rest are still misses next
    time (a sensor tick must end in time)."""
    cache = Sha256Cache(home / CACHE_NAME)
    versions: dict[str, str] = {}
    started = time.monotonic()
    try:
        for key in keys:
            file = crawl_dir / key
            if not file.is_file():
                continue
            cached = cache.cached(file)
            if cached is not None:
                if not only_changed:
                    versions[key] = cached
                continue
            if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                break
            versions[key] = cache.sha256(file)
    finally:
        cache.save()
    return versions


def observations(versions: dict[str, str]) -> list[AssetObservation]:
    """One `crawl_files` observation a partition, its data version the file's sha256."""
    return [AssetObservation(CRAWL_FILES, partition=key, tags={DATA_VERSION_TAG: digest},
                             metadata={"sha256": digest})
            for key, digest in sorted(versions.items())]
