"""The C encoding core (lmlib/native/bpe_encode.c) against the pure-Python path and tiktoken."""

import gzip
import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
import regex
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lmlib.native as native
from lmlib.parallel import ordered_map
from lmlib.tokenizer import Tokenizer, train_bpe
from lmlib.tokenizer.pretokenize import (
    GPT2_PATTERN,
    LLAMA3_PATTERN,
    NATIVE_PATTERNS,
    QWEN2_PATTERN,
    native_pretoken_ends,
)
from tests.conftest import shared_path

EOT = "<|endoftext|>"

needs_core = pytest.mark.skipif(native.compiler() is None or not native.enabled(),
                                reason="no C compiler, or LMPIPE_NATIVE=0: no C core to compare")

# pieces that stress the pattern's edges: odd whitespace, digits of every kind, combining marks,
# emoji sequences, contractions with straight and curly quotes, CJK, punctuation runs
PIECES = [
    " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680",
    "\u2003", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\ufeff",
    "a", "Z", "word", " the", "é", "e\u0301", "\u0301", "\u0308\u0308", "ñ", "ß", "ſ", "K",
    "0", "42", "3.14", "٣٤", "１２", "²", "½", "Ⅻ", "𝟘",
    "'", "'s", "'S", "'ſ", "'t", "'re", "'rE", "'ve", "'m", "'ll", "'LL", "'d", "''s", "’s", "‘",
    "\"", "\r", "\r\n\r\n", " \n ", "?\n", "1234567",
    "😀", "🏳️‍🌈", "👩‍👩‍👧", "🇫🇷", "\ufe0f", "\u200d",
    "中", "文字", "한국", "ー", "!", "?!", "...", "--", "#", "@@", "<|", "|>", "\\", "\x00",
]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=40).map(
    "".join)
# tiktoken's Unicode tables are older than the regex module's: code points unassigned in Python's
# (Unicode 14) are letters for the regex module, and so for us, but not for tiktoken
assigned_texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(
    st.characters(exclude_categories=("Cs", "Cn")), max_size=6)), max_size=40).map("".join)


def _build(factory, use_core: bool):
    """A tokenizer from factory on the C core or, with LMPIPE_NATIVE=0 when it is first used,
    on the pure-Python path."""
    with pytest.MonkeyPatch.context() as patch:
        if not use_core:
            patch.setenv("LMPIPE_NATIVE", "0")
        tokenizer = factory()
        assert tokenizer.uses_native_core is use_core
    return tokenizer


def _gpt2(**options):
    return Tokenizer.from_files(shared_path("data/gpt2/gpt2_vocab.json"),
                                shared_path("data/gpt2/gpt2_merges.txt"), [EOT], **options)


@pytest.fixture(scope="module")
def module_patch():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def gpt2_pair():
    """(C core, pure Python) tokenizers of the GPT-2 files."""
    return _build(_gpt2, True), _build(_gpt2, False)


@pytest.fixture(scope="module")
def tiktoken_gpt2(module_patch):
    tiktoken = pytest.importorskip("tiktoken")
    module_patch.setenv("TIKTOKEN_CACHE_DIR", str(shared_path("data/tiktoken-cache").resolve()))
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def gpt2_option_pairs():
    """(C core, pure Python) tokenizers of the GPT-2 files with each option the core covers:
    ignore_merges, NFC, Llama 3's and Qwen2's patterns."""
    options = [{"ignore_merges": True}, {"normalization": "NFC"},
               {"pattern": LLAMA3_PATTERN, "ignore_merges": True},
               {"pattern": QWEN2_PATTERN, "normalization": "NFC"}]
    return [tuple(_build(partial(_gpt2, **option), use_core)
                  for use_core in (True, False))
            for option in options]


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """A vocabulary and merges trained here: merges unlike GPT-2's."""
    path = tmp_path_factory.mktemp("small") / "train.txt"
    path.write_text(shared_path("data/text/corpus.en").read_text("utf-8") + "'s 1234 ’s", "utf-8")
    return train_bpe(path, 600, [EOT], workers=1)


