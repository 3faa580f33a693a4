"""Benchmark lmlib.tokenizer against HF `tokenizers` (BPE training) and tiktoken (encoding).

    .venv/bin/python benchmarks/bench_tokenizer.py [--megabytes 50] [--vocab-sizes 10000 32000]
        [--encode-megabytes 11] [--skip-training] [--all-shared-text]

What it measures, in one run on the same machine:
1. BPE training time at each vocabulary size on the same >= 50 MB text: `lmlib.tokenizer.train_bpe`
   (all cores) against HF `tokenizers` BpeTrainer with the ByteLevel pre-tokenizer (GPT-2 regex,
   no prefix space) and the same special token, both on all cores.
2. Encoding throughput (MB/s of UTF-8) with the GPT-2 vocabulary on the first 11 MB of that text
   (its first copy: no document repeats, so no pre-token cache is flattered): ours in one process
   (the C core, then the pure-Python path with LMPIPE_NATIVE=0) against tiktoken `gpt2` on one
   thread; ours in a pool of one process per core against tiktoken `encode_batch` with as many
   threads. Ours counts building its C encoder. The pool is timed from its start (spawning the
   workers, each loading the GPT-2 files and building its C encoder, as the token_shards stage's
   workers do) and again from when every worker is ready; tiktoken's loading is not counted.
   `--skip-training` measures encoding alone.
3. A vocab-500 training on ../shared/data/text/corpus.en (130 KB); target < 1.5 s.
Every measurement runs in a fresh subprocess, which reports its peak RSS (and, for process pools,
the largest worker's peak RSS).

The text: there is no 50 MB natural corpus offline, so it is built from the shared English texts
(enwiki excerpt articles, Lee news, TinyStories sample, corpus.en, and the plain text of the
365 Python-docs pages extracted with resiliparse), about 11 MB of unique text, repeated with a
different seeded document order each time until it reaches the requested size. Documents are
joined by <|endoftext|>. The repetition makes every pre-token count a multiple of the number of
copies and keeps the number of unique pre-tokens that of ~11 MB of text, which favours trainers
that work on unique pre-tokens (both do) and makes the pair statistics unlike a real 50 MB corpus.
`--all-shared-text` instead trains on the largest unique text ../shared/data holds (about
30 MB, written once): those documents plus MATH's and GSM8K's problems and solutions (MATH-500
is drawn from MATH and left out), every MMLU question with its options and answer, and the
text of the other crawl samples (resiliparse for WARC responses, WET records as they are);
exact duplicate documents are dropped, and the order is a seeded shuffle.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EOT = "<|endoftext|>"
sys.path.insert(0, str(REPO))


def _shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        sys.exit(f"bench_tokenizer: needs ../shared/{relative}, which is not present")
    return path


def _python_docs_texts() -> list[str]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text

    texts = []
    with _shared("data/crawl/python-docs-crawl.warc.gz").open("rb") as handle:
        for record in ArchiveIterator(handle, record_types=WarcRecordType.response):
            html = record.reader.read().decode("utf-8", errors="replace")
            text = extract_plain_text(html, main_content=False)
            if text.strip():
                texts.append(text)
    return texts


def _crawl_texts() -> list[str]:
    """The text of the crawl samples other than python-docs (already in the default text)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text

    texts = []
    kinds = WarcRecordType.response | WarcRecordType.conversion
    for path in sorted(_shared("data/crawl").glob("*.warc*.gz")):
        if "python-docs" in path.name or path.name.endswith(".wat.gz"):
            continue
        with path.open("rb") as handle:
            for record in ArchiveIterator(handle, record_types=kinds):
                data = record.reader.read().decode("utf-8", errors="replace")
                texts.append(data if record.record_type == WarcRecordType.conversion
                             else extract_plain_text(data, main_content=False))
    return texts


