from collections import Counter

import pytest

from lmlib.tokenizer import train_bpe
from lmlib.tokenizer.bpe_training import balanced_chunk_bytes
from lmlib.tokenizer.pretokenize import chunk_boundaries, count_file_pretokens, count_pretokens
from tests.conftest import shared_path
from tests.tokenizer.reference_bpe import reference_train_bpe

EOT = "<|endoftext|>"


def test_merges_match_reference_on_tinystories():
    path = shared_path("data/text/tinystories_sample.txt")
    vocab, merges = train_bpe(path, 500, [EOT], workers=1)
    assert merges == reference_train_bpe(path.read_text("utf-8"), 500, [EOT])
    assert len(vocab) == 256 + len(merges) + 1


def test_merges_match_reference_on_corpus_en_excerpt(tmp_path):
    text = shared_path("data/text/corpus.en").read_text("utf-8")[:40_000]
    path = tmp_path / "corpus.txt"
    path.write_text(text, "utf-8")
    _, merges = train_bpe(path, 420, [], workers=1)
    assert len(merges) == 164
    assert merges == reference_train_bpe(text, 420, [])


def test_ties_go_to_the_lexicographically_greater_pair(tmp_path):
    # every pair occurs once per word, equally often: the order is decided by the tie rule alone
    path = tmp_path / "ties.txt"
    path.write_text("ab cd ef gh ba dc " * 3 + "zz yy xx é ü", "utf-8")
    _, merges = train_bpe(path, 275, [], workers=1)
    assert merges == reference_train_bpe(path.read_text("utf-8"), 275, [])
    # eleven pairs occur 3 times; the greatest is (b"g", b"h"), ahead of (b"e", b"f") ...
    assert merges[:3] == [(b"g", b"h"), (b"e", b"f"), (b"d", b"c")]


def test_parallel_chunked_training_matches_single_chunk(tmp_path):
    text = shared_path("data/text/news-lee-background.txt").read_text("utf-8")
    path = tmp_path / "news.txt"
    path.write_text(EOT.join(text.splitlines()), "utf-8")
    single = train_bpe(path, 600, [EOT], workers=1, chunk_bytes=1 << 30)
    parallel = train_bpe(path, 600, [EOT], workers=2, chunk_bytes=20_000)
    assert parallel == single


def test_chunks_are_shared_evenly_between_workers():
    # 11 MB on two workers: two chunks of 5.5 MB, not 8 + 3 MB; 30 MB: four chunks, at most 8 MiB
    assert balanced_chunk_bytes(11_000_000, 2, serial_below=1 << 20) == 5_500_000
    assert balanced_chunk_bytes(30_000_000, 2, serial_below=1 << 20) == 7_500_000
    assert balanced_chunk_bytes(30_000_000, 16, serial_below=1 << 20) == 1_875_000
    # a small file is one chunk, counted without starting a pool
    assert balanced_chunk_bytes(11_000_000, 2, serial_below=16 << 20) == 11_000_000


def test_chunk_boundaries_without_special_tokens_keep_pretoken_counts(tmp_path):
    text = shared_path("data/text/corpus.en").read_text("utf-8")
    text += "\n  indented line\n\ttab\n\n\nend  \n"
    path = tmp_path / "plain.txt"
    path.write_text(text * 2, "utf-8")
    boundaries = chunk_boundaries(path, [], chunk_bytes=5_000)
    assert len(boundaries) > 20
    assert count_file_pretokens(path, [], workers=1, chunk_bytes=5_000) == count_pretokens(
        text * 2, None)


def test_special_tokens_are_never_merged_nor_counted(tmp_path):
    path = tmp_path / "special.txt"
    path.write_text(("hello world" + EOT) * 50 + "endoftext|>", "utf-8")
    vocab, merges = train_bpe(path, 320, [EOT], workers=1)
    eot_bytes = EOT.encode()
    assert vocab[len(vocab) - 1] == eot_bytes
    merged = [left + right for left, right in merges]
    assert not any(b"<|" in token or b"d<" in token or b"|h" in token for token in merged)
    # "<|" never appears outside the special token, so it cannot be counted
    assert (b"<", b"|") not in merges
    assert sum(token == eot_bytes for token in vocab.values()) == 1


def test_vocabulary_layout(tmp_path):
    path = shared_path("data/text/tinystories_sample.txt")
    vocab, merges = train_bpe(path, 300, [EOT, "<|pad|>"], workers=1)
    assert sorted(vocab) == list(range(300))
    assert [vocab[i] for i in range(256)] == [bytes([b]) for b in range(256)]
    assert [vocab[i] for i in range(256, 298)] == [a + b for a, b in merges]
    assert (vocab[298], vocab[299]) == (EOT.encode(), b"<|pad|>")


def test_count_pretokens_splits_on_special_tokens():
    counts = count_pretokens("a b" + EOT + " a", None)
    assert counts["|>"] == 1
    from lmlib.tokenizer.pretokenize import special_token_regex

    counts = count_pretokens("a b" + EOT + " a", special_token_regex([EOT]))
    assert counts == Counter({"a": 1, " b": 1, " a": 1})


@pytest.mark.parametrize("vocab_size", [0, 256])
def test_too_small_vocab_is_rejected(tmp_path, vocab_size):
    path = tmp_path / "t.txt"
    path.write_text("abc", "utf-8")
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(path, vocab_size, [EOT])


def test_missing_input_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_bpe(tmp_path / "missing.txt", 300, [])
