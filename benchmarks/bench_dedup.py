"""Benchmark: lmlib.dedup MinHash-LSH pipeline against datasketch (MinHash + MinHashLSH).

A deterministic generator builds a corpus of Zipf-distributed synthetic words with planted
near-duplicates: 20% of the documents are copies of an original with random word substitutions
aimed at Jaccard levels 0.5 ... 1.0 of their word 5-gram sets (the exact Jaccard of every planted
pair is then computed in plain Python and is the ground truth). Documents are shuffled and split
into 8 partition files, so duplicates cross files.

Ground truth: connected components of the planted pairs with exact Jaccard >= 0.85; a predicted
pair is any two documents in the same cluster. Both systems use 128 hashes in 16 bands x 8 rows,
5-grams and threshold 0.85, and both verify candidates by exact Jaccard (datasketch with Python
sets of its shingles), so they target the same recall; datasketch runs on the 50k subset.

Every run is a fresh spawned process, so its peak RSS is its own.

    .venv/bin/python benchmarks/bench_dedup.py            # 50k, 100k, 200k (+ datasketch at 50k)
    .venv/bin/python benchmarks/bench_dedup.py --sizes 20000 --datasketch-docs 20000   # quick
"""

from __future__ import annotations

import argparse
import datetime
import resource
import shutil
import string
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from lmlib.formats import DOCUMENTS_FILE  # noqa: E402

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
THRESHOLD = 0.85
NGRAMS, NUM_HASHES, NUM_BANDS = 5, 128, 16
PARTITIONS = 8
VOCAB = 20_000