def _benchmark_texts() -> list[str]:
    """MATH and GSM8K problems with solutions, MMLU questions with options and answers."""
    texts = []
    for path in sorted(_shared("data/math").glob("*/*.jsonl")):
        if path.parent.name == "math500":  # drawn from MATH
            continue
        for line in path.open(encoding="utf-8"):
            record = json.loads(line)
            texts.append("\n".join(str(record[key]) for key in
                                   ("problem", "solution", "question", "answer") if key in record))
    for path in sorted(_shared("data/mmlu").glob("*/*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle):
                options = "\n".join(f"{c}. {a}" for c, a in zip("ABCD", row[1:5], strict=True))
                texts.append(f"{row[0]}\n{options}\nAnswer: {row[-1]}")
    return texts


def build_corpus(path: Path, megabytes: float, all_shared_text: bool = False) -> dict:
    """Write the benchmark text (see the module docstring) and describe it."""
    documents = []
    with gzip.open(_shared("data/text/enwiki-excerpt.jsonl.gz"), "rt", encoding="utf-8") as f:
        documents += [json.loads(line)["text"] for line in f]
    documents += _shared("data/text/news-lee-background.txt").read_text("utf-8").splitlines()
    documents += _shared("data/text/tinystories_sample.txt").read_text("utf-8").split(EOT)
    documents += _shared("data/text/corpus.en").read_text("utf-8").split("\n\n")
    documents += _python_docs_texts()
    if all_shared_text:
        documents += _benchmark_texts() + _crawl_texts()
        megabytes = 0.0  # one copy
    documents = list(dict.fromkeys(d.replace(EOT, "") for d in documents if d.strip()))
    unique_bytes = sum(len(d.encode()) for d in documents)
    copy_bytes = unique_bytes + len(documents) * len(EOT.encode())
    target = int(megabytes * 1e6)
    written, copies = 0, 0
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        while written < target or not copies:
            order = documents[:]
            rng.shuffle(order)
            for document in order:
                data = document + EOT
                handle.write(data)
                written += len(data.encode())
            copies += 1
    return {"documents": len(documents), "unique_mb": unique_bytes / 1e6, "copies": copies,
            "copy_mb": copy_bytes / 1e6, "mb": path.stat().st_size / 1e6}


# --- tasks, each run in its own subprocess ------------------------------------------------------


def _peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": own, "largest_child_rss_mb": children}


def task_train_ours(text: Path, vocab_size: int, workers: int) -> dict:
    from lmlib.tokenizer import train_bpe

    stats: dict = {}
    started = time.perf_counter()
    vocab, merges = train_bpe(text, vocab_size, [EOT], workers=workers, stats=stats)
    return {"seconds": time.perf_counter() - started, "vocab": len(vocab), **stats}


def task_train_hf(text: Path, vocab_size: int, workers: int) -> dict:
    os.environ["RAYON_NUM_THREADS"] = str(workers)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=0,
    )
    started = time.perf_counter()
    tokenizer.train([str(text)], trainer)
    return {"seconds": time.perf_counter() - started, "vocab": tokenizer.get_vocab_size()}


def _gpt2_ours():
    from lmlib.tokenizer import Tokenizer

    return Tokenizer.from_files(_shared("data/gpt2/gpt2_vocab.json"),
                                _shared("data/gpt2/gpt2_merges.txt"), [EOT])


def _tiktoken_gpt2():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_shared("data/tiktoken-cache").resolve())
    import tiktoken

    return tiktoken.get_encoding("gpt2")


def task_encode_ours_single(text: Path) -> dict:
    tokenizer = _gpt2_ours()
    data = text.read_text("utf-8")
    started = time.perf_counter()
    ids = tokenizer.encode(data)  # the C core, if used, is built in here: its cost is counted
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tokens": len(ids), "mb_per_s": len(data.encode()) / 1e6 / seconds,
            "native": tokenizer.uses_native_core}


def task_encode_tiktoken_single(text: Path) -> dict:
    encoding = _tiktoken_gpt2()
    data = text.read_text("utf-8")
    started = time.perf_counter()
    ids = encoding.encode(data, allowed_special={EOT})
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tokens": len(ids), "mb_per_s": len(data.encode()) / 1e6 / seconds}


