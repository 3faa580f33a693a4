"""The WARC/WET reader on real crawl files, damaged ones included, and on arbitrary bytes."""

import gzip
import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmlib.web.warc import ReadReport, iter_warc_records
from tests.conftest import shared_path

# name -> (records yielded, records by type, skipped by reason, truncated)
BROKEN = {
    "fragment3.wet.gz": (6, {"warcinfo": 1, "conversion": 5}, {}, False),
    "appended_zip_fragment_unexpected_eof.wet.gz": (
        16, {"warcinfo": 1, "conversion": 15}, {"truncated_gzip": 1, "truncated_record": 1}, True),
    "fragment1_incomplete_last.wet.gz": (
        2, {"warcinfo": 1, "conversion": 1}, {"truncated_record": 1}, True),
    "fragment1_asthma_incomplete_last.wet.gz": (
        1, {"warcinfo": 1}, {"content_length_mismatch": 1, "truncated_record": 1}, True),
    "fragment2_no_header.wet.gz": (
        1, {"conversion": 1}, {"garbage_before_record": 1, "truncated_record": 1}, True),
    "corrupt_starts_with_conversion.wet.gz": (6, {"warcinfo": 1, "conversion": 5}, {}, False),
    "corrupt_two_warcinfo.wet.gz": (7, {"warcinfo": 2, "conversion": 5}, {}, False),
    "corrupt_warcconversion_1.wet.gz": (6, {"warcinfo": 1, "conversion": 5}, {}, False),
    "corrupt_warcconversion_2.wet.gz": (2, {"warcinfo": 1, "conversion": 1}, {}, False),
    "corrupt_warcinfo_1.wet.gz": (6, {"warcinfo": 1, "conversion": 5}, {}, False),
    "file_headers_only.wet.gz": (0, {}, {"truncated_record": 1}, True),
    "file_and_wet_headers_only.wet.gz": (
        0, {}, {"content_length_mismatch": 1, "truncated_record": 1}, True),
}

REAL = {
    "cc-main-2020-34-excerpt.warc.gz": {"warcinfo": 1, "request": 17, "response": 16, "metadata": 16},
    "cc-main-2016-50-excerpt.warc.wet.gz": {"warcinfo": 1, "conversion": 25},
    "cc-main-2024-22-whirlwind.warc.gz": {"warcinfo": 1, "request": 1, "response": 1, "metadata": 1},
    "cc-main-2024-22-whirlwind.warc.wet.gz": {"warcinfo": 1, "conversion": 1},
    "cc-main-2024-22-whirlwind.warc.wat.gz": {"warcinfo": 1, "metadata": 1},
    "ia-2008-web-sample.warc.gz": {"warcinfo": 1, "response": 299, "request": 261, "metadata": 261},
    "dolma-sample-0000.warc.gz": {"warcinfo": 1, "request": 22, "response": 22, "metadata": 1,
                                  "resource": 2},
    "dolma-sample-0001.warc.gz": {"warcinfo": 1, "request": 15, "response": 15, "metadata": 1,
                                  "resource": 2},
    "clueweb-quirk.warc.gz": {"warcinfo": 1, "response": 29},
    "python-docs-crawl.warc.gz": {"warcinfo": 1, "response": 365},
}


def read(path):
    report = ReadReport()
    return list(iter_warc_records(path, report)), report


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_crawl_files_read_every_record(name):
    records, report = read(shared_path(f"data/crawl/{name}"))
    assert dict(report.records_by_type) == REAL[name]
    assert dict(report.skipped) == {}
    assert not report.truncated
    assert len(records) == sum(REAL[name].values())


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_damaged_files_count_skips_and_keep_good_records(name):
    expected_records, by_type, skipped, truncated = BROKEN[name]
    records, report = read(shared_path(f"data/crawl/broken/{name}"))
    assert len(records) == expected_records
    assert dict(report.records_by_type) == by_type
    assert dict(report.skipped) == skipped
    assert report.truncated is truncated


def _fastwarc_payloads(path):
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(path, "rb") as stream:
        return [(r.headers.get("WARC-Record-ID"), r.reader.read())
                for r in ArchiveIterator(stream, record_types=WarcRecordType.any_type,
                                         parse_http=False)]


@pytest.mark.parametrize("name", ["appended_zip_fragment_unexpected_eof.wet.gz",
                                  "fragment3.wet.gz", "corrupt_two_warcinfo.wet.gz"])
def test_good_records_of_damaged_files_are_byte_identical_to_fastwarc(name):
    path = shared_path(f"data/crawl/broken/{name}")
    ours, _ = read(path)
    theirs = _fastwarc_payloads(path)
    assert [(r.record_id, r.payload) for r in ours] == theirs[: len(ours)]


