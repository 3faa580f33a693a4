"""HTML bytes to plain text: decode carefully, then resiliparse's extractor with its defaults.

Decoding order: a byte-order mark, then the charset the page declares (HTTP header or <meta>),
then UTF-8, then resiliparse's encoding detection. Each candidate must decode strictly, so a
page that declares UTF-8 but is really windows-1252 falls through to detection instead of
becoming mojibake.
"""

from __future__ import annotations

import codecs
import re

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import detect_encoding
from resiliparse.parse.html import HTMLTree

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([a-zA-Z0-9_\-:.]+)", re.I)


def declared_charset(html: bytes, content_type: str | None = None) -> str | None:
    """The charset named by the HTTP Content-Type, else by a <meta> tag near the top."""
    if content_type:
        match = _HEADER_CHARSET.search(content_type)
        if match:
            return match.group(1)
    match = _META_CHARSET.search(html[:4096])
    return match.group(1).decode("ascii", "replace") if match else None


def decode_html_bytes(html: bytes, content_type: str | None = None) -> str | None:
    """Decode page bytes to str, or None when no candidate encoding fits."""
    for bom, encoding in _BOMS:
        if html.startswith(bom):
            try:
                return html.decode(encoding)
            except UnicodeDecodeError:
                break
    candidates = []
    declared = declared_charset(html, content_type)
    if declared:
        candidates.append(declared)
    candidates.append("utf-8")
    for encoding in candidates:
        try:
            return html.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    detected = detect_encoding(html)
    try:
        return html.decode(detected)
    except (UnicodeDecodeError, LookupError):
        return None


def extract_text_from_html_bytes(html: bytes, content_type: str | None = None) -> str | None:
    """Plain text of an HTML page (resiliparse defaults), or None if undecodable or empty."""
    if not html:
        return None
    text = decode_html_bytes(html, content_type)
    if text is None or "\x00" in text:
        return None
    extracted = extract_plain_text(HTMLTree.parse(text))
    return extracted if extracted and extracted.strip() else None
