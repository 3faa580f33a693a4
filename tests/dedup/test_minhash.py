import numpy as np
import pytest

from lmlib.dedup import MinHashConfig, candidate_probability, minhash_deduplication, normalize_texts
from lmlib.dedup.hashing import hash_strings
from lmlib.dedup.lsh import render_s_curve, s_curve_table
from lmlib.dedup.union_find import UnionFind, connected_components
from tests.dedup.corpus import HALF_MIT, UNRELATED, mit, word_ngram_jaccard, write_files

PARAMS = dict(num_hashes=128, num_bands=16, ngrams=5, jaccard_threshold=0.8)


def survivors(directory):
    return sorted(p.name for p in directory.iterdir())


def test_normalization_strips_accents_case_punctuation_and_extra_space():
    assert normalize_texts(["  Café, NAÏVE!\n\tdon't   STOP.", ""]) == ["cafe naive dont stop", ""]


def _reference_string_hash(text: str) -> int:
    """The documented algorithm in plain Python integers (see lmlib.dedup.hashing)."""
    mask = (1 << 64) - 1

    def splitmix64(x: int) -> int:
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    data = text.encode("utf-8")
    length_seed = splitmix64((len(data) * 0xD6E8FEB86659FD93) & mask)
    if len(data) <= 64:  # 8-byte little-endian chunks chained through splitmix64
        value = length_seed
        for k in range(0, len(data), 8):
            value = splitmix64(value ^ int.from_bytes(data[k : k + 8], "little"))
        return value
    total = sum((byte + 1) * pow(0xFF51AFD7ED558CCD, k, 1 << 64) for k, byte in enumerate(data))
    return splitmix64((total & mask) ^ length_seed)


def test_string_hash_is_the_documented_stable_algorithm():
    import pyarrow as pa

    texts = ["", "hello", "hello ", "Grüße, 世界", "exactly8", "x" * 64, "x" * 65, "y" * 300]
    hashes = hash_strings(pa.array(texts)).tolist()
    assert len(set(hashes)) == len(texts)
    # Stable: no per-process salt, no library-version dependence, so signatures stay comparable.
    assert hashes == [_reference_string_hash(t) for t in texts]


def test_identical_documents_collapse_to_one(tmp_path):
    paths = write_files(tmp_path / "in", {f"copy{i}.txt": mit() for i in range(4)})
    stats = minhash_deduplication(paths, output_directory=tmp_path / "out", **PARAMS)
    assert survivors(tmp_path / "out") == ["copy0.txt"]  # equal length: smallest name is kept
    assert stats["removed"] == 3 and stats["clusters"] == 1


def test_near_duplicate_licences_collapse_and_unrelated_text_survives(tmp_path):
    texts = {
        "mit_2019.txt": mit(2019, "Ada Lovelace"),
        "mit_2024.txt": mit(2024, "Grace Hopper"),
        "mit_1999.txt": mit(1999, "Alan Turing and the Bletchley Park Trust"),
        "bread.txt": UNRELATED,
    }
    assert word_ngram_jaccard(texts["mit_2019.txt"], texts["mit_1999.txt"]) > 0.8
    paths = write_files(tmp_path / "in", texts)
    minhash_deduplication(paths, output_directory=tmp_path / "out", **PARAMS)
    # The longest licence (most text bytes) is the one kept.
    assert survivors(tmp_path / "out") == ["bread.txt", "mit_1999.txt"]
    assert (tmp_path / "out" / "bread.txt").read_text() == UNRELATED  # written unchanged


def test_pairs_below_the_threshold_are_kept(tmp_path):
    assert 0.3 < word_ngram_jaccard(mit(), HALF_MIT) < 0.8
    paths = write_files(tmp_path / "in", {"full.txt": mit(), "half.txt": HALF_MIT})
    minhash_deduplication(paths, output_directory=tmp_path / "out", **PARAMS)
    assert survivors(tmp_path / "out") == ["full.txt", "half.txt"]
    # With the threshold under their true Jaccard, the same pair does collapse.
    minhash_deduplication(
        paths, 128, 64, 5, jaccard_threshold=0.3, output_directory=tmp_path / "low"
    )
    assert survivors(tmp_path / "low") == ["full.txt"]


def test_minhash_dedup_does_not_depend_on_file_order(tmp_path):
    texts = {f"doc{i}.txt": mit(2000 + i % 3, "Holder") for i in range(6)} | {"z.txt": UNRELATED}
    paths = write_files(tmp_path / "in", texts)
    for seed in (0, 1):
        minhash_deduplication(paths, output_directory=tmp_path / f"f{seed}", seed=seed, **PARAMS)
        minhash_deduplication(
            paths[::-1], output_directory=tmp_path / f"b{seed}", seed=seed, **PARAMS
        )
        assert survivors(tmp_path / f"f{seed}") == survivors(tmp_path / f"b{seed}")
    assert survivors(tmp_path / "f0") == ["doc0.txt", "z.txt"]


def test_config_rejects_bands_that_do_not_divide_hashes():
    with pytest.raises(ValueError, match="divisible by num_bands"):
        MinHashConfig(num_hashes=100, num_bands=16)
    with pytest.raises(ValueError, match="jaccard_threshold"):
        MinHashConfig(jaccard_threshold=1.5)


def test_s_curve_matches_the_banding_formula(tmp_path):
    table = {row["jaccard"]: row["candidate_probability"] for row in s_curve_table(16, 8)}
    assert table[1.0] == 1.0
    assert table[0.5] == pytest.approx(1 - (1 - 0.5**8) ** 16, abs=1e-6)
    assert candidate_probability(0.9, 16, 8) > 0.999 > candidate_probability(0.5, 16, 8)
    path = render_s_curve(tmp_path / "s.png", 16, 8, jaccard_threshold=0.8)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vectorized_components_match_textbook_union_find():
    rng = np.random.default_rng(0)
    n = 300
    left, right = rng.integers(0, n, 250), rng.integers(0, n, 250)
    union_find = UnionFind(n)
    for a, b in zip(left.tolist(), right.tolist()):
        union_find.union(a, b)
    expected = [union_find.find(i) for i in range(n)]
    assert connected_components(n, left, right).tolist() == expected
