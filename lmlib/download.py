"""HTTP(S) downloads with urllib alone: resumable, retried, verified, atomic.

Notable:
- `download_file(url, destination, ...)`: the bytes go to a hidden `.NAME.part` file beside the
  destination; an interrupted transfer continues it with `Range: bytes=N-` (a server that
  ignores Range and answers 200 restarts it cleanly). Connection errors, short bodies and
  5xx/429 answers are retried with exponential backoff; an attempt that made progress resets
  the count, so a flaky link still finishes a large file. The length (Content-Length /
  Content-Range, or `expected_size`) and an optional sha256 are verified before the `.part`
  file is renamed to its final name: a file under its final name is always complete. A
  transfer that cannot be completed raises `DownloadError` and leaves only the `.part` file
  (which the next call resumes).
- the crawl's files (lmlib.web.acquisition) and the benchmarks' data (lmlib.tasks) both come
  through it; it needs the standard library only, so evaluation on a machine without the
  crawl's libraries can still download. (lmlib.web.fasttext_models still has its own small,
  non-resumable download for classifier models: folding it in here is left to do.)
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

USER_AGENT = "lmlib-acquisition/1 (+https://commoncrawl.org/terms-of-use)"
CHUNK_BYTES = 1 << 16

# progress(bytes_done, bytes_total or None, bytes_per_second of this attempt)
Progress = Callable[[int, int | None, float], None]


class DownloadError(RuntimeError):
    """A download that could not be completed or verified; no file was left under its final
    name."""


@dataclass
class Download:
    """What `download_file` did for one file."""

    path: Path
    size: int
    bytes_transferred: int  # this call, over every attempt
    resumed_from: int  # bytes of a .part file that were already there
    attempts: int
    seconds: float


class _Retryable(Exception):
    """A failed attempt worth repeating (connection lost, short body, 5xx)."""


def part_path(destination: Path) -> Path:
    """The hidden partial file beside `destination` (never a crawl file name)."""
    return destination.parent / f".{destination.name}.part"


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _total_from_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header."""
    match = _CONTENT_RANGE.match(header or "")
    if not match:
        return None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


class _Throttle:
    """Sleeps so that the bytes of one attempt arrive no faster than `limit` bytes/s."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.start = time.monotonic()
        self.done = 0

    def account(self, count: int) -> float:
        """Record `count` bytes; returns the attempt's rate so far."""
        self.done += count
        elapsed = time.monotonic() - self.start
        if self.limit:
            ahead = self.done / self.limit - elapsed
            if ahead > 0:
                time.sleep(ahead)
                elapsed += ahead
        return self.done / elapsed if elapsed > 0 else 0.0


def _attempt(url, part, timeout_seconds, limit, progress) -> int | None:
    """One request continuing `part`; returns the total size when known. Raises _Retryable."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            _start, total = _total_from_range(error.headers.get("Content-Range"))
            if total == offset:  # the .part file already holds every byte
                return total
            part.unlink()  # a .part longer than the file: start over
            raise _Retryable(f"HTTP 416 for a range from byte {offset}; restarting") from error
        if error.code >= 500 or error.code == 429:
            raise _Retryable(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}; check the URL and the "
                            "base_url setting") from error
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
            TimeoutError) as error:
        raise _Retryable(f"{type(error).__name__}: {error}") from error

    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if response.status == 206:
            start, total = _total_from_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Retryable(f"server answered a range from byte {start}, asked {offset}")
            mode = "ab"
        else:  # 200: the server ignored Range (or there was none): the whole file, from 0
            offset, total, mode = 0, length, "wb"
        throttle = _Throttle(limit)
        received = 0
        # small reads under a limit, so the throttle sleeps often and briefly
        chunk_bytes = max(1, min(CHUNK_BYTES, limit // 20)) if limit else CHUNK_BYTES
        with part.open(mode) as sink:
            try:
                while chunk := response.read(chunk_bytes):
                    sink.write(chunk)
                    received += len(chunk)
                    rate = throttle.account(len(chunk))
                    if progress:
                        progress(offset + received, total, rate)
            except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as error:
                raise _Retryable(f"connection lost after {offset + received} bytes: "
                                 f"{type(error).__name__}: {error}") from error
    if length is not None and received < length:
        raise _Retryable(f"body ended after {received} of {length} bytes "
                         f"(file at {offset + received} of {total})")
    return total


def download_file(
    url: str,
    destination: str | Path,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    retries: int = 5,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 60.0,
    bandwidth_limit_bytes_per_s: int | None = None,
    progress: Progress | None = None,
) -> Download:
    """Download `url` to `destination` through a resumable `.part` file (module docstring).

    `retries` failed attempts in a row are tolerated, waiting `backoff_seconds`, then twice
    that, and so on. Raises `DownloadError` when the file cannot be completed or fails
    verification; `destination` then does not exist."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(destination)
    resumed_from = part.stat().st_size if part.exists() else 0
    started, attempts, failures = time.monotonic(), 0, 0
    while True:
        attempts += 1
        before = part.stat().st_size if part.exists() else 0
        try:
            total = _attempt(url, part, timeout_seconds, bandwidth_limit_bytes_per_s, progress)
            break
        except _Retryable as error:
            progressed = part.exists() and part.stat().st_size > before
            failures = 1 if progressed else failures + 1
            if failures > retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{url}: gave up after {attempts} attempts ({failures} in a row without "
                    f"progress); last error: {error}. {have} bytes kept in {part} for a later "
                    f"resume; {destination} was not written") from error
            time.sleep(backoff_seconds * 2 ** (failures - 1))
    size = part.stat().st_size
    for name, wanted in (("Content-Length", total), ("expected_size", expected_size)):
        if wanted is not None and size != wanted:
            part.unlink()
            raise DownloadError(f"{url}: got {size} bytes but {name} says {wanted}; the partial "
                                f"file was deleted and {destination} was not written")
    if sha256 is not None:
        digest = hashlib.sha256()
        with part.open("rb") as source:
            while block := source.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: sha256 {digest.hexdigest()} differs from the expected "
                                f"{sha256}; the file was deleted, {destination} was not written")
    os.replace(part, destination)  # atomic: the final name always holds a complete file
    return Download(path=destination, size=size, bytes_transferred=size - resumed_from,
                    resumed_from=resumed_from, attempts=attempts,
                    seconds=time.monotonic() - started)


def logging_progress(log: Callable[[str], None], name: str, every_seconds: float = 10.0
                     ) -> Progress:
    """A progress callback that logs one line ("name: 40% 12.0/30.0 MB at 5.1 MB/s") at most
    every `every_seconds`: a progress bar for logs (Dagster's run log, a terminal)."""
    last = [0.0]

    def report(done: int, total: int | None, rate: float) -> None:
        now = time.monotonic()
        if now - last[0] < every_seconds and done != total:
            return
        last[0] = now
        share = f"{100 * done / total:.0f}% " if total else ""
        of = f"/{total / 1e6:.1f}" if total else ""
        log(f"{name}: {share}{done / 1e6:.1f}{of} MB at {rate / 1e6:.1f} MB/s")

    return report