_pool_tokenizer = None


def _pool_init(ready) -> None:
    global _pool_tokenizer
    _pool_tokenizer = _gpt2_ours()
    _pool_tokenizer.encode("builds the C encoder, as a first document would")
    ready.wait()


def _pool_encode(documents: list[str]) -> int:
    return sum(len(_pool_tokenizer.encode(document)) + 1 for document in documents)


def task_encode_ours_parallel(text: Path, workers: int) -> dict:
    import multiprocessing

    documents = text.read_text("utf-8").split(EOT)
    batches = [documents[i:i + 200] for i in range(0, len(documents), 200)]
    size = text.stat().st_size
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)  # passed when every worker has loaded the tokenizer
    started = time.perf_counter()  # includes starting the pool and loading the vocabulary
    with context.Pool(workers, initializer=_pool_init, initargs=(ready,)) as pool:
        ready.wait()
        warm = time.perf_counter()
        tokens = sum(pool.imap(_pool_encode, batches))
        finished = time.perf_counter()
    return {"seconds": finished - started, "tokens": tokens,
            "mb_per_s": size / 1e6 / (finished - started),
            "warm_mb_per_s": size / 1e6 / (finished - warm)}


def task_encode_tiktoken_parallel(text: Path, workers: int) -> dict:
    encoding = _tiktoken_gpt2()
    documents = text.read_text("utf-8").split(EOT)
    size = text.stat().st_size
    started = time.perf_counter()
    encoded = encoding.encode_batch(documents, num_threads=workers, allowed_special={EOT})
    tokens = sum(len(ids) + 1 for ids in encoded)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tokens": tokens, "mb_per_s": size / 1e6 / seconds}


TASKS = {
    "train_ours": task_train_ours,
    "train_hf": task_train_hf,
    "encode_ours_single": task_encode_ours_single,
    "encode_tiktoken_single": task_encode_tiktoken_single,
    "encode_ours_parallel": task_encode_ours_parallel,
    "encode_tiktoken_parallel": task_encode_tiktoken_parallel,
}


