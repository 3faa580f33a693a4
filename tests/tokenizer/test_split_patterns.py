"""A Tokenizer's split pattern, normalization and ignore_merges: encode cuts text into the
pre-tokens of the plain regex split, a stream cuts it as the whole text, and the options survive
save and load."""

import json
import unicodedata
from unittest.mock import patch

import pytest
import regex
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lmlib.tokenizer.tokenizer as tokenizer_module
from lmlib.tokenizer import Tokenizer
from lmlib.tokenizer.pretokenize import (
    GPT2_PATTERN,
    LLAMA3_PATTERN,
    QWEN2_PATTERN,
    SPACE_CUT_PATTERNS,
    pretoken_splitter,
)
from tests.conftest import shared_path

EOT = "<|endoftext|>"
OPTIONS = {
    "gpt2": {},
    "llama3": {"pattern": LLAMA3_PATTERN, "ignore_merges": True},
    "qwen2": {"pattern": QWEN2_PATTERN, "normalization": "NFC"},
    # outside SPACE_CUT_PATTERNS and leaving text between its matches: the plain split, and a
    # stream cut only at special tokens
    "gaps": {"pattern": r"\p{L}+|\d", "normalization": "NFC"},
}
# pieces that meet every rule of the patterns and of NFC: contractions, digit runs, whitespace
# runs and line breaks, combining marks in and out of canonical order (U+0898 before U+20EC),
# Hangul jamo that compose across pieces, singletons NFC replaces (Ångström sign, U+037E)
PIECES = ["a", "s", "ll", "'", "'S", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "1",
          "12345", "!", "?!", "e", "\u0301", "\u0323", "\u0898", "\u20ec", "\u1100", "\u1161",
          "\u11a8", "\u212b", "\u037e", "中", "日本", "<|", "endoftext", "|>", EOT]


@pytest.fixture(scope="module")
def gpt2_files():
    return (shared_path("data/gpt2/gpt2_vocab.json"), shared_path("data/gpt2/gpt2_merges.txt"))


@pytest.fixture(scope="module")
def tokenizers(gpt2_files) -> dict[str, Tokenizer]:
    """GPT-2's vocabulary and merges under each set of options."""
    return {name: Tokenizer.from_files(*gpt2_files, [EOT], **options)
            for name, options in OPTIONS.items()}


SPACE_CUT = {"gpt2": GPT2_PATTERN, "llama3": LLAMA3_PATTERN, "qwen2": QWEN2_PATTERN}


def test_every_pattern_the_encoder_cuts_at_spaces_is_checked_here():
    assert set(SPACE_CUT.values()) == SPACE_CUT_PATTERNS
    assert all(name in OPTIONS for name in SPACE_CUT)


def reference_pretokens(text: str, name: str) -> list[str]:
    """The pre-tokens of text, the straightforward way: special tokens found in the raw text,
    the text between them normalized, then split by the pattern."""
    options = OPTIONS[name]
    split = pretoken_splitter(options.get("pattern", GPT2_PATTERN))
    pretokens = []
    for index, piece in enumerate(regex.split(f"({regex.escape(EOT)})", text)):
        if index % 2:  # a special token
            pretokens.append(piece)
            continue
        if options.get("normalization"):
            piece = unicodedata.normalize(options["normalization"], piece)
        pretokens += split(piece)
    return pretokens


def naming_tokenizer(pretokens: list[str], name: str) -> tuple[Tokenizer, list[int]]:
    """A tokenizer whose vocabulary holds each of the pre-tokens as one token, looked up whole
    (ignore_merges), and their ids: its ids show where a text was cut, which the merges of a
    real vocabulary can hide (they often encode "\n\n" + "\n" and "\n" + "\n\n" alike)."""
    vocab = {byte: bytes([byte]) for byte in range(256)}
    for pretoken in dict.fromkeys(pretokens):
        if len(pretoken.encode("utf-8")) > 1 and pretoken != EOT:
            vocab[len(vocab)] = pretoken.encode("utf-8")
    tokenizer = Tokenizer(vocab, [], [EOT], **{**OPTIONS[name], "ignore_merges": True})
    return tokenizer, [tokenizer.token_id(pretoken) for pretoken in pretokens]


def chunked(text: str, cuts: list[int]) -> list[str]:
    chunks, previous = [], 0
    for cut in sorted(min(cut, len(text)) for cut in cuts):
        chunks.append(text[previous:cut])
        previous = cut
    return [*chunks, text[previous:]]


@pytest.mark.parametrize("name", sorted(OPTIONS))
@settings(max_examples=200, deadline=None)
@example(text="a\t b  1 'll\n\n x")
@given(st.one_of(st.text(max_size=200),
                 st.lists(st.sampled_from(PIECES), max_size=40).map("".join)))
def test_encode_cuts_text_into_the_pretokens_of_the_pattern(name, text):
    """The word path (SPACE_CUT_PATTERNS) gives the pre-tokens of the plain regex split."""
    tokenizer, expected = naming_tokenizer(reference_pretokens(text, name), name)
    assert tokenizer.encode(text) == expected


