"""Documents/s on one core: our filter chain (language ID, Gopher quality, PII masking) against
datatrove's LanguageFilter + GopherQualityFilter + PIIFormatter, on the same real documents.

Documents: HTML responses of ../shared/data/crawl/python-docs-crawl.warc.gz and
ia-2008-web-sample.warc.gz, extracted once with resiliparse (extraction is not timed).
Both sides use the same lid.176.ftz, threshold 0.65, English only, and run in this process on
one core, each timed as CPU seconds of this process, best of `--repeats` interleaved runs. datatrove's Gopher filter tokenizes words with spaCy,
which is not installed here; it gets a whitespace `str.split` tokenizer instead, its cheapest
possible setting, so the peer's figure is an upper bound. Also printed: on how many documents
the two chains agree, and which they decide differently.

    .venv/bin/python benchmarks/bench_filters.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CRAWLS = ("data/crawl/python-docs-crawl.warc.gz", "data/crawl/ia-2008-web-sample.warc.gz")
LID = SHARED / "models" / "lid.176.ftz"


def load_documents() -> list[str]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    texts = []
    for relative in CRAWLS:
        path = SHARED / relative
        if not path.exists():
            raise SystemExit(f"benchmark needs ../shared/{relative}")
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream, record_types=WarcRecordType.response):
                body = record.reader.read()
                if b"<html" not in body[:5000].lower():
                    continue
                text = extract_plain_text(bytes_to_str(body, detect_encoding(body)),
                                          main_content=False)
                if text.strip():
                    texts.append(text)
    return texts


def run_ours(texts: list[str]) -> set[int]:
    """The indices of the documents our chain keeps."""
    from lmlib.web import FilterChain, FilterConfig

    chain = FilterChain.from_config(FilterConfig(language_model_path=str(LID),
                                                 harmful_content=False))
    return {i for i, text in enumerate(texts) if chain.decide(text).kept_text is not None}


def make_datatrove_pipeline():
    from datatrove.pipeline.filters import GopherQualityFilter, LanguageFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.utils.lid import FT176LID
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return text.splitlines()

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            raise NotImplementedError

    FT176LID.MODEL_URL = f"file://{LID}"
    return [
        LanguageFilter(languages=["en"], language_threshold=0.65),
        GopherQualityFilter(language=SplitTokenizer()),
        PIIFormatter(only_remove_public_ips=False),
    ]


def run_datatrove(texts: list[str], pipeline) -> set[int]:
    """The indices of the documents datatrove's chain keeps."""
    from datatrove.data import Document

    stream = (Document(text=text, id=str(i)) for i, text in enumerate(texts))
    for step in pipeline:
        stream = step.run(stream)
    return {int(document.id) for document in stream}


def cpu_seconds(function, *args) -> tuple[float, int]:
    """CPU time of this process: both chains are single-threaded, and on a shared machine the
    wall clock mostly measures the neighbours."""
    started = time.process_time()
    result = function(*args)
    return time.process_time() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    texts = load_documents()
    characters = sum(map(len, texts))
    pipeline = make_datatrove_pipeline()
    run_ours(texts[:5]), run_datatrove(texts[:5], pipeline)  # load models outside the timing
    ours_s = peer_s = float("inf")
    for _ in range(args.repeats):  # interleaved, so both see the same background load
        seconds, ours_kept = cpu_seconds(run_ours, texts)
        ours_s = min(ours_s, seconds)
        seconds, peer_kept = cpu_seconds(run_datatrove, texts, pipeline)
        peer_s = min(peer_s, seconds)

    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        gpu = "none"
    print(f"# Filter chain throughput, one core ({datetime.date.today().isoformat()})\n")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, GPU {gpu}")
    print(f"documents: {len(texts)} real pages ({characters / 1e6:.1f} M characters) from "
          f"{', '.join(Path(c).name for c in CRAWLS)}; best of {args.repeats}\n")
    print("| chain | kept | CPU seconds | documents/s | MB/s |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, kept in (("lmlib.web (language, Gopher, PII)", ours_s, ours_kept),
                                ("datatrove LanguageFilter + GopherQualityFilter + PIIFormatter",
                                 peer_s, peer_kept)):
        print(f"| {name} | {len(kept)} | {seconds:.3f} | {len(texts) / seconds:,.0f} | "
              f"{characters / seconds / 1e6:.1f} |")
    print(f"\nratio (ours / datatrove, documents/s): **{peer_s / ours_s:.2f}×**")
    print(f"\nsame decision on {len(texts) - len(ours_kept ^ peer_kept)} of {len(texts)} "
          f"documents; kept by ours only: {sorted(ours_kept - peer_kept)}, by datatrove only: "
          f"{sorted(peer_kept - ours_kept)} (the two chains are alike, not identical: "
          f"tokenization and rule details differ)")


if __name__ == "__main__":
    main()