def run_task(name: str, environment: dict | None = None, **arguments) -> dict:
    """Run one task in a fresh interpreter (environment: variables to set) and return what it
    measured."""
    command = [sys.executable, __file__, "--task", name, "--arguments", json.dumps(arguments)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                               env={**os.environ, **(environment or {})})
    if completed.returncode != 0:
        raise RuntimeError(f"task {name} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"  {name} {environment or ''} {arguments}: {result}", file=sys.stderr, flush=True)
    return result


def _memory(result: dict) -> str:
    text = f"{result['peak_rss_mb']:.0f} MB"
    if result.get("largest_child_rss_mb", 0) > 50:
        text += f" (+ workers ≤ {result['largest_child_rss_mb']:.0f} MB each)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=50.0, help="size of the training text")
    parser.add_argument("--encode-megabytes", type=float, default=11.0,
                        help="size of the text encoded (a prefix of the training text's documents; "
                             "up to ~11 MB no document repeats, so no cache is flattered)")
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[10_000, 32_000])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--all-shared-text", action="store_true",
                        help="train on the largest unique text of ../shared/data (about 30 MB)")
    parser.add_argument("--skip-training", action="store_true",
                        help="measure encoding only (then --megabytes 11 gives one unique copy)")
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--arguments", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        arguments = json.loads(args.arguments)
        if "text" in arguments:
            arguments["text"] = Path(arguments["text"])
        result = TASKS[args.task](**arguments)
        print(json.dumps({**result, **_peak_rss_mb()}))
        return

    workers = args.workers
    with tempfile.TemporaryDirectory(prefix="bench_tokenizer_") as scratch:
        corpus = Path(scratch) / "corpus.txt"
        described = build_corpus(corpus, args.megabytes, args.all_shared_text)
        encode_text = Path(scratch) / "encode.txt"
        with corpus.open("rb") as source:
            encode_text.write_bytes(source.read(int(args.encode_megabytes * 1e6)).rsplit(
                EOT.encode(), 1)[0])
        print(f"corpus: {described}", file=sys.stderr, flush=True)

        rows = []
        for vocab_size in [] if args.skip_training else args.vocab_sizes:
            ours = run_task("train_ours", text=str(corpus), vocab_size=vocab_size, workers=workers)
            peer = run_task("train_hf", text=str(corpus), vocab_size=vocab_size, workers=workers)
            rows.append((f"train vocab {vocab_size:,} on {described['mb']:.0f} MB ({workers} cores)",
                         f"{ours['seconds']:.1f} s", f"{peer['seconds']:.1f} s",
                         f"{ours['seconds'] / peer['seconds']:.2f}× time", _memory(ours),
                         _memory(peer)))
        small = _shared("data/text/corpus.en")
        if not args.skip_training:
            ours = run_task("train_ours", text=str(small), vocab_size=500, workers=workers)
            peer = run_task("train_hf", text=str(small), vocab_size=500, workers=workers)
            rows.append(("train vocab 500 on corpus.en (130 KB; target < 1.5 s)",
                         f"{ours['seconds']:.2f} s", f"{peer['seconds']:.2f} s",
                         f"{ours['seconds'] / peer['seconds']:.2f}× time", _memory(ours),
                         _memory(peer)))
        mb = encode_text.stat().st_size / 1e6
        peer = run_task("encode_tiktoken_single", text=str(encode_text))
        for environment in ({}, {"LMPIPE_NATIVE": "0"}):  # the C core, then the pure-Python path
            ours = run_task("encode_ours_single", environment, text=str(encode_text))
            assert ours["tokens"] == peer["tokens"], "token counts differ: ids are not tiktoken's"
            path = "C core" if ours["native"] else "pure Python"
            rows.append((f"encode GPT-2 vocab ({path}), {mb:.0f} MB, 1 process vs 1 thread",
                         f"{ours['mb_per_s']:.2f} MB/s", f"{peer['mb_per_s']:.2f} MB/s",
                         f"{ours['mb_per_s'] / peer['mb_per_s']:.2f}× speed", _memory(ours),
                         _memory(peer)))
        ours = run_task("encode_ours_parallel", text=str(encode_text), workers=workers)
        peer = run_task("encode_tiktoken_parallel", text=str(encode_text), workers=workers)
        assert ours["tokens"] == peer["tokens"], "token counts differ: ids are not tiktoken's"
        for key, when in (("mb_per_s", "with"), ("warm_mb_per_s", "after")):
            rows.append((f"encode GPT-2 vocab, {mb:.0f} MB, {workers} processes ({when} their "
                         f"start-up) vs encode_batch {workers} threads",
                         f"{ours[key]:.2f} MB/s", f"{peer['mb_per_s']:.2f} MB/s",
                         f"{ours[key] / peer['mb_per_s']:.2f}× speed", _memory(ours),
                         _memory(peer)))

    import tiktoken
    import tokenizers

    print(f"\n## Tokenizer: lmlib.tokenizer vs HF tokenizers {tokenizers.__version__} (training) "
          f"and tiktoken {tiktoken.__version__} (encoding)\n")
    print(f"- date: {datetime.date.today().isoformat()}")
    print(f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, GPU: none used; Python {platform.python_version()}")
    print(f"- text: {described['mb']:.1f} MB = {described['copies']} shuffled copies of "
          f"{described['unique_mb']:.1f} MB of unique shared English text "
          f"({described['documents']} documents; see the script's docstring); the encoded text "
          f"is its first {mb:.1f} MB" + (" (no document repeated)" if mb <= described["copy_mb"]
                                         else " (documents repeat: caches are flattered)") + "\n")
    print("| measurement | lmlib | peer | ratio (lmlib / peer) | lmlib peak RSS | peer peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
