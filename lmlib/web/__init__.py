"""lmlib.web: from crawl files to documents worth training on.

Reading (`warc`), HTML to text (`extract`), the first stage (`documents`), the embedded sample
crawl (`sample_crawl`), and the quality and safety filters.
"""

from lmlib.web.documents import DOCUMENT_SCHEMA, ExtractConfig, extract_documents
from lmlib.web.extract import extract_text_from_html_bytes
from lmlib.web.warc import ReadReport, WarcRecord, iter_warc_records

__all__ = [
    "DOCUMENT_SCHEMA",
    "ExtractConfig",
    "ReadReport",
    "WarcRecord",
    "extract_documents",
    "extract_text_from_html_bytes",
    "iter_warc_records",
]
