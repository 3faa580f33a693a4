"""Streaming reader for WARC and WET files that survives real-world damage.

Notable:
- One parser for WARC/1.x, WARC/0.17 and 0.18, WET and WAT; gzip with one member per record
  (Common Crawl), one stream over the whole file, or plain text, detected from the magic bytes.
- The reader never trusts Content-Length alone: after each block it checks that the next record
  (or the end of the file) follows. When it does not, the record is skipped as
  `content_length_mismatch` and parsing resynchronizes on the next `WARC/` header line.
- Garbage before a record, records without a usable header, and a truncated final record are
  counted in a `ReadReport` by reason; every intact record before the damage is still yielded.
- HTTP responses are split into status, headers and payload; chunked transfer encoding and
  gzip/deflate content encoding are undone, so `payload` is the document's bytes.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_READ_SIZE = 1 << 18
_MAX_HEADER_BYTES = 1 << 16
_RECORD_START = b"WARC/"


@dataclass
class WarcRecord:
    """One WARC record; `payload` is the HTTP body for responses, the whole block otherwise."""

    type: str
    target_uri: str | None
    record_id: str | None
    date: str | None
    content_type: str | None  # the HTTP Content-Type for responses, else the WARC one
    payload: bytes
    headers: dict[str, str]
    http_status: int | None = None
    http_headers: dict[str, str] | None = None
    offset: int = 0  # position of the record in the decompressed stream

    @property
    def refers_to(self) -> str | None:
        return self.headers.get("warc-refers-to")


@dataclass
class ReadReport:
    """What reading one file saw: records by type and everything skipped, by reason."""

    records_by_type: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    truncated: bool = False
    compressed_bytes: int = 0
    decompressed_bytes: int = 0

    @property
    def records(self) -> int:
        return sum(self.records_by_type.values())


class _Decompressed:
    """Yields decompressed chunks of a gzip (any number of members) or plain file.

    A truncated or corrupt gzip stream ends the iteration and marks the report, after yielding
    everything that could be recovered.
    """

    def __init__(self, path: Path, report: ReadReport):
        self.path = path
        self.report = report

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle:
            first = handle.read(_READ_SIZE)
            self.report.compressed_bytes += len(first)
            if not first.startswith(b"\x1f\x8b"):
                yield first
                while chunk := handle.read(_READ_SIZE):
                    self.report.compressed_bytes += len(chunk)
                    yield chunk
                return
            decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
            pending = first
            while True:
                if not pending:
                    pending = handle.read(_READ_SIZE)
                    self.report.compressed_bytes += len(pending)
                    if not pending:
                        if not decompressor.eof and decompressor.unconsumed_tail == b"":
                            # Input ended inside a gzip member: a cut-off download.
                            tail = decompressor.flush()
                            if tail:
                                yield tail
                            if not self._member_was_empty:
                                self.report.truncated = True
                                self.report.skipped["truncated_gzip"] += 1
                        return
                try:
                    data = decompressor.decompress(pending)
                except zlib.error:
                    self.report.truncated = True
                    self.report.skipped["corrupt_gzip"] += 1
                    return
                self._member_was_empty = False
                if data:
                    yield data
                if decompressor.eof:
                    pending = decompressor.unused_data
                    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    self._member_was_empty = True
                    # Trailing zero padding after the last member is common and harmless.
                    if pending and not pending.lstrip(b"\x00"):
                        pending = b""
                else:
                    pending = b""

    _member_was_empty = True


class _Buffer:
    """A growable window over the decompressed stream that the parser can search and rewind."""

    def __init__(self, chunks: Iterator[bytes], report: ReadReport):
        self.chunks = chunks
        self.report = report
        self.data = bytearray()
        self.pos = 0
        self.base = 0  # stream offset of data[0]
        self.exhausted = False

    def fill(self, size: int) -> bool:
        """Make at least `size` bytes available after pos; False at end of stream."""
        while len(self.data) - self.pos < size and not self.exhausted:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.exhausted = True
                break
            self.report.decompressed_bytes += len(chunk)
            self.data += chunk
        return len(self.data) - self.pos >= size

    def compact(self) -> None:
        """Drop consumed bytes; only between records, so indices held while parsing stay valid."""
        if self.pos > _READ_SIZE:
            del self.data[: self.pos]
            self.base += self.pos
            self.pos = 0

    def available(self) -> int:
        return len(self.data) - self.pos

    def find(self, needle: bytes, start: int, limit: int | None = None) -> int:
        """Index of `needle` at or after absolute data index `start`, reading more as needed."""
        searched_from = start
        while True:
            end = len(self.data) if limit is None else min(len(self.data), start + limit)
            index = self.data.find(needle, searched_from, end)
            if index >= 0:
                return index
            if (limit is not None and len(self.data) >= start + limit) or self.exhausted:
                return -1
            searched_from = max(start, len(self.data) - len(needle))
            self.fill(self.available() + _READ_SIZE)


def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    """Header lines to a dict with lower-case names; continuation lines are folded in."""
    headers: dict[str, str] = {}
    last = None
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        if line[:1] in (" ", "\t") and last is not None:
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


def _split_header_block(block: bytes) -> tuple[bytes, bytes] | None:
    """Split at the first blank line, accepting CRLF or bare LF line ends (old crawlers)."""
    crlf, lf = block.find(b"\r\n\r\n"), block.find(b"\n\n")
    if crlf < 0 and lf < 0:
        return None
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return block[:lf], block[lf + 2 :]
    return block[:crlf], block[crlf + 4 :]


def _dechunk(body: bytes) -> bytes:
    """Undo HTTP chunked transfer encoding; a malformed tail keeps what was decoded."""
    out = bytearray()
    pos = 0
    while pos < len(body):
        line_end = body.find(b"\n", pos)
        if line_end < 0:
            break
        size_text = body[pos:line_end].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return body if not out else bytes(out)
        if size == 0:
            break
        start = line_end + 1
        out += body[start : start + size]
        pos = start + size
        if body[pos : pos + 2] == b"\r\n":
            pos += 2
        elif body[pos : pos + 1] == b"\n":
            pos += 1
    return bytes(out)


def _decode_content(body: bytes, encoding: str) -> bytes | None:
    """Undo Content-Encoding. Many crawlers store the decoded body but keep the header, so a
    body that does not decode but looks like plain text is returned as is."""
    encoding = encoding.lower().strip()
    if encoding in ("", "identity", "none"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        for wbits in (zlib.MAX_WBITS | 32, -zlib.MAX_WBITS):
            try:
                return zlib.decompressobj(wbits).decompress(body)
            except zlib.error:
                continue
    return body if b"\x00" not in body[:1024] else None


def _split_http(block: bytes) -> tuple[int | None, dict[str, str], bytes] | None:
    parts = _split_header_block(block)
    if parts is None:
        return None
    head, body = parts
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    status_line = lines[0].split(None, 2)
    status = None
    if len(status_line) >= 2 and status_line[1].isdigit():
        status = int(status_line[1])
    return status, _parse_headers(lines[1:]), body


def iter_warc_records(path: str | Path, report: ReadReport | None = None) -> Iterator[WarcRecord]:
    """Stream the records of a WARC/WET/WAT file, gzip or plain, skipping damage with a count.

    Pass a `ReadReport` to learn what was read and skipped; it is filled in as records are
    yielded and is complete once the iterator is exhausted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"crawl file not found: {path}")
    report = report if report is not None else ReadReport()
    buffer = _Buffer(iter(_Decompressed(path, report)), report)

    while True:
        buffer.compact()
        # Skip the blank lines between records.
        while True:
            if not buffer.fill(1):
                return
            if buffer.data[buffer.pos] in b"\r\n":
                buffer.pos += 1
            else:
                break
        buffer.fill(len(_RECORD_START))
        if not buffer.data.startswith(_RECORD_START, buffer.pos):
            report.skipped["garbage_before_record"] += 1
            if not _resynchronize(buffer, buffer.pos):
                return
            continue

        start = buffer.pos
        header_end = buffer.find(b"\r\n\r\n", start, _MAX_HEADER_BYTES)
        lf_end = buffer.find(b"\n\n", start, _MAX_HEADER_BYTES)
        if header_end < 0 and lf_end < 0:
            if buffer.exhausted and buffer.available() < _MAX_HEADER_BYTES:
                report.skipped["truncated_record"] += 1
                report.truncated = True
                return
            report.skipped["bad_header"] += 1
            if not _resynchronize(buffer, start + 1):
                return
            continue
        if lf_end >= 0 and (header_end < 0 or lf_end < header_end):
            header_bytes, block_start = bytes(buffer.data[start:lf_end]), lf_end + 2
        else:
            header_bytes, block_start = bytes(buffer.data[start:header_end]), header_end + 4
        header_lines = header_bytes.replace(b"\r\n", b"\n").split(b"\n")
        headers = _parse_headers(header_lines[1:])
        try:
            length = int(headers.get("content-length", ""))
            if length < 0:
                raise ValueError
        except ValueError:
            report.skipped["bad_content_length"] += 1
            if not _resynchronize(buffer, start + 1):
                return
            continue

        relative_block = block_start - buffer.pos
        if not buffer.fill(relative_block + length + 4):
            if buffer.available() < relative_block + length:
                report.skipped["truncated_record"] += 1
                report.truncated = True
                return
        start_offset = buffer.base + start
        block_start = buffer.pos + relative_block
        block_end = block_start + length
        if not _next_record_follows(buffer, block_end):
            # Content-Length disagrees with the data: the record's boundaries are unknowable.
            report.skipped["content_length_mismatch"] += 1
            if not _resynchronize(buffer, start + 1):
                return
            continue
        block = bytes(buffer.data[block_start:block_end])
        buffer.pos = block_end

        record = _make_record(headers, block, start_offset, report)
        if record is not None:
            report.records_by_type[record.type] += 1
            yield record


