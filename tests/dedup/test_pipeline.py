import polars as pl
import pytest

from lmlib.dedup import (
    MinHashConfig,
    compute_minhash_signatures,
    deduplicate_documents,
    exact_line_deduplication,
    find_duplicate_clusters,
    minhash_deduplication,
)
from lmlib.formats import DOCUMENTS_FILE
from tests.dedup.corpus import HALF_MIT, UNRELATED, mit, write_documents, write_files

CORPUS = {
    "a_mit_2019.txt": mit(2019, "Ada Lovelace"),
    "a_bread.txt": UNRELATED,
    "a_half.txt": HALF_MIT,
    "b_mit_2024.txt": mit(2024, "Grace Hopper"),
    "b_copy.txt": UNRELATED,
    "b_mit_long.txt": mit(1999, "Alan Turing and the Bletchley Park Trust"),
    "b_poem.txt": "roses are red\nviolets are blue\nthis line is unique\n",
}


def run_pipeline(tmp_path, partitions: dict[str, dict[str, str]], config: MinHashConfig):
    """Stages 1-3 over one documents.parquet per partition; returns (cluster stats, outputs)."""
    signature_files = []
    for name, texts in partitions.items():
        documents = write_documents(tmp_path / "docs" / name / DOCUMENTS_FILE, texts, name)
        result = compute_minhash_signatures(documents, tmp_path / "sig" / name, config)
        assert result.partition == name and result.documents == len(texts)
        signature_files.append(tmp_path / "sig" / name / "signatures.parquet")
    cluster_stats = find_duplicate_clusters(signature_files, tmp_path / "clusters", config)
    outputs = {}
    for name in partitions:
        deduplicate_documents(
            tmp_path / "docs" / name / DOCUMENTS_FILE,
            tmp_path / "clusters" / "clusters.parquet",
            tmp_path / "out" / name,
            config,
        )
        outputs[name] = pl.read_parquet(tmp_path / "out" / name / DOCUMENTS_FILE)
    return cluster_stats, outputs


def split(texts: dict[str, str]) -> dict[str, dict[str, str]]:
    return {
        "part_a": {k: v for k, v in texts.items() if k.startswith("a_")},
        "part_b": {k: v for k, v in texts.items() if k.startswith("b_")},
    }


def test_pipeline_agrees_with_file_level_minhash_dedup(tmp_path):
    config = MinHashConfig(num_hashes=128, num_bands=16, ngrams=5, jaccard_threshold=0.8)
    minhash_deduplication(
        write_files(tmp_path / "files", CORPUS), 128, 16, 5, 0.8, tmp_path / "file_out"
    )
    expected = sorted(p.name for p in (tmp_path / "file_out").iterdir())
    stats, outputs = run_pipeline(tmp_path, split(CORPUS), config)
    kept = sorted(doc for frame in outputs.values() for doc in frame["doc_id"].to_list())
    assert kept == expected == ["a_bread.txt", "a_half.txt", "b_mit_long.txt", "b_poem.txt"]
    assert stats.clusters == 2 and stats.duplicates_removed == 3
    assert stats.cross_partition_clusters == 2
    assert stats.duplicate_rate == pytest.approx(3 / 7, abs=1e-6)
    assert stats.cluster_size_histogram == {"2": 1, "3": 1}
    # Survivors keep every column unchanged.
    survivor = outputs["part_b"].filter(pl.col("doc_id") == "b_mit_long.txt").row(0, named=True)
    assert survivor["text"] == CORPUS["b_mit_long.txt"] and survivor["source_file"] == "part_b"
    largest = [row for row in stats.example_clusters if row["cluster_size"] == 3]
    assert [row["doc_id"] for row in largest][0] == "b_mit_long.txt" and largest[0]["is_keeper"]
    assert len(largest) == 3 and all(row["jaccard_to_keeper"] >= 0.8 for row in largest)
    assert stats.example_clusters[0]["cluster_size"] == 3  # the largest cluster first


def test_pipeline_results_do_not_depend_on_partition_order(tmp_path):
    config = MinHashConfig(seed=3)
    forward, _ = run_pipeline(tmp_path / "f", split(CORPUS), config)
    reordered = dict(reversed(list(split(CORPUS).items())))
    backward, _ = run_pipeline(tmp_path / "b", reordered, config)
    frame_f = pl.read_parquet(tmp_path / "f" / "clusters" / "clusters.parquet")
    frame_b = pl.read_parquet(tmp_path / "b" / "clusters" / "clusters.parquet")
    assert frame_f.equals(frame_b)
    assert forward.verified_pairs == backward.verified_pairs


def test_huge_bucket_of_copies_forms_one_cluster_with_linear_pairs(tmp_path):
    copies = {f"a_{i:03d}.txt": mit() for i in range(60)} | {"b_other.txt": UNRELATED}
    config = MinHashConfig(max_bucket_all_pairs=8)
    stats, outputs = run_pipeline(tmp_path, split(copies), config)
    assert stats.clusters == 1 and stats.duplicates_removed == 59
    assert stats.candidate_pairs <= 2 * 59  # star + chain, not 60 * 59 / 2
    assert outputs["part_a"]["doc_id"].to_list() == ["a_000.txt"]