@pytest.fixture(scope="module")
def small_pair(small_files):
    """(C core, pure Python) tokenizers of small_files."""
    return tuple(_build(lambda: Tokenizer(*small_files, [EOT]), use_core)
                 for use_core in (True, False))


def _real_texts() -> list[str]:
    with gzip.open(shared_path("data/text/enwiki-excerpt.jsonl.gz"), "rt") as handle:
        articles = [json.loads(line)["text"] for line in handle]
    return [EOT.join(articles[:150]), "\n\n".join(articles[150:300]),
            shared_path("data/text/news-lee-background.txt").read_text("utf-8"),
            shared_path("data/text/tinystories_sample.txt").read_text("utf-8"),
            shared_path("data/text/corpus.en").read_text("utf-8")]


@needs_core
def test_core_and_pure_path_give_tiktoken_ids_on_real_text(gpt2_pair, tiktoken_gpt2):
    core, pure = gpt2_pair
    for text in _real_texts():
        expected = tiktoken_gpt2.encode(text, allowed_special={EOT})
        assert core.encode(text) == expected
        assert pure.encode(text) == expected


@needs_core
@settings(max_examples=400, deadline=None)
@example("  'sx \u3000\u3000a\n\n\nb  ")
@example("'''ll''ve 're' 'd\t'm")
@example("a" * 2000 + " " * 1500 + "7" * 1200 + "!" * 900)  # longer than the C cache key
@given(assigned_texts)
def test_core_matches_pure_path_and_tiktoken_on_random_text(gpt2_pair, tiktoken_gpt2, text):
    core, pure = gpt2_pair
    expected = tiktoken_gpt2.encode(text, allowed_special={EOT})
    assert core.encode(text) == expected
    assert pure.encode(text) == expected


@needs_core
@settings(max_examples=400, deadline=None)
@example("\u209f's \U00032522'll")  # letters for the regex module, unassigned for tiktoken
@given(texts)
def test_core_matches_pure_path_on_any_code_point(gpt2_pair, text):
    core, pure = gpt2_pair
    assert core.encode(text) == pure.encode(text)


# letter runs longer than LONG_PRETOKEN (128 bytes): one pre-token merged through the C heap
long_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéöß中文字日本語한국", min_size=40,
                     max_size=400).filter(lambda word: len(word.encode()) > 128)


@needs_core
@settings(max_examples=60, deadline=None)
@example("中文字" * 200)
@example("a" * 129)
@given(long_words)
def test_core_merges_long_pretokens_as_the_pure_path_does(gpt2_pair, tiktoken_gpt2, small_pair,
                                                          word):
    core, pure = gpt2_pair
    assert core.encode(word) == pure.encode(word) == tiktoken_gpt2.encode(word)
    core, pure = small_pair
    assert core.encode(word) == pure.encode(word)


@needs_core
@pytest.mark.parametrize("text", ["ab" * 10, "ab" * 100, "aba" * 60 + "b", "b" + "ab" * 70])
def test_core_keeps_rounds_when_a_merge_makes_a_lower_ranked_pair(text):
    # rank 0 merges ("ab", "a"), which only rank 1 can make: a round of rank 1 merges every
    # "a" "b" before rank 0 may apply
    vocab = {**{byte: bytes([byte]) for byte in range(256)}, 256: b"ab", 257: b"aba"}
    merges = [(b"ab", b"a"), (b"a", b"b")]
    core, pure = (_build(lambda: Tokenizer(vocab, merges), use_core)
                  for use_core in (True, False))
    assert core.encode(text) == pure.encode(text)


@needs_core
@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(texts, st.just(EOT)), max_size=5).map("".join))
def test_core_matches_pure_path_with_other_merges(small_pair, text):
    core, pure = small_pair
    ids = core.encode(text)
    assert ids == pure.encode(text)
    assert core.decode(ids) == text


@needs_core
@settings(max_examples=150, deadline=None)
@given(texts)
def test_core_keeps_ignore_merges_nfc_and_the_other_patterns(gpt2_option_pairs, text):
    for core, pure in gpt2_option_pairs:
        assert core.encode(text) == pure.encode(text)


