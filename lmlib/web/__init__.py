"""lmlib.web: from crawl files to documents worth training on.

Reading (`warc`), HTML to text (`extract`), the first stage (`extraction`), the embedded sample
crawl (`sample_crawl`), and the quality and safety filters (`language`, `pii`, `harmful`,
`gopher`, `quality`), one class each in `filters`, that `filter_chain` runs as a list. The
per-document filter functions are the public interface and import from here; fastText itself
loads only when a model is used.
"""

from lmlib.web.acquisition import (
    AcquisitionConfig,
    DownloadError,
    acquire_crawl_files,
    download_file,
    read_crawl_listing,
)
from lmlib.web.extraction import DOCUMENT_SCHEMA, ExtractConfig, extract_documents
from lmlib.web.filter_chain import FilterChain, FilterConfig, FilterResult, filter_documents
from lmlib.web.filters import Decision, DocumentFilter
from lmlib.web.gopher import gopher_quality_filter, gopher_repetition_filter
from lmlib.web.harmful import classify_nsfw, classify_toxic_speech
from lmlib.web.html_text import extract_text_from_html_bytes
from lmlib.web.language import identify_language
from lmlib.web.pii import mask_emails, mask_ips, mask_phone_numbers, mask_pii
from lmlib.web.quality import (
    QualityClassifierConfig,
    build_quality_classifier,
    classify_quality,
    train_quality_classifier,
    use_quality_model,
)
from lmlib.web.warc import ReadReport, WarcRecord, iter_warc_records

__all__ = [
    "AcquisitionConfig",
    "DownloadError",
    "acquire_crawl_files",
    "download_file",
    "read_crawl_listing",
    "DOCUMENT_SCHEMA",
    "Decision",
    "DocumentFilter",
    "ExtractConfig",
    "FilterChain",
    "FilterConfig",
    "FilterResult",
    "QualityClassifierConfig",
    "ReadReport",
    "WarcRecord",
    "build_quality_classifier",
    "classify_nsfw",
    "classify_quality",
    "classify_toxic_speech",
    "extract_documents",
    "extract_text_from_html_bytes",
    "filter_documents",
    "gopher_quality_filter",
    "gopher_repetition_filter",
    "identify_language",
    "iter_warc_records",
    "mask_emails",
    "mask_ips",
    "mask_phone_numbers",
    "mask_pii",
    "train_quality_classifier",
    "use_quality_model",
]