def test_pipeline_line_dedup_matches_file_level_exact_line_dedup(tmp_path):
    texts = {
        "a_1.txt": "menu home about\nfirst article body\nfooter (c) site\n",
        "a_2.txt": "menu home about\nsecond article body\n",
        "b_1.txt": "third article body\nfooter (c) site",
        "b_2.txt": "only unique lines here\nand here\n",
    }
    exact_line_deduplication(write_files(tmp_path / "files", texts), tmp_path / "file_out")
    config = MinHashConfig(line_dedup="line")
    stats, outputs = run_pipeline(tmp_path, split(texts), config)
    assert stats.repeated_units == 2
    pipeline = {
        d: t for frame in outputs.values() for d, t in frame.select("doc_id", "text").rows()
    }
    for name in texts:
        assert pipeline[name] == (tmp_path / "file_out" / name).read_text()
    frame = outputs["part_a"]
    assert frame["text_bytes"].to_list() == [len(t.encode()) for t in frame["text"].to_list()]


def test_line_dedup_does_not_strip_a_keeper_of_lines_shared_only_with_its_duplicates(tmp_path):
    texts = {"a_x.txt": mit(2019, "Ada"), "b_y.txt": mit(2019, "Ada Lovelace")}
    stats, outputs = run_pipeline(tmp_path, split(texts), MinHashConfig(line_dedup="paragraph"))
    assert stats.duplicates_removed == 1 and stats.repeated_units == 0
    assert outputs["part_b"]["text"].to_list() == [texts["b_y.txt"]]
    assert outputs["part_a"].is_empty()


def test_duplicate_doc_ids_across_partitions_are_rejected(tmp_path):
    config = MinHashConfig()
    files = []
    for name in ("p1", "p2"):
        documents = write_documents(
            tmp_path / name / DOCUMENTS_FILE, {"same": UNRELATED}, name
        )
        compute_minhash_signatures(documents, tmp_path / "sig" / name, config)
        files.append(tmp_path / "sig" / name / "signatures.parquet")
    with pytest.raises(ValueError, match="doc_id must be unique"):
        find_duplicate_clusters(files, tmp_path / "clusters", config)


def test_empty_and_wordless_documents_are_kept_and_never_clustered(tmp_path):
    texts = {"a_empty.txt": "", "a_punct.txt": "!!! ... ???", "b_empty.txt": "", "b_x.txt": "x"}
    stats, outputs = run_pipeline(tmp_path, split(texts), MinHashConfig())
    assert stats.documents_without_shingles == 3 and stats.clusters == 0
    assert sum(len(frame) for frame in outputs.values()) == 4
    documents = write_documents(tmp_path / "p0" / DOCUMENTS_FILE, {}, "p0")
    signature_stats = compute_minhash_signatures(documents, tmp_path / "sig0", MinHashConfig())
    assert signature_stats.documents == 0


def test_worker_processes_write_the_same_signatures(tmp_path, monkeypatch):
    import lmlib.dedup.signatures as signatures

    monkeypatch.setattr(signatures, "_BATCH_MAX_DOCS", 2)
    texts = {f"d{i}": mit(2000 + i) if i % 2 else f"{UNRELATED} {i}" for i in range(7)}
    documents = write_documents(tmp_path / "p" / DOCUMENTS_FILE, texts, "p")
    one = compute_minhash_signatures(documents, tmp_path / "one", MinHashConfig(workers=1))
    two = compute_minhash_signatures(documents, tmp_path / "two", MinHashConfig(workers=2))
    assert one.batches == two.batches == 4
    frame_one = pl.read_parquet(tmp_path / "one" / "signatures.parquet")
    assert frame_one.equals(pl.read_parquet(tmp_path / "two" / "signatures.parquet"))


def test_clusters_stage_draws_its_plots_and_returns_their_paths(tmp_path):
    stats, _ = run_pipeline(tmp_path, split(CORPUS), MinHashConfig())
    for path in (stats.s_curve_plot, stats.cluster_sizes_plot):
        assert path.parent == tmp_path / "clusters" and path.read_bytes()[:4] == b"\x89PNG"
    assert stats.lsh_bands == 16 and stats.lsh_rows_per_band == 8
    assert stats.manifest_counts() == {"documents": 7, "clusters": 2, "duplicates_removed": 3}


def test_clusters_stage_without_plots_writes_no_png(tmp_path):
    stats, _ = run_pipeline(tmp_path, split(CORPUS), MinHashConfig(plots=False))
    assert stats.s_curve_plot is None and not list((tmp_path / "clusters").glob("*.png"))


@pytest.mark.parametrize("field, value", [("num_hashes", 0), ("workers", -1), ("ngrams", 65),
                                          ("snippet_chars", 0), ("example_clusters", -1),
                                          ("line_dedup", "word")])
def test_config_rejects_a_bad_value_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"MinHashConfig.{field}"):
        MinHashConfig(**{field: value})
