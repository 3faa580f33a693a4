"""Real documents for the tests that check a fast path against its plain definition."""

import pytest

from lmlib.web.html_text import extract_text_from_html_bytes
from lmlib.web.warc import iter_warc_records
from tests.conftest import shared_path

# Python docs (code, versions, tables), an old web crawl (addresses, phone numbers) and
# Common Crawl's own text of 2016 pages in several languages.
HTML_CRAWLS = ("data/crawl/python-docs-crawl.warc.gz", "data/crawl/ia-2008-web-sample.warc.gz")
WET_CRAWL = "data/crawl/cc-main-2016-50-excerpt.warc.wet.gz"


@pytest.fixture(scope="session")
def real_texts() -> list[str]:
    texts = []
    for crawl in HTML_CRAWLS:
        for record in iter_warc_records(shared_path(crawl)):
            if record.type == "response":
                text = extract_text_from_html_bytes(record.payload, record.content_type)
                if text:
                    texts.append(text)
    texts += [record.payload.decode("utf-8", "replace")
              for record in iter_warc_records(shared_path(WET_CRAWL))
              if record.type == "conversion"]
    return texts
