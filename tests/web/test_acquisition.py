"""Common Crawl acquisition against a local HTTP server on 127.0.0.1 serving real crawl files
from ../shared/data/crawl: listing -> download -> identical file; a dropped connection resumes
with a Range request; a truncated body is reported and never gets the final name; the
bandwidth limit slows a download; a server that ignores Range restarts the file cleanly."""

import gzip
import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lmlib.web.acquisition import (
    AcquisitionConfig,
    DownloadError,
    acquire_crawl_files,
    download_file,
    part_path,
    read_crawl_listing,
)
from tests.conftest import shared_path

FILES = ("cc-main-2024-22-whirlwind.warc.wet.gz", "cc-main-2024-22-whirlwind.warc.gz",
         "cc-main-2020-34-excerpt.warc.gz", "dolma-sample-0000.warc.gz")
PREFIX = "crawl-data/CC-TEST/segments/0/"


class CrawlServer(ThreadingHTTPServer):
    """Serves `files` ({url path: bytes}) with Range support; can drop the connection after
    `drop_after` bytes once, send `truncate_by` bytes fewer than it announces every time,
    ignore Range, or answer 503 `fail_first` times. Records each request's Range header."""

    daemon_threads = True

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), CrawlHandler)
        self.files = files
        self.ranges: list[str | None] = []
        self.drop_after: int | None = None
        self.truncate_by = 0
        self.ignore_range = False
        self.fail_first = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class CrawlHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        server: CrawlServer = self.server
        body = server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        server.ranges.append(requested)
        if server.fail_first:
            server.fail_first -= 1
            self.send_error(503, "try again")
            return
        start = 0
        if requested and not server.ignore_range:
            start = int(requested.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:len(body) - server.truncate_by]
        if server.drop_after is not None:
            payload, server.drop_after = payload[:server.drop_after], None
            self.wfile.write(payload)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


@pytest.fixture
def crawl_server():
    crawl = shared_path("data/crawl")
    files = {PREFIX + name: (crawl / name).read_bytes() for name in FILES}
    listing = "\n".join(files) + "\n"
    files["crawl-data/CC-TEST/wet.paths.gz"] = gzip.compress(listing.encode())
    server = CrawlServer(files)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_listing_sample_is_deterministic_and_in_listing_order(crawl_server):
    url = crawl_server.base_url + "crawl-data/CC-TEST/wet.paths.gz"
    everything = read_crawl_listing(url)
    assert everything == [PREFIX + name for name in FILES]
    sample = read_crawl_listing(url, sample=2, seed=7)
    assert len(sample) == 2 and sample == read_crawl_listing(url, sample=2, seed=7)
    assert sample == [path for path in everything if path in sample]
    assert read_crawl_listing(url, files=[FILES[2]]) == [PREFIX + FILES[2]]
    with pytest.raises(ValueError, match="not in the crawl listing"):
        read_crawl_listing(url, files=["missing.warc.gz"])


def test_listing_to_crawl_directory_gives_identical_files(crawl_server, tmp_path):
    config = AcquisitionConfig(base_url=crawl_server.base_url,
                               listing="crawl-data/CC-TEST/wet.paths.gz", sample=None)
    listing = read_crawl_listing(config.listing_source())
    result = acquire_crawl_files(listing, config.base_url, tmp_path, config)
    assert (result.files_downloaded, result.files_failed) == (len(FILES), 0)
    for name in FILES:
        source = crawl_server.files[PREFIX + name]
        assert (tmp_path / name).read_bytes() == source
    assert result.bytes_downloaded == sum(len(crawl_server.files[p]) for p in listing)
    assert not list(tmp_path.glob(".*.part"))

    again = acquire_crawl_files(listing, config.base_url, tmp_path, config)
    assert (again.files_skipped, again.files_downloaded, again.bytes_downloaded) == (len(FILES), 0, 0)


def test_sha256_is_verified(crawl_server, tmp_path):
    url = crawl_server.base_url + PREFIX + FILES[2]
    body = crawl_server.files[PREFIX + FILES[2]]
    download = download_file(url, tmp_path / FILES[2], sha256=hashlib.sha256(body).hexdigest(),
                             expected_size=len(body))
    assert download.path.read_bytes() == body
    with pytest.raises(DownloadError, match="sha256"):
        download_file(url, tmp_path / "other.warc.gz", sha256="0" * 64)
    assert not (tmp_path / "other.warc.gz").exists()


