"""File-level MinHash-LSH near-duplicate removal: the readable reference implementation.

Each input file is one document. Same normalization, shingles and signatures as the pipeline
(lmlib.dedup.shingles, lmlib.dedup.minhash), but the rest is written the plain way: a dict of
band buckets, every pair inside a bucket, Python sets for the exact Jaccard, a textbook
union-find. The pipeline stages (signatures, clusters, removal) must agree with it; kept in lmlib
because `minhash_deduplication` is public API.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from lmlib.dedup.config import MinHashConfig
from lmlib.dedup.exact_lines import check_unique_basenames
from lmlib.dedup.minhash import band_hashes, minhash_signatures
from lmlib.dedup.shingles import shingle_sets
from lmlib.dedup.union_find import UnionFind


def near_duplicate_keepers(
    doc_ids: Sequence[str], texts: Sequence[str], config: MinHashConfig
) -> tuple[list[bool], list[int]]:
    """(keep, cluster label) per document; doc_ids must be unique.

    The keeper of a cluster is its longest text in UTF-8 bytes, then the smallest doc_id.
    """
    order = sorted(range(len(doc_ids)), key=lambda i: doc_ids[i])  # independent of input order
    texts_sorted = [texts[i] for i in order]
    shingles, offsets = shingle_sets(texts_sorted, config.ngrams)
    sets = [set(shingles[offsets[i] : offsets[i + 1]].tolist()) for i in range(len(order))]
    bands = band_hashes(
        minhash_signatures(shingles, offsets, config.num_hashes, config.seed), config.num_bands
    )
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for doc, doc_bands in enumerate(bands.tolist()):
        if sets[doc]:
            for band, band_hash in enumerate(doc_bands):
                buckets[(band, band_hash)].append(doc)
    candidates = {pair for docs in buckets.values() for pair in itertools.combinations(docs, 2)}

    union_find = UnionFind(len(order))
    for a, b in sorted(candidates):
        if len(sets[a] & sets[b]) / len(sets[a] | sets[b]) >= config.jaccard_threshold:
            union_find.union(a, b)
    best: dict[int, int] = {}
    for doc in range(len(order)):
        root = union_find.find(doc)
        size = len(texts_sorted[doc].encode("utf-8"))
        if root not in best or size > len(texts_sorted[best[root]].encode("utf-8")):
            best[root] = doc  # docs are visited in doc_id order, so ties keep the smaller id
    keep, label = [False] * len(order), [0] * len(order)
    for doc, original in enumerate(order):
        root = union_find.find(doc)
        keep[original] = best[root] == doc
        label[original] = order[root]
    return keep, label


def minhash_deduplication(
    input_files: Sequence[str | Path],
    num_hashes: int,
    num_bands: int,
    ngrams: int,
    jaccard_threshold: float,
    output_directory: str | Path,
    seed: int = 0,
) -> dict:
    """Copy every file that is not a removed near-duplicate, unchanged, to output_directory.

    Documents with no duplicate are always kept; each cluster of near-duplicates (candidates
    from num_bands LSH bands over num_hashes MinHash values, confirmed by exact Jaccard of word
    ngrams >= jaccard_threshold, closed transitively) keeps exactly one member.
    """
    started = time.perf_counter()
    config = MinHashConfig(
        num_hashes=num_hashes,
        num_bands=num_bands,
        ngrams=ngrams,
        jaccard_threshold=jaccard_threshold,
        seed=seed,
    )
    paths = [Path(p) for p in input_files]
    check_unique_basenames(paths)
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in paths]
    keep, label = near_duplicate_keepers([path.name for path in paths], texts, config)
    output_directory = Path(output_directory)
    output_directory.mkdir(parents=True, exist_ok=True)
    for path, kept in zip(paths, keep, strict=True):
        if kept:
            shutil.copyfile(path, output_directory / path.name)
    cluster_sizes = defaultdict(int)
    for root in label:
        cluster_sizes[root] += 1
    return {
        "documents": len(paths),
        "kept": sum(keep),
        "removed": len(paths) - sum(keep),
        "clusters": sum(1 for size in cluster_sizes.values() if size > 1),
        "seconds": round(time.perf_counter() - started, 4),
    }
