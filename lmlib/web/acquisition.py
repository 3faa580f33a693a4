"""Common Crawl acquisition: choose files from a crawl's listing and download them, resumably.

- `read_crawl_listing(source, sample=..., files=..., seed=...)`: a crawl's `warc.paths.gz` or
  `wet.paths.gz` (gzip text, one path relative to the data endpoint per line), from a URL or a
  local file, and a deterministic choice of files: a seeded sample (kept in listing order) or
  an explicit list.
- each file comes through `lmlib.download.download_file` (resumable, retried, verified, renamed
  into place only when complete; re-exported here): an interrupted transfer leaves only a
  hidden `.part` file, which the crawl sensor ignores and the next run resumes.
- `acquire_crawl_files(listing, base_url, crawl_dir, config)`: the stage; downloads the chosen
  files into the crawl directory, skipping the ones already there, and reports counts, bytes
  and seconds per file.

The real endpoint (https://data.commoncrawl.org/) is only `AcquisitionConfig`'s default.
"""

from __future__ import annotations

import gzip
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lmlib.download import (  # noqa: F401 - re-exported: the crawl's download is this one
    CHUNK_BYTES,
    USER_AGENT,
    Download,
    DownloadError,
    Progress,
    download_file,
    logging_progress,
    part_path,
)
from lmlib.stage import StageResult, check_positive

COMMON_CRAWL_URL = "https://data.commoncrawl.org/"


# ---- listing ---------------------------------------------------------------------------------


def resolve_url(base_url: str, path: str) -> str:
    """`path` under `base_url`, unless it already is a URL."""
    if "://" in path:
        return path
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def _read_source(source: str | Path, timeout_seconds: float) -> bytes:
    if "://" in str(source):
        request = urllib.request.Request(str(source), headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            return response.read()
    return Path(source).read_bytes()


def read_crawl_listing(
    source: str | Path,
    *,
    sample: int | None = None,
    files: Sequence[str] = (),
    seed: int = 0,
    timeout_seconds: float = 60.0,
) -> list[str]:
    """The paths of a crawl listing (`warc.paths.gz`, `wet.paths.gz`; a URL or a local file),
    all of them, the `files` named (a full path or a file name from the listing), or a seeded
    sample of `sample` paths. The result keeps the listing's order, so the same seed always
    chooses and downloads the same files in the same order."""
    raw = _read_source(source, timeout_seconds)
    try:
        text = gzip.decompress(raw).decode("utf-8")
    except (OSError, EOFError) as error:
        raise ValueError(f"crawl listing {source} is not a gzip text file ({error}); expected a "
                         "warc.paths.gz or wet.paths.gz") from error
    paths = [line.strip() for line in text.splitlines() if line.strip()]
    if files:
        by_name = {PurePosixPath(path).name: path for path in paths}
        known = set(paths)
        missing = [name for name in files if name not in known and name not in by_name]
        if missing:
            raise ValueError(f"files {missing} are not in the crawl listing {source} "
                             f"({len(paths)} paths); give paths or file names from it")
        wanted = {name if name in known else by_name[name] for name in files}
        return [path for path in paths if path in wanted]
    if sample is None or sample >= len(paths):
        return paths
    chosen = set(random.Random(seed).sample(range(len(paths)), sample))
    return [path for index, path in enumerate(paths) if index in chosen]


# ---- the stage -------------------------------------------------------------------------------


@dataclass
class AcquisitionConfig:
    """Which crawl files to fetch and how. `listing` is a path under `base_url`, a URL or a
    local file; `files` (paths or file names from it) wins over `sample`."""

    base_url: str = COMMON_CRAWL_URL
    listing: str = "crawl-data/CC-MAIN-2024-22/wet.paths.gz"
    sample: int | None = 1  # files drawn (seeded) from the listing; None: every file
    files: tuple[str, ...] = ()
    seed: int = 0
    retries: int = 5
    backoff_seconds: float = 1.0
    timeout_seconds: float = 60.0
    bandwidth_limit_bytes_per_s: int | None = None
    stop_on_error: bool = False  # False: record the failure and fetch the other files

    def __post_init__(self):
        check_positive(self, "sample", "bandwidth_limit_bytes_per_s", allow_none=True)
        check_positive(self, "backoff_seconds", "timeout_seconds")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"AcquisitionConfig.retries must be an int >= 0, got {self.retries!r}")
        if not self.base_url.startswith(("http://", "https://", "file://")):
            raise ValueError(f"AcquisitionConfig.base_url must be an http(s) URL, got "
                             f"{self.base_url!r}")

    def listing_source(self) -> str:
        return self.listing if Path(self.listing).is_file() else resolve_url(self.base_url,
                                                                           self.listing)


@dataclass
class AcquisitionResult(StageResult):
    MANIFEST_COUNTS = ("files_downloaded", "files_skipped", "files_failed", "bytes_downloaded")

    files_chosen: int
    files_downloaded: int
    files_skipped: int  # already complete in the crawl directory
    files_failed: int
    bytes_downloaded: int
    seconds: float
    megabytes_per_second: float
    files: list[dict] = field(default_factory=list)  # one row per file: name, status, bytes...


def acquire_crawl_files(
    listing: Sequence[str],
    base_url: str,
    crawl_dir: Path,
    config: AcquisitionConfig,
    *,
    log: Callable[[str], None] | None = None,
) -> AcquisitionResult:
    """Download every path of `listing` (from `read_crawl_listing`) under `base_url` into
    `crawl_dir`, named by its file name (Common Crawl's are unique within a crawl). Files
    already there are complete (only a finished download gets its final name) and skipped."""
    crawl_dir = Path(crawl_dir)
    rows, started = [], time.monotonic()
    for path in listing:
        destination = crawl_dir / PurePosixPath(path).name
        if destination.exists():
            rows.append({"file": destination.name, "status": "skipped",
                         "bytes": destination.stat().st_size, "seconds": 0.0, "error": ""})
            continue
        try:
            download = download_file(
                resolve_url(base_url, path), destination, retries=config.retries,
                backoff_seconds=config.backoff_seconds, timeout_seconds=config.timeout_seconds,
                bandwidth_limit_bytes_per_s=config.bandwidth_limit_bytes_per_s,
                progress=logging_progress(log, destination.name) if log else None)
        except DownloadError as error:
            if config.stop_on_error:
                raise
            rows.append({"file": destination.name, "status": "failed", "bytes": 0,
                         "seconds": 0.0, "error": str(error)})
            continue
        rows.append({"file": destination.name, "status": "downloaded",
                     "bytes": download.bytes_transferred,
                     "seconds": round(download.seconds, 3), "error": ""})
    seconds = time.monotonic() - started
    downloaded = [row for row in rows if row["status"] == "downloaded"]
    transferred = sum(row["bytes"] for row in downloaded)
    return AcquisitionResult(
        files_chosen=len(listing), files_downloaded=len(downloaded),
        files_skipped=sum(row["status"] == "skipped" for row in rows),
        files_failed=sum(row["status"] == "failed" for row in rows),
        bytes_downloaded=transferred, seconds=round(seconds, 3),
        megabytes_per_second=round(transferred / 1e6 / seconds, 3) if seconds > 0 else 0.0,
        files=rows)
