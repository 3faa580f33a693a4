"""HTML to text: decoding order, real pages, and no exceptions on arbitrary bytes."""

import codecs
import difflib

from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.web.html_text import decode_html_bytes, extract_text_from_html_bytes
from lmlib.web.warc import iter_warc_records
from tests.conftest import shared_path

PAGE = "<html><head>{meta}<title>t</title></head><body><p>{text}</p></body></html>"


def test_utf8_page():
    html = PAGE.format(meta='<meta charset="utf-8">', text="naïve café — 東京").encode()
    assert extract_text_from_html_bytes(html) == "naïve café — 東京"


def test_byte_order_mark_wins_over_a_wrong_declaration():
    html = codecs.BOM_UTF16_LE + PAGE.format(meta='<meta charset="iso-8859-1">',
                                             text="Grüße").encode("utf-16-le")
    assert extract_text_from_html_bytes(html) == "Grüße"


def test_declared_single_byte_charset_is_used():
    html = PAGE.format(meta='<meta charset="iso-8859-7">', text="Καλημέρα").encode("iso-8859-7")
    assert extract_text_from_html_bytes(html) == "Καλημέρα"


def test_http_header_charset_is_used():
    html = PAGE.format(meta="", text="Привет мир").encode("koi8-r")
    assert extract_text_from_html_bytes(html, "text/html; charset=KOI8-R") == "Привет мир"


def test_wrongly_declared_utf8_falls_back_to_detection():
    text = "The café serves crème brûlée, “perfect” — says the señor. " * 5
    html = PAGE.format(meta='<meta charset="utf-8">', text=text).encode("cp1252")
    assert extract_text_from_html_bytes(html) == text.strip()


def test_unknown_declared_charset_is_ignored():
    html = PAGE.format(meta='<meta charset="no-such-charset">', text="plain words").encode()
    assert extract_text_from_html_bytes(html) == "plain words"


def test_empty_and_binary_content_give_none():
    assert extract_text_from_html_bytes(b"") is None
    assert extract_text_from_html_bytes(b"<html><body>   </body></html>") is None
    assert extract_text_from_html_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") is None


def test_euc_jp_pages_of_an_old_crawl_decode_to_japanese():
    records = [r for r in iter_warc_records(shared_path("data/crawl/clueweb-quirk.warc.gz"))
               if r.type == "response"]
    texts = [extract_text_from_html_bytes(r.payload, r.content_type) for r in records]
    japanese = [t for t in texts if t and any("\u3040" <= c <= "\u30ff" for c in t)]
    assert len(japanese) >= 25
    assert not any("\ufffd" in t for t in japanese)


def test_extraction_is_close_to_common_crawls_wet_text():
    warc = shared_path("data/crawl/cc-main-2024-22-whirlwind.warc.gz")
    wet = shared_path("data/crawl/cc-main-2024-22-whirlwind.warc.wet.gz")
    response = next(r for r in iter_warc_records(warc) if r.type == "response")
    conversion = next(r for r in iter_warc_records(wet) if r.type == "conversion")
    ours = extract_text_from_html_bytes(response.payload, response.content_type)
    theirs = conversion.payload.decode("utf-8")
    ratio = difflib.SequenceMatcher(None, ours.split(), theirs.split(), autojunk=False).ratio()
    assert ratio > 0.8


def test_python_docs_pages_all_extract():
    records = [r for r in iter_warc_records(shared_path("data/crawl/python-docs-crawl.warc.gz"))
               if r.type == "response"][:60]
    texts = [extract_text_from_html_bytes(r.payload, r.content_type) for r in records]
    assert all(t and len(t) > 200 for t in texts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.one_of(st.none(), st.text(max_size=40)))
def test_extraction_never_raises_on_arbitrary_bytes(data, content_type):
    result = extract_text_from_html_bytes(data, content_type)
    assert result is None or (isinstance(result, str) and result.strip())
    decoded = decode_html_bytes(data, content_type)
    assert decoded is None or isinstance(decoded, str)
