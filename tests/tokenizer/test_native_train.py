"""Training's C cores against the pure-Python paths: the same pre-token counts (C pre-tokenizer
of bpe_encode.c, counter of bpe_train.c) and the same merges (bpe_train.c) on real and random
text; LMPIPE_NATIVE=0 selects the pure-Python paths."""

import gzip
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib import native
from lmlib.tokenizer import train_bpe
from lmlib.tokenizer.bpe_training import NATIVE_CORE, count_words, learn_merges
from lmlib.tokenizer.pretokenize import count_file_pretokens, count_pretokens
from tests.conftest import shared_path
from tests.tokenizer.reference_bpe import reference_train_bpe

EOT = "<|endoftext|>"


@contextmanager
def pure_python():
    """LMPIPE_NATIVE=0 while inside: lmlib.native hands out no core."""
    previous = os.environ.get("LMPIPE_NATIVE")
    os.environ["LMPIPE_NATIVE"] = "0"
    native.load.cache_clear()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["LMPIPE_NATIVE"]
        else:
            os.environ["LMPIPE_NATIVE"] = previous
        native.load.cache_clear()


@pytest.fixture(scope="module", autouse=True)
def compiled_cores():
    if native.load(NATIVE_CORE) is None or native.load("bpe_encode") is None:
        pytest.skip("no C compiler here (or LMPIPE_NATIVE=0): only the pure-Python paths exist")


def both_paths(word_counts: dict[bytes, int], num_merges: int) -> tuple[list, list]:
    in_c = learn_merges(word_counts, num_merges)
    with pure_python():
        in_python = learn_merges(word_counts, num_merges)
    return in_c, in_python


def test_native_off_selects_the_pure_python_loop(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("low lower lowest newer newest " * 20, "utf-8")
    stats_c, stats_python = {}, {}
    in_c = train_bpe(path, 300, [], workers=1, stats=stats_c)
    with pure_python():
        assert native.load(NATIVE_CORE) is None
        in_python = train_bpe(path, 300, [], workers=1, stats=stats_python)
    assert stats_c["count_core"] == stats_c["merge_core"] == "C"
    assert stats_python["count_core"] == stats_python["merge_core"] == "Python"
    assert in_c == in_python


def _enwiki_text() -> str:
    with gzip.open(shared_path("data/text/enwiki-excerpt.jsonl.gz"), "rt", encoding="utf-8") as f:
        return EOT.join(json.loads(line)["text"] for line in f)


REAL_TEXTS = {
    "corpus.en": lambda: shared_path("data/text/corpus.en").read_text("utf-8"),
    "news-lee": lambda: EOT.join(
        shared_path("data/text/news-lee-background.txt").read_text("utf-8").splitlines()),
    "enwiki": _enwiki_text,
}


@pytest.mark.parametrize("name,num_merges", [("corpus.en", 3000), ("news-lee", 4000),
                                             ("enwiki", 6000)])
def test_same_merges_as_pure_python_on_real_text(tmp_path, name, num_merges):
    path = tmp_path / f"{name}.txt"
    path.write_text(REAL_TEXTS[name](), "utf-8")
    counts = count_file_pretokens(path, [EOT], workers=1)
    word_counts = {pretoken.encode("utf-8"): count for pretoken, count in counts.items()}
    in_c, in_python = both_paths(word_counts, num_merges)
    assert len(in_c) == num_merges
    assert in_c == in_python


@pytest.mark.parametrize("name", sorted(REAL_TEXTS))
def test_same_counts_as_the_regex_on_real_text(tmp_path, name):
    path = tmp_path / f"{name}.txt"
    path.write_text(REAL_TEXTS[name](), "utf-8")
    in_c = count_words(path, [EOT], workers=1)
    with pure_python():
        assert count_words(path, [EOT], workers=1) == in_c
    # in two worker processes, over chunks cut at special tokens or safe newlines
    assert count_words(path, [EOT], workers=2, chunk_bytes=len(path.read_bytes()) // 5) == in_c


def test_both_paths_match_the_reference_on_corpus_en_excerpt(tmp_path):
    text = shared_path("data/text/corpus.en").read_text("utf-8")[:40_000]
    path = tmp_path / "corpus.txt"
    path.write_text(text, "utf-8")
    expected = reference_train_bpe(text, 420, [])
    assert train_bpe(path, 420, [], workers=1)[1] == expected
    with pure_python():
        assert train_bpe(path, 420, [], workers=1)[1] == expected


@pytest.mark.parametrize("text", ["", EOT * 3, "a" + EOT + "b"])
def test_text_without_pairs_gives_no_merges(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_text(text, "utf-8")
    vocab, merges = train_bpe(path, 300, [EOT], workers=1)
    assert (len(vocab), merges) == (257, [])
    with pure_python():
        assert train_bpe(path, 300, [EOT], workers=1) == (vocab, merges)


def test_training_stops_when_no_pair_is_left():
    # "aaaa" -> (a, a) -> (aa, aa): two merges, then single tokens only
    in_c, in_python = both_paths({b"aaaa": 3, b"a": 7, b"": 1}, 50)
    assert in_c == in_python == [(b"a", b"a"), (b"aa", b"aa")]


def _counts_both_ways(data: bytes, special_tokens: list[str]) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "text.txt"
        path.write_bytes(data)
        in_c = count_words(path, special_tokens, workers=1)
        with pure_python():
            return in_c, count_words(path, special_tokens, workers=1)


# pieces of every class GPT-2's pattern tells apart, special tokens (whole and broken), and bytes
# that are not UTF-8 (counted as U+FFFD on both paths)
PIECES = st.lists(st.sampled_from([
    b"a", b"Zz", b" ", b"  ", b"\n", b"\t", b"\r\n", b"1", b"'s", b"'", b"!", b"?!", b"<|",
    EOT.encode(), "é".encode(), "日本".encode(), "٣".encode(), "\u00a0".encode(),
    "\u2028".encode(), "\u3000".encode(), b"\xff", b"\xe2\x82", b"\x00",
]), max_size=80).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(data=PIECES)
def test_same_counts_as_the_regex_on_random_pieces(data):
    in_c, in_python = _counts_both_ways(data, [EOT])
    assert in_c == in_python


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_same_counts_as_the_regex_on_random_unicode(text):
    in_c, in_python = _counts_both_ways(text.encode("utf-8"), [])
    assert in_c == in_python


# small alphabets make many equal counts, so the tie rule decides most merges; é and € are
# several UTF-8 bytes, so merges build tokens that are parts of characters
TEXT = st.text(alphabet=st.sampled_from(list("aab  c\n1'sé€x")), max_size=400)


@settings(max_examples=150, deadline=None)
@given(text=TEXT, num_merges=st.integers(0, 80))
def test_same_merges_as_pure_python_and_reference_on_random_text(text, num_merges):
    word_counts = {pretoken.encode("utf-8"): count
                   for pretoken, count in count_pretokens(text, None).items()}
    in_c, in_python = both_paths(word_counts, num_merges)
    assert in_c == in_python == reference_train_bpe(text, 256 + num_merges, [])


WORDS = st.dictionaries(
    st.lists(st.sampled_from([0, 1, 97, 98, 127, 128, 200, 255]), max_size=12).map(bytes),
    st.integers(1, 10**15), max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(word_counts=WORDS, num_merges=st.integers(0, 120))
def test_same_merges_as_pure_python_on_random_words(word_counts, num_merges):
    # bytes above 127 check that the tie rule compares bytes unsigned; counts above 2**32 that
    # they are 64-bit
    in_c, in_python = both_paths(word_counts, num_merges)
    assert in_c == in_python