def test_http_payloads_match_warcio_on_a_common_crawl_file():
    from warcio.archiveiterator import ArchiveIterator

    path = shared_path("data/crawl/cc-main-2020-34-excerpt.warc.gz")
    ours = {r.record_id: r for r in read(path)[0] if r.type == "response"}
    with open(path, "rb") as stream:
        theirs = {r.rec_headers.get_header("WARC-Record-ID"): r.content_stream().read()
                  for r in ArchiveIterator(stream) if r.rec_type == "response"}
    assert len(ours) == len(theirs) == 16
    for record_id, payload in theirs.items():
        assert ours[record_id].payload == payload
        assert ours[record_id].http_status == 200


def test_warc_response_and_wet_conversion_are_linked():
    warc, _ = read(shared_path("data/crawl/cc-main-2024-22-whirlwind.warc.gz"))
    wet, _ = read(shared_path("data/crawl/cc-main-2024-22-whirlwind.warc.wet.gz"))
    response = next(r for r in warc if r.type == "response")
    conversion = next(r for r in wet if r.type == "conversion")
    assert conversion.refers_to == response.record_id
    assert conversion.target_uri == response.target_uri == "https://an.wikipedia.org/wiki/Escopete"


def test_old_warc_versions_and_lf_only_http_headers():
    records, _ = read(shared_path("data/crawl/clueweb-quirk.warc.gz"))
    responses = [r for r in records if r.type == "response"]
    assert all(r.http_status == 200 for r in responses)
    assert all("euc-jp" in (r.content_type or "").lower() for r in responses[:5])
    assert responses[0].date == "2008-10-294T05:21:46-0700"  # malformed, passed through as is


def _sample_warc(records: int = 5) -> bytes:
    out = []
    for i in range(records):
        body = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>page {i}</p>".encode()
        head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{i}>\r\n"
                f"WARC-Target-URI: http://x/{i}\r\nContent-Type: application/http; msgtype=response"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        out.append(gzip.compress(head + body + b"\r\n\r\n", mtime=0))
    return b"".join(out)


def test_plain_and_gzip_files_read_the_same(tmp_path):
    data = _sample_warc()
    (tmp_path / "a.warc.gz").write_bytes(data)
    (tmp_path / "a.warc").write_bytes(gzip.decompress(data))
    gz, _ = read(tmp_path / "a.warc.gz")
    plain, _ = read(tmp_path / "a.warc")
    assert [r.payload for r in gz] == [r.payload for r in plain] == [
        f"<p>page {i}</p>".encode() for i in range(5)]


def test_chunked_and_gzip_encoded_http_bodies_are_decoded(tmp_path):
    html = b"<html><body><p>hello chunked world</p></body></html>"
    compressed = gzip.compress(html, mtime=0)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(compressed[i:i + 10]), compressed[i:i + 10])
                       for i in range(0, len(compressed), 10)) + b"0\r\n\r\n"
    body = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Encoding: gzip\r\n\r\n" + chunked)
    head = (b"WARC/1.0\r\nWARC-Type: response\r\nContent-Type: application/http;msgtype=response"
            b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    (tmp_path / "c.warc").write_bytes(head + body + b"\r\n\r\n")
    records, _ = read(tmp_path / "c.warc")
    assert records[0].payload == html


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.booleans())
def test_reader_never_raises_on_arbitrary_bytes(tmp_path, data, compress):
    path = tmp_path / "fuzz.warc.gz"
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    records, report = read(path)
    assert report.records == len(records)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=20))
def test_damaged_valid_files_never_raise_and_keep_records_before_the_damage(tmp_path, seed, flips):
    data = bytearray(gzip.decompress(_sample_warc(8)))
    rng = random.Random(seed)
    cut = rng.randrange(len(data))
    damaged = data[:cut]
    for _ in range(flips):
        if damaged:
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    path = tmp_path / "damaged.warc"
    path.write_bytes(bytes(damaged))
    records, _ = read(path)
    if flips == 0:
        # Every record that ends before the cut survives intact.
        complete = data[:cut].count(b"</p>\r\n\r\n")
        assert [r.payload for r in records][:complete] == [
            f"<p>page {i}</p>".encode() for i in range(complete)]


def test_missing_file_raises_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="crawl file not found"):
        list(iter_warc_records(tmp_path / "nope.warc.gz"))


def test_reader_streams_without_reading_everything_first(tmp_path):
    path = tmp_path / "big.warc.gz"
    path.write_bytes(_sample_warc(2000))
    iterator = iter_warc_records(path)
    first = next(iterator)
    assert first.payload == b"<p>page 0</p>"
    assert isinstance(io.BytesIO(first.payload).read(), bytes)
