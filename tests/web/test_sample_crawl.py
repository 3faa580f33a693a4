"""The embedded sample crawl: reproducible byte for byte, and it holds what later stages need."""

import gzip
import json
from collections import Counter

import pytest

from dagster_project.home import EMBEDDED_CRAWL
from lmlib.formats import QUALITY_REFERENCE_FILE
from lmlib.web.sample_crawl import generate
from lmlib.web.warc import ReadReport, iter_warc_records


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl")
    return generate(out)


def test_regenerating_reproduces_the_committed_files_byte_for_byte(regenerated):
    committed = sorted(p.name for p in EMBEDDED_CRAWL.iterdir())
    assert committed == sorted(p.name for p in regenerated)
    for path in regenerated:
        assert path.read_bytes() == (EMBEDDED_CRAWL / path.name).read_bytes(), path.name


def test_crawl_holds_the_cases_later_stages_need():
    files = sorted(EMBEDDED_CRAWL.glob("*.warc.gz"))
    assert 2 <= len(files) <= 4
    assert sum(p.stat().st_size for p in files) < 8_000_000
    payloads, content_types, reports = Counter(), Counter(), []
    for path in files:
        report = ReadReport()
        for record in iter_warc_records(path, report):
            if record.type == "response":
                payloads[record.payload] += 1
                content_types[(record.content_type or "").split(";")[0]] += 1
        reports.append(report)
    responses = sum(r.records_by_type["response"] for r in reports)
    assert responses >= 2000
    assert [r.truncated for r in reports] == [False] * (len(files) - 1) + [True]
    assert sum(1 for count in payloads.values() if count > 1) >= 50  # exact duplicates
    assert {"image/png", "application/pdf", "text/css", "application/json"} <= set(content_types)
    text = b" ".join(payloads)
    assert b"@example.com" in text and b"(" in text
    assert "Привет".encode() not in text and "Город".encode() in text
    assert "这座城市".encode() in text
    assert "café".encode("cp1252") in text  # the page whose declared charset is wrong


def test_reference_set_is_clean_long_prose():
    lines = gzip.decompress((EMBEDDED_CRAWL / QUALITY_REFERENCE_FILE).read_bytes()).decode().splitlines()
    documents = [json.loads(line) for line in lines]
    assert len(documents) >= 200
    assert all(len(d["text"].split()) > 250 for d in documents)
