"""Qwen2- and Llama 3-style tokenizer.json files, built and trained here with `tokenizers` (no
downloads), give the same ids through lmlib.hf.load_tokenizer, and our export gives them back
to AutoTokenizer."""

import inspect
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.hf import load_tokenizer, save_hf_tokenizer
from lmlib.tokenizer.pretokenize import SPACE_CUT_PATTERNS
from tests.conftest import shared_path

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")
models, pre_tokenizers, Regex = tokenizers.models, tokenizers.pre_tokenizers, tokenizers.Regex

# The split regexes as the published tokenizer.json files spell them: data, copied from
# transformers' convert_slow_tokenizer.TikTokenConverter (Llama 3) and
# models/qwen2/tokenization_qwen2.py (Qwen2); the first test checks the copies
LLAMA3_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
                r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
               r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
SPECIAL_TOKENS = {"qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                  "llama3": ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]}

TEXTS = [
    "Hello, world! It's a test; we'll see what they've done, and I'd say you're right.",
    "CAN'T WON'T She'S they'll've",
    "numbers 1234567890 3.14159 1,000,000 ٣٤٥ ½ and a1b2c3 x12345y",
    # NFC composes (e + U+0301, A + ring, the Ångström sign), reorders marks (U+0323 < U+0307)
    "café cafe\u0301 Ångström A\u030a \u212b s\u0307\u0323 s\u0323\u0307 \u037e",
    "\u1100\u1161\u11a8 한국어 \u0b47\u0b3e",  # Hangul jamo and an Oriya vowel NFC composes
    "Whitespace   runs\t\t tabs\n\n\n newlines \r\n windows  \n  \u00a0nbsp\u3000ideographic  ",
    "code:\n    def f(x):\n        return x ** 2  # comment\n\n\n",
    "日本語のテキスト。中文，標點！",
    "Emoji: 😀🙈🏳️‍🌈 and flags 🇫🇷",
    "one<|endoftext|>two<|im_start|>three<|eot_id|>four<|begin_of_text|>",
    "",
    " ",
    "\n",
]


def hf_tokenizer(name: str, training_text: str):
    """A small byte-level BPE in the published layout: Split(regex, isolated) + ByteLevel,
    NFC for Qwen2; ignore_merges and a BOS-adding post-processor for Llama 3."""
    reference = tokenizers.Tokenizer(models.BPE(ignore_merges=name == "llama3"))
    if name == "qwen2":
        reference.normalizer = tokenizers.normalizers.NFC()
    split = LLAMA3_SPLIT if name == "llama3" else QWEN2_SPLIT
    reference.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    reference.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=700, special_tokens=SPECIAL_TOKENS[name],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    reference.train_from_iterator([training_text, *TEXTS], trainer)
    if name == "llama3":
        bos = "<|begin_of_text|>"
        reference.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, reference.token_to_id(bos))])
    return reference


@pytest.fixture(scope="module", params=["qwen2", "llama3"])
def published(request, tmp_path_factory):
    """(name, the `tokenizers` reference, the directory holding its tokenizer.json)."""
    training_text = shared_path("data/text/tinystories_sample.txt").read_text("utf-8")
    reference = hf_tokenizer(request.param, training_text)
    directory = tmp_path_factory.mktemp(request.param)
    reference.save(str(directory / "tokenizer.json"))
    return request.param, reference, directory


def reference_ids(reference, text: str) -> list[int]:
    return reference.encode(text, add_special_tokens=False).ids


def test_the_split_regexes_here_are_transformers_own():
    try:
        from transformers.convert_slow_tokenizer import TikTokenConverter
        from transformers.models.qwen2 import tokenization_qwen2
        llama3 = inspect.signature(TikTokenConverter).parameters["pattern"].default
        qwen2 = tokenization_qwen2.PRETOKENIZE_REGEX
    except (ImportError, AttributeError, KeyError):
        pytest.skip("this transformers version keeps the regexes elsewhere")
    assert (llama3, qwen2) == (LLAMA3_SPLIT, QWEN2_SPLIT)
    assert {LLAMA3_SPLIT, QWEN2_SPLIT} <= SPACE_CUT_PATTERNS  # real files take the fast paths