def _next_record_follows(buffer: _Buffer, block_end: int) -> bool:
    """After a block come CR/LF separators and then the next `WARC/` line or the end."""
    position = block_end
    buffer.fill(position - buffer.pos + 8)
    while position < len(buffer.data) and buffer.data[position] in b"\r\n":
        position += 1
        if position - block_end > 8:
            return False
        buffer.fill(position - buffer.pos + 8)
    rest = bytes(buffer.data[position : position + len(_RECORD_START)])
    # At the end of a cut-off file the next header may be incomplete: a prefix is enough.
    return rest == _RECORD_START or (buffer.exhausted and _RECORD_START.startswith(rest))


def _resynchronize(buffer: _Buffer, search_from: int) -> bool:
    """Move to the next line that starts a WARC record; False when there is none."""
    index = buffer.find(b"\n" + _RECORD_START, search_from)
    if index < 0:
        buffer.pos = len(buffer.data)
        return False
    buffer.pos = index + 1
    return True


def _make_record(
    headers: dict[str, str], block: bytes, offset: int, report: ReadReport
) -> WarcRecord | None:
    record_type = headers.get("warc-type", "unknown").lower()
    warc_content_type = headers.get("content-type")
    record = WarcRecord(
        type=record_type,
        target_uri=(headers.get("warc-target-uri") or "").strip("<>") or None,
        record_id=headers.get("warc-record-id"),
        date=headers.get("warc-date"),
        content_type=warc_content_type,
        payload=block,
        headers=headers,
        offset=offset,
    )
    is_http = warc_content_type is not None and "application/http" in warc_content_type.lower()
    if record_type in ("response", "request", "revisit") and is_http:
        parsed = _split_http(block)
        if parsed is None:
            if record_type == "response":
                report.skipped["bad_http_header"] += 1
                return None
            return record
        status, http_headers, body = parsed
        if "chunked" in http_headers.get("transfer-encoding", "").lower():
            body = _dechunk(body)
        encoding = http_headers.get("content-encoding", "")
        decoded = _decode_content(body, encoding)
        if decoded is None:
            report.skipped["unsupported_content_encoding"] += 1
            return None
        record.payload = decoded
        record.http_status = status
        record.http_headers = http_headers
        record.content_type = http_headers.get("content-type")
    return record