@needs_core
def test_ignore_merges_takes_whole_tokens_in_the_core(small_files):
    vocab, merges = small_files
    vocab = {**vocab, len(vocab): b"zzqq", len(vocab) + 1: " ünï".encode()}  # no merge makes these
    core, pure = (_build(lambda: Tokenizer(vocab, merges, ignore_merges=True), use_core)
                  for use_core in (True, False))
    text = "zzqq ünï zzqqx ünïc"
    ids = core.encode(text)
    assert ids[:2] == [len(vocab) - 2, len(vocab) - 1] and len(ids) > 4
    assert ids == pure.encode(text)


@needs_core
@pytest.mark.parametrize("pattern", [GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN],
                         ids=["gpt2", "llama3", "qwen2"])
@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_core_pretokenizer_cuts_where_the_regex_does(pattern, text):
    data = text.encode("utf-8")
    ends = native_pretoken_ends(data, pattern)
    pieces = [data[start:end].decode("utf-8") for start, end in zip([0, *ends], ends)]
    assert pieces == regex.findall(pattern, text)


@needs_core
@settings(max_examples=100, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_core_encode_iterable_matches_encode(gpt2_pair, text, cuts):
    import lmlib.tokenizer.tokenizer as module

    core, _ = gpt2_pair
    bounds = [0, *sorted(min(cut, len(text)) for cut in cuts), len(text)]
    chunks = [text[start:end] for start, end in zip(bounds, bounds[1:])]
    original = module._STREAM_BUFFER_CHARS
    module._STREAM_BUFFER_CHARS = 8  # flush often so every cut of the stream runs
    try:
        assert list(core.encode_iterable(chunks)) == core.encode(text)
    finally:
        module._STREAM_BUFFER_CHARS = original


@needs_core
def test_lone_surrogates_fail_alike_on_both_paths(gpt2_pair):
    for tokenizer in gpt2_pair:
        with pytest.raises(UnicodeEncodeError):
            tokenizer.encode("a\ud800b")


def test_only_the_patterns_the_core_knows_take_it():
    other = r"\S+|\s+"
    assert other not in NATIVE_PATTERNS
    tokenizer = _gpt2(pattern=other)
    assert not tokenizer.uses_native_core
    assert tokenizer.encode("it's  fine") == [270, 338, 220, 220, 38125]


def test_lmpipe_native_0_or_a_missing_core_gives_the_pure_path(monkeypatch):
    text = "It's 2024: naïve tests\u3000pass  \n"
    monkeypatch.setenv("LMPIPE_NATIVE", "0")
    disabled = _gpt2()
    assert not disabled.uses_native_core
    monkeypatch.delenv("LMPIPE_NATIVE")
    monkeypatch.setattr(native, "load", lambda name: None)  # as where no compiler is installed
    missing = _gpt2()
    assert not missing.uses_native_core
    assert disabled.encode(text) == missing.encode(text) == [
        1026, 338, 48609, 25, 41492, 5254, 5099, 222, 6603, 220, 220, 198]


@needs_core
def test_core_is_not_pickled_and_is_rebuilt_in_pool_workers(small_pair):
    core, pure = small_pair
    cold_size = len(pickle.dumps(pure))
    pure.encode(_real_texts()[2])  # fills the pure path's caches: they are not pickled either
    assert len(pickle.dumps(pure)) == cold_size
    copy = pickle.loads(pickle.dumps(core))  # a ctypes handle would not pickle
    assert copy.uses_native_core and copy.encode("it's") == pure.encode("it's")
    documents = _real_texts()[2:]
    results = list(ordered_map(_encode_with, [(core, text) for text in documents], workers=2))
    assert [ids for ids, _ in results] == [pure.encode(text) for text in documents]
    assert all(used for _, used in results)


def _encode_with(task: tuple[Tokenizer, str]) -> tuple[list[int], bool]:
    tokenizer, text = task
    return tokenizer.encode(text), tokenizer.uses_native_core


@needs_core
def test_threads_sharing_one_core_get_their_own_ids(gpt2_pair):
    core, pure = gpt2_pair
    pieces = [text[start:start + 20_000] for text in _real_texts()
              for start in range(0, 100_000, 20_000)]
    with ThreadPoolExecutor(4) as threads:
        assert list(threads.map(core.encode, pieces)) == [pure.encode(text) for text in pieces]