def test_loaded_tokenizer_keeps_the_split_normalizer_and_ignore_merges(published):
    name, _, directory = published
    ours = load_tokenizer(directory)
    assert ours.pattern == (LLAMA3_SPLIT if name == "llama3" else QWEN2_SPLIT)
    assert ours.normalization == (None if name == "llama3" else "NFC")
    assert ours.ignore_merges == (name == "llama3")
    assert ours.special_tokens == SPECIAL_TOKENS[name]


@pytest.mark.parametrize("text", TEXTS)
def test_ids_are_those_of_tokenizers(published, text):
    name, reference, directory = published
    ours = load_tokenizer(directory)
    ids = ours.encode(text)
    assert ids == reference_ids(reference, text)
    expected = unicodedata.normalize("NFC", text) if name == "qwen2" else text
    assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=False) == expected
    if name == "llama3":  # its post-processor adds the BOS; our encode never does
        assert reference.encode(text).ids == [ours.token_id("<|begin_of_text|>"), *ids]


# characters assigned by Unicode 3.2: Python's and the Rust crate's Unicode tables differ on
# some newer ones (Python 3.11's NFC, Unicode 14, puts U+0898 after U+20EC; tokenizers' does not)
OLD_CHARACTERS = st.characters(blacklist_categories=("Cs",)).filter(
    lambda character: unicodedata.ucd_3_2_0.category(character) != "Cn")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(OLD_CHARACTERS, max_size=80),
                 st.lists(st.sampled_from(TEXTS + ["'s", "\u0301", "\u0323", "  ", "\n", "7"]),
                          max_size=12).map("".join)))
def test_ids_are_those_of_tokenizers_on_arbitrary_text(published, text):
    _, reference, directory = published
    assert load_tokenizer(directory).encode(text) == reference_ids(reference, text)


def test_stream_gives_the_ids_of_tokenizers(published):
    _, reference, directory = published
    text = "".join(TEXTS) + shared_path("data/text/tinystories_sample.txt").read_text("utf-8")
    lines = text.splitlines(keepends=True)
    assert list(load_tokenizer(directory).encode_iterable(lines)) == reference_ids(reference, text)


def test_export_round_trips_through_auto_tokenizer(published, tmp_path):
    name, reference, directory = published
    ours = load_tokenizer(directory)
    save_hf_tokenizer(ours, tmp_path)
    written = json.loads((tmp_path / "tokenizer.json").read_text("utf-8"))
    assert written["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == ours.pattern
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert (again.pattern, again.normalization, again.ignore_merges) == (
        ours.pattern, ours.normalization, ours.ignore_merges)
    for text in TEXTS:
        ids = ours.encode(text)
        assert auto(text)["input_ids"] == ids == reference_ids(reference, text), text
        assert again.encode(text) == ids
        assert auto.decode(ids) == ours.decode(ids)


def test_ignore_merges_gives_the_ids_of_tokenizers(tmp_path):
    """A vocabulary whose token "abc" the merges never make: Llama 3's files encode a
    pre-token that is a token as that token."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {character: index for index, character in enumerate(sorted(alphabet))}
    vocab |= {"bc": len(vocab), "abc": len(vocab) + 1}
    for ignore_merges in (False, True):
        reference = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[("b", "c")],
                                                    ignore_merges=ignore_merges))
        reference.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        reference.save(str(tmp_path / "tokenizer.json"))
        ids = load_tokenizer(tmp_path).encode("abc abcd abc")
        assert ids == reference_ids(reference, "abc abcd abc")
        assert (vocab["abc"] in ids) == ignore_merges