def test_dropped_connection_resumes_where_it_stopped(crawl_server, tmp_path):
    name = FILES[3]
    body = crawl_server.files[PREFIX + name]
    crawl_server.drop_after = 100_000
    progress = []
    download = download_file(crawl_server.base_url + PREFIX + name, tmp_path / name,
                             backoff_seconds=0.01, progress=lambda *report: progress.append(report))
    assert download.path.read_bytes() == body
    assert crawl_server.ranges == [None, "bytes=100000-"]  # resumed, not restarted from 0
    assert download.attempts == 2 and download.bytes_transferred == len(body)
    assert progress[-1][:2] == (len(body), len(body))


def test_truncated_file_is_reported_and_never_gets_its_final_name(crawl_server, tmp_path):
    name = FILES[2]
    crawl_server.truncate_by = 1000  # every answer ends 1000 bytes short of its Content-Length
    destination = tmp_path / name
    with pytest.raises(DownloadError, match="gave up after .* without progress") as error:
        download_file(crawl_server.base_url + PREFIX + name, destination, retries=2,
                      backoff_seconds=0.01)
    assert str(len(crawl_server.files[PREFIX + name]) - 1000) in str(error.value)
    assert not destination.exists()
    assert part_path(destination).exists()  # kept for a later resume; not a crawl file name

    config = AcquisitionConfig(base_url=crawl_server.base_url, retries=1, backoff_seconds=0.01)
    result = acquire_crawl_files([PREFIX + name], config.base_url, tmp_path / "crawl", config)
    assert (result.files_failed, result.files_downloaded) == (1, 0)
    assert "gave up" in result.files[0]["error"]
    assert not (tmp_path / "crawl" / name).exists()


def test_server_that_ignores_range_restarts_cleanly(crawl_server, tmp_path):
    name = FILES[2]
    destination = tmp_path / name
    part_path(destination).write_bytes(b"stale bytes from another attempt")
    crawl_server.ignore_range = True
    download = download_file(crawl_server.base_url + PREFIX + name, destination)
    assert destination.read_bytes() == crawl_server.files[PREFIX + name]
    assert crawl_server.ranges == ["bytes=32-"] and download.resumed_from == 32


def test_server_errors_are_retried(crawl_server, tmp_path):
    crawl_server.fail_first = 2
    name = FILES[0]
    download = download_file(crawl_server.base_url + PREFIX + name, tmp_path / name,
                             backoff_seconds=0.01)
    assert download.attempts == 3
    assert (tmp_path / name).read_bytes() == crawl_server.files[PREFIX + name]


def test_bandwidth_limit_slows_the_download(crawl_server, tmp_path):
    name = FILES[1]  # 18,857 bytes: ~0.3 s at 60 kB/s
    url = crawl_server.base_url + PREFIX + name
    started = time.monotonic()
    download_file(url, tmp_path / "limited" / name, bandwidth_limit_bytes_per_s=60_000)
    limited = time.monotonic() - started
    started = time.monotonic()
    download_file(url, tmp_path / "free" / name)
    unlimited = time.monotonic() - started
    assert limited >= 0.25, limited
    assert unlimited < limited / 2, (unlimited, limited)
    assert (tmp_path / "limited" / name).read_bytes() == crawl_server.files[PREFIX + name]


def test_downloaded_crawl_files_asset_fills_the_crawl_directory(crawl_server, tmp_path):
    from dagster import DagsterInstance, materialize

    from dagster_project.assets.acquisition import downloaded_crawl_files
    from dagster_project.resources import Storage

    crawl = tmp_path / "crawl"
    run_config = {"ops": {"downloaded_crawl_files": {"config": {
        "base_url": crawl_server.base_url, "listing": "crawl-data/CC-TEST/wet.paths.gz",
        "sample": 2, "seed": 3, "backoff_seconds": 0.01}}}}
    outcome = materialize([downloaded_crawl_files], run_config=run_config,
                          resources={"storage": Storage(home=str(tmp_path), crawl_dir=str(crawl))},
                          instance=DagsterInstance.ephemeral())
    assert outcome.success
    metadata = outcome.asset_materializations_for_node("downloaded_crawl_files")[0].metadata
    assert metadata["files_downloaded"].value == 2
    downloaded = sorted(path.name for path in crawl.iterdir())
    assert len(downloaded) == 2 and set(downloaded) <= set(FILES)