def generate_corpus(num_docs: int, seed: int = 1234):
    """(texts in shuffled order, planted pairs as [(a, b, level)] over those positions)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    vocab = np.array(
        ["".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(VOCAB)], dtype=object
    )
    probabilities = 1.0 / (np.arange(VOCAB) + 10.0)
    probabilities /= probabilities.sum()
    num_variants = num_docs // 5
    num_originals = num_docs - num_variants
    lengths = rng.integers(80, 301, num_originals)
    flat = rng.choice(VOCAB, size=int(lengths.sum()), p=probabilities)
    documents = np.split(flat, np.cumsum(lengths)[:-1])
    sources = rng.integers(0, num_originals, num_variants)
    levels = rng.choice(np.array(LEVELS), num_variants)
    planted = []
    for k, (source, level) in enumerate(zip(sources.tolist(), levels.tolist())):
        words = documents[source].copy()
        shingles = len(words) - NGRAMS + 1
        # m well-separated substitutions give Jaccard (S - n m) / (S + n m); solve for m.
        changes = round(shingles * (1 - level) / (NGRAMS * (1 + level)))
        if changes:
            positions = rng.choice(len(words), size=changes, replace=False)
            words[positions] = rng.integers(0, VOCAB, changes)
        documents.append(words)
        planted.append((source, num_originals + k, level))
    order = rng.permutation(num_docs)  # position of each generated document after shuffling
    position = np.empty(num_docs, dtype=np.int64)
    position[order] = np.arange(num_docs)
    texts = [" ".join(vocab[documents[i]]) for i in order.tolist()]
    words_by_position = [documents[i] for i in order.tolist()]
    pairs = [(int(position[a]), int(position[b]), level) for a, b, level in planted]
    return texts, words_by_position, pairs


def ngram_set(words: np.ndarray) -> set:
    items = words.tolist()
    return set(zip(*(items[i:] for i in range(NGRAMS))))


def truth_edges(words_by_position, planted):
    """Exact-Jaccard edges between all members of each planted group: [(a, b, jaccard)]."""
    groups: dict[int, set[int]] = {}
    for a, b, _ in planted:
        root = groups.setdefault(a, {a})
        root.add(b)
    edges = []
    for members in groups.values():
        members = sorted(members)
        sets = {m: ngram_set(words_by_position[m]) for m in members}
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                union = len(sets[a] | sets[b])
                edges.append((a, b, len(sets[a] & sets[b]) / union))
    return edges


def cluster_pairs(labels: dict[int, int]) -> set[tuple[int, int]]:
    by_cluster: dict[int, list[int]] = {}
    for doc, cluster in labels.items():
        by_cluster.setdefault(cluster, []).append(doc)
    pairs = set()
    for members in by_cluster.values():
        members.sort()
        pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return pairs


def truth_pairs(edges, subset_size: int) -> set[tuple[int, int]]:
    from lmlib.dedup.union_find import UnionFind

    union_find = UnionFind(subset_size)
    touched = set()
    for a, b, jaccard in edges:
        if a < subset_size and b < subset_size and jaccard >= THRESHOLD:
            union_find.union(a, b)
            touched.update((a, b))
    return cluster_pairs({doc: union_find.find(doc) for doc in touched})


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_ours(partition_files: list[Path], workdir: Path, workers: int) -> dict:
    """Stages 1-3 of lmlib.dedup; returns timings and the predicted pairs (runs in a child)."""
    import polars as pl

    from lmlib.dedup import (
        CLUSTERS_FILE,
        SIGNATURES_FILE,
        MinHashConfig,
        compute_minhash_signatures,
        deduplicate_documents,
        find_duplicate_clusters,
    )

    # plots=False: the peer draws no charts, so neither do we in the timed run
    config = MinHashConfig(NUM_HASHES, NUM_BANDS, NGRAMS, THRESHOLD, seed=0, workers=workers,
                           plots=False)
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    signature_files = []
    for file in partition_files:
        compute_minhash_signatures(file, workdir / "signatures" / file.parent.name, config)
        signature_files.append(workdir / "signatures" / file.parent.name / SIGNATURES_FILE)
    signatures_done = time.perf_counter()
    stats = find_duplicate_clusters(signature_files, workdir / "clusters", config)
    clusters_done = time.perf_counter()
    cpu_seconds = _cpu_seconds() - cpu_started
    for file in partition_files:
        deduplicate_documents(
            file,
            workdir / "clusters" / CLUSTERS_FILE,
            workdir / "out" / file.parent.name,
            config,
        )
    finished = time.perf_counter()
    clusters = pl.read_parquet(workdir / "clusters" / CLUSTERS_FILE)
    labels = dict(
        zip(
            [int(d[1:]) for d in clusters["doc_id"].to_list()],
            clusters["cluster_id"].to_list(),
            strict=True,
        )
    )
    return {
        "cpu_seconds": cpu_seconds,
        "signatures_seconds": signatures_done - started,
        "clusters_seconds": clusters_done - signatures_done,
        "documents_seconds": finished - clusters_done,
        "candidate_pairs": stats.candidate_pairs,
        "verified_pairs": stats.verified_pairs,
        "duplicates_removed": stats.duplicates_removed,
        "peak_rss_mb": _peak_rss_mb(),
        "labels": labels,
    }


def run_datasketch(texts: list[str]) -> dict:
    """datasketch MinHash (bulk) + MinHashLSH (16 x 8), exact verification, union-find."""
    from datasketch import MinHash, MinHashLSH

    from lmlib.dedup.union_find import UnionFind

    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    shingle_sets = []
    for text in texts:  # the generated text is already normalized: lowercase words, one space
        words = text.split()
        shingle_sets.append(
            {" ".join(words[i : i + NGRAMS]) for i in range(max(len(words) - NGRAMS + 1, 1))}
        )
    minhashes = MinHash.bulk(
        ([s.encode() for s in shingles] for shingles in shingle_sets), num_perm=NUM_HASHES, seed=0
    )
    lsh = MinHashLSH(
        threshold=THRESHOLD, num_perm=NUM_HASHES, params=(NUM_BANDS, NUM_HASHES // NUM_BANDS)
    )
    with lsh.insertion_session() as session:
        for doc, minhash in enumerate(minhashes):
            session.insert(doc, minhash, check_duplication=False)
    union_find = UnionFind(len(texts))
    candidates = verified = 0
    for doc, minhash in enumerate(minhashes):
        for other in lsh.query(minhash):
            if other <= doc:
                continue
            candidates += 1
            a, b = shingle_sets[doc], shingle_sets[other]
            if len(a & b) / len(a | b) >= THRESHOLD:
                verified += 1
                union_find.union(doc, other)
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_started
    labels = {doc: union_find.find(doc) for doc in range(len(texts))}
    sizes: dict[int, int] = {}
    for root in labels.values():
        sizes[root] = sizes.get(root, 0) + 1
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "candidate_pairs": candidates,
        "verified_pairs": verified,
        "peak_rss_mb": _peak_rss_mb(),
        "labels": {d: r for d, r in labels.items() if sizes[r] > 1},
    }


def write_partitions(texts: list[str], directory: Path) -> list[Path]:
    import polars as pl

    bounds = np.linspace(0, len(texts), PARTITIONS + 1).astype(int)
    files = []
    for k in range(PARTITIONS):
        path = directory / f"part-{k:02d}" / DOCUMENTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = range(bounds[k], bounds[k + 1])
        pl.DataFrame(
            {"doc_id": [f"d{i:07d}" for i in rows], "text": texts[bounds[k] : bounds[k + 1]]}
        ).write_parquet(path)
        files.append(path)
    return files


def in_child(function, *args):
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def precision_recall(predicted: set, truth: set) -> tuple[float, float]:
    hits = len(predicted & truth)
    return hits / max(len(predicted), 1), hits / max(len(truth), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    parser.add_argument("--datasketch-docs", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=1, help="lmlib signature workers")
    args = parser.parse_args()
    sizes = sorted(args.sizes)

    t0 = time.perf_counter()
    texts, words, planted = generate_corpus(max(sizes))
    edges = truth_edges(words, planted)
    generated = time.perf_counter() - t0
    print(f"generated {len(texts)} documents, {len(planted)} planted pairs in {generated:.1f}s")

    workdir = Path(tempfile.mkdtemp(prefix="bench_dedup_"))
    results = {}
    try:
        for size in sizes:
            files = write_partitions(texts[:size], workdir / f"docs-{size}")
            result = in_child(run_ours, files, workdir / f"ours-{size}", args.workers)
            truth = truth_pairs(edges, size)
            result["precision"], result["recall"] = precision_recall(
                cluster_pairs(result["labels"]), truth
            )
            result["truth_pairs"] = len(truth)
            results[size] = result
            total = (
                result["signatures_seconds"]
                + result["clusters_seconds"]
                + result["documents_seconds"]
            )
            print(
                f"ours {size}: {total:.1f}s, precision {result['precision']:.4f}, recall {result['recall']:.4f}"
            )
        ds_size = args.datasketch_docs
        peer = in_child(run_datasketch, texts[:ds_size])
        truth = truth_pairs(edges, ds_size)
        peer["precision"], peer["recall"] = precision_recall(cluster_pairs(peer["labels"]), truth)
        print(f"datasketch {ds_size}: {peer['seconds']:.1f}s")
        if ds_size not in results:
            files = write_partitions(texts[:ds_size], workdir / f"docs-{ds_size}")
            result = in_child(run_ours, files, workdir / f"ours-{ds_size}", args.workers)
            result["precision"], result["recall"] = precision_recall(
                cluster_pairs(result["labels"]), truth
            )
            result["truth_pairs"] = len(truth)
            results[ds_size] = result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def seconds(r: dict) -> float:
        return r["signatures_seconds"] + r["clusters_seconds"]

    ours = results[ds_size]
    print()
    print(f"## dedup: lmlib.dedup vs datasketch ({datetime.date.today().isoformat()})")
    print()
    print(
        f"Machine: {machine()}; shared with other jobs (loaded). lmlib workers={args.workers}; datasketch single process."
    )
    print(
        f"MinHash {NUM_HASHES} hashes, {NUM_BANDS} bands x {NUM_HASHES // NUM_BANDS} rows, word {NGRAMS}-grams, threshold {THRESHOLD}; both verify candidates by exact Jaccard."
    )
    print()
    print(
        "| system | docs | wall s (stages 1+2) | docs/s wall | CPU s | docs/s CPU "
        "| peak RSS MiB | candidate pairs | precision | recall |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r, wall in (
        ("lmlib.dedup", ours, seconds(ours)),
        ("datasketch", peer, peer["seconds"]),
    ):
        print(
            f"| {name} | {ds_size:,} | {wall:.2f} | {ds_size / wall:,.0f} | {r['cpu_seconds']:.2f} "
            f"| {ds_size / r['cpu_seconds']:,.0f} | {r['peak_rss_mb']:.0f} | {r['candidate_pairs']:,} "
            f"| {r['precision']:.4f} | {r['recall']:.4f} |"
        )
    print(
        f"| **ratio lmlib / datasketch** | | | **{peer['seconds'] / seconds(ours):.1f}x** | "
        f"| **{peer['cpu_seconds'] / ours['cpu_seconds']:.1f}x** | | | | |"
    )
    print()
    print("Scaling of lmlib.dedup (8 partitions; stage 3 = writing deduplicated documents):")
    print()
    print(
        "| docs | signatures s | clusters s | documents s | docs/s wall (1+2) | CPU s (1+2) "
        "| peak RSS MiB | truth pairs | precision | recall |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        r = results[size]
        print(
            f"| {size:,} | {r['signatures_seconds']:.2f} | {r['clusters_seconds']:.2f} | {r['documents_seconds']:.2f} | {size / seconds(r):,.0f} | {r['cpu_seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['truth_pairs']:,} | {r['precision']:.4f} | {r['recall']:.4f} |"
        )
    print()
    largest = max(sizes)
    labels = results[largest]["labels"]
    print(
        f"Recall by planted level at {largest:,} docs (pairs source-variant with exact Jaccard >= {THRESHOLD}; found = same cluster):"
    )
    print()
    print("| planted level | pairs | mean exact Jaccard | pairs >= threshold | found |")
    print("|---:|---:|---:|---:|---:|")
    jaccard_of = {(a, b): j for a, b, j in edges}
    for level in LEVELS:
        rows = [(a, b) for a, b, lv in planted if lv == level and a < largest and b < largest]
        exact = [jaccard_of[(min(a, b), max(a, b))] for a, b in rows]
        above = [(a, b) for (a, b), j in zip(rows, exact) if j >= THRESHOLD]
        found = sum(1 for a, b in above if a in labels and labels[a] == labels.get(b))
        print(
            f"| {level} | {len(rows):,} | {np.mean(exact):.3f} | {len(above):,} | {found / max(len(above), 1):.4f} |"
        )
    print(f"\nTotal benchmark time {time.perf_counter() - t0:.0f}s.")


if __name__ == "__main__":
    main()