@pytest.mark.parametrize("name", sorted(OPTIONS))
@settings(max_examples=300, deadline=None)
@example(pieces=["e", " ", "x", "\u0898", "\u20ec", "\u1100", "\u1161", "\u11a8"], cuts=[2, 4])
@example(pieces=["a", "\n", "  ", "\n", "  ", "  ", "\n"], cuts=[])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=60),
       cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_encode_iterable_cuts_text_as_encode_does(name, pieces, cuts):
    text = "".join(pieces)
    tokenizer, expected = naming_tokenizer(reference_pretokens(text, name), name)
    # flush the buffer often, so every code path of encode_iterable runs on short text
    with patch.object(tokenizer_module, "_STREAM_BUFFER_CHARS", 8):
        assert list(tokenizer.encode_iterable(chunked(text, cuts))) == expected


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_encode_iterable_cuts_long_texts_without_spaces_as_encode_does(monkeypatch, name):
    """Runs of CJK and decomposed accents with no space to cut at: the stream cuts between
    pre-tokens, under NFC only where the text after the cut is already normalized."""
    monkeypatch.setattr(tokenizer_module, "_STREAM_BUFFER_CHARS", 50)
    text = ("日本語のテキスト。\n" * 20 + "cafe\u0301é\u0323\u0301" * 30 + "\u1100\u1161\u11a8" * 40
            + "1234567890" * 10 + "\u0898\u20ec" * 5 + "\n  \n   " * 5) * 3
    tokenizer, expected = naming_tokenizer(reference_pretokens(text, name), name)
    for size in (1, 7, 64):
        assert list(tokenizer.encode_iterable(chunked(text, list(range(0, len(text), size))))
                    ) == expected


def test_stream_under_a_pattern_with_gaps_cuts_at_special_tokens(tokenizers, monkeypatch):
    monkeypatch.setattr(tokenizer_module, "_STREAM_BUFFER_CHARS", 64)
    tokenizer = tokenizers["gaps"]
    text = f"one document: 12 words{EOT}" * 50
    read = []
    stream = tokenizer.encode_iterable(read.append(character) or character for character in text)
    first = [next(stream) for _ in range(5)]
    assert len(read) < len(text) // 2  # yielded before the text was half read
    assert first + list(stream) == tokenizer.encode(text)


def test_nfc_applies_to_the_text_between_special_tokens(tokenizers):
    qwen2 = tokenizers["qwen2"]
    assert qwen2.encode("cafe\u0301 \u212b") == qwen2.encode("café Å")
    assert qwen2.decode(qwen2.encode("cafe\u0301")) == "café"
    # special tokens are found in the raw text: NFC would make ">" + U+0338 one character
    ids = qwen2.encode(f"x{EOT}\u0338")
    assert ids[1] == qwen2.token_id(EOT) and qwen2.decode(ids[2:]) == "\u0338"
    assert tokenizers["gpt2"].decode(tokenizers["gpt2"].encode("cafe\u0301")) == "cafe\u0301"
    text = "Ångström e\u0301 \u1100\u1161\u11a8 \u037e"
    assert qwen2.decode(qwen2.encode(text)) == unicodedata.normalize("NFC", text)


def test_patterns_split_digits_and_letters_their_own_way(tokenizers):
    def pieces(name, text):
        return [tokenizers[name].decode([token]) for token in tokenizers[name].encode(text)]

    # GPT-2's vocabulary has "123" and "4567" as tokens; Qwen2 splits digits one by one,
    # Llama 3 three at a time
    assert all(len(piece) == 1 for piece in pieces("qwen2", "1234567"))
    assert "".join(pieces("llama3", "1234567")) == "1234567"
    assert max(map(len, pieces("llama3", "1234567"))) <= 3
    assert tokenizers["gaps"].decode(tokenizers["gaps"].encode("ab 12, cd!")) == "ab 12, cd!"


def test_ignore_merges_encodes_a_pretoken_that_is_a_token_as_that_token():
    vocab = {**{byte: bytes([byte]) for byte in range(256)}, 256: b"bc", 257: b"abc"}
    merges = [(b"b", b"c")]  # the merges alone never make "abc"
    assert Tokenizer(vocab, merges).encode("abc") == [ord("a"), 256]
    with_lookup = Tokenizer(vocab, merges, ignore_merges=True)
    assert with_lookup.encode("abc abcd") == [257, ord(" "), ord("a"), 256, ord("d")]


def test_options_survive_save_and_load(tokenizers, tmp_path):
    for name, tokenizer in tokenizers.items():
        tokenizer.save(tmp_path / name)
        loaded = Tokenizer.from_directory(tmp_path / name)
        assert (loaded.pattern, loaded.normalization, loaded.ignore_merges) == (
            tokenizer.pattern, tokenizer.normalization, tokenizer.ignore_merges)
        text = "They'll pay 1234567 for cafe\u0301s\n\n  here"
        assert loaded.encode(text) == tokenizer.encode(text)


def test_directory_written_before_the_options_loads_with_gpt2_splitting(tokenizers, tmp_path):
    tokenizers["gpt2"].save(tmp_path)
    config_path = tmp_path / "tokenizer.json"
    config = json.loads(config_path.read_text("utf-8"))
    for key in ("pretokenize_pattern", "normalization", "ignore_merges"):
        del config[key]
    config_path.write_text(json.dumps(config), "utf-8")
    loaded = Tokenizer.from_directory(tmp_path)
    assert (loaded.pattern, loaded.normalization, loaded.ignore_merges) == (GPT2_PATTERN, None,
                                                                            False)
    assert loaded.encode("Hello 1234567") == tokenizers["gpt2"].encode("Hello 1234567")


def test_bad_normalization_or_pattern_is_reported():
    vocab = {byte: bytes([byte]) for byte in range(256)}
    with pytest.raises(ValueError, match="normalization 'NFKC' is not supported"):
        Tokenizer(vocab, [], normalization="NFKC")
    with pytest.raises(ValueError, match="is not a regular expression"):
        Tokenizer(vocab, [], pattern="(unclosed")
