"""WARC -> text documents per second on one core: lmlib.web against datatrove.

Ours: `lmlib.web.extract_documents` with one worker (reading, charset handling, resiliparse
extraction, Parquet writing). Peer: datatrove's WarcReader + Trafilatura extractor, the pipeline
FineWeb used, on the same files in the same run. Both count the documents that came out.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import header, shared_file  # noqa: E402
from lmlib.web.extraction import ExtractConfig, extract_documents  # noqa: E402

FILES = ["data/crawl/python-docs-crawl.warc.gz", "data/crawl/ia-2008-web-sample.warc.gz"]


def ours(path: Path) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        stats = extract_documents(path, Path(out), ExtractConfig(workers=1))
        return stats.documents, time.perf_counter() - started


def datatrove(path: Path) -> tuple[int, float]:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    reader = WarcReader(str(path.parent), glob_pattern=path.name)
    extractor = Trafilatura(favour_precision=True, timeout=10.0)
    started = time.perf_counter()
    documents = sum(1 for _ in extractor.run(reader.run(rank=0, world_size=1), rank=0, world_size=1))
    seconds = time.perf_counter() - started
    if documents == 0:
        raise SystemExit("datatrove extracted 0 documents: its extractor subprocess failed")
    return documents, seconds


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core for both
    rows = []
    for relative in FILES:
        path = shared_file(relative)
        our_docs, our_seconds = ours(path)
        peer_docs, peer_seconds = datatrove(path)
        ours_rate, peer_rate = our_docs / our_seconds, peer_docs / peer_seconds
        rows.append((path.name, our_docs, our_seconds, ours_rate, peer_docs, peer_seconds,
                     peer_rate, ours_rate / peer_rate))
    print(header("WARC -> text extraction, one core (bench_extract.py)"))
    print("| file | ours docs | ours s | ours docs/s | datatrove docs | datatrove s "
          "| datatrove docs/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, od, os_, orate, pd, ps, prate, ratio in rows:
        print(f"| {name} | {od} | {os_:.2f} | {orate:.1f} | {pd} | {ps:.2f} | {prate:.1f} "
              f"| **{ratio:.1f}x** |")


if __name__ == "__main__":
    main()
