"""Our Tokenizer and transformers' AutoTokenizer agree on ids through lmlib.hf's files."""

import json

import pytest
import torch

from lmlib.hf import export, load_tokenizer, save_hf_tokenizer
from lmlib.tokenizer import Tokenizer
from lmlib.tokenizer.gpt2_files import token_to_string
from tests.conftest import shared_path

transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello, world! It's a test.",
    "  indented   spaces\tand\ttabs\n\nnew paragraphs  ",
    "Numbers 12345 and 3.14159, émojis 🙂 and 日本語のテキスト.",
    "one document<|endoftext|>the next one<|endoftext|>",
    "they'll've we're I'd",
]


@pytest.fixture(scope="module")
def gpt2_tokenizer() -> Tokenizer:
    vocab = shared_path("data/gpt2/gpt2_vocab.json")
    merges = shared_path("data/gpt2/gpt2_merges.txt")
    return Tokenizer.from_files(vocab, merges, ["<|endoftext|>"])


def test_gpt2_files_give_our_ids_in_auto_tokenizer(tmp_path, gpt2_tokenizer):
    save_hf_tokenizer(gpt2_tokenizer, tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert reference.convert_tokens_to_ids("<|endoftext|>") == 50256
    for text in TEXTS:
        ids = gpt2_tokenizer.encode(text)
        assert reference(text)["input_ids"] == ids, text
        assert reference.decode(ids) == gpt2_tokenizer.decode(ids)


def test_hf_tokenizer_json_loads_as_our_tokenizer(tmp_path, gpt2_tokenizer):
    """transformers' own tokenizer.json (fast tokenizer) read back by load_tokenizer."""
    save_hf_tokenizer(gpt2_tokenizer, tmp_path / "files")
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path / "files")
    reference.save_pretrained(tmp_path / "fast")
    assert "model" in json.loads((tmp_path / "fast" / "tokenizer.json").read_text())
    ours = load_tokenizer(tmp_path / "fast")
    for text in TEXTS:
        assert ours.encode(text) == reference(text)["input_ids"] == gpt2_tokenizer.encode(text)


def test_load_tokenizer_reads_vocab_and_merges_with_special_tokens(tmp_path, gpt2_tokenizer):
    save_hf_tokenizer(gpt2_tokenizer, tmp_path)
    (tmp_path / "tokenizer.json").unlink(missing_ok=True)
    ours = load_tokenizer(tmp_path)
    assert ours.special_tokens == ["<|endoftext|>"]
    assert [ours.encode(text) for text in TEXTS] == [gpt2_tokenizer.encode(t) for t in TEXTS]


def test_load_tokenizer_reads_our_own_tokenizer_directory(tmp_path):
    tokenizer = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).encode("ab<|endoftext|>") == [97, 98, 256]


def _split_then_byte_level(split: dict | None = None, byte_level: dict | None = None) -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{N}"}, "behavior": "Isolated", "invert": False,
         **(split or {})},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False, **(byte_level or {})}]}


@pytest.mark.parametrize("change, message", [
    ({"normalizer": {"type": "NFKC"}}, "NFKC normalizer"),
    ({"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}},
     "NFC \\+ Lowercase normalizer"),
    ({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}},
     "the pre-tokenizer is .*Metaspace"),
    ({"pre_tokenizer": None}, "the pre-tokenizer is null"),
    ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}},
     "adds a prefix space"),
    ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}},
     "splits nothing"),
    ({"pre_tokenizer": _split_then_byte_level(byte_level={"add_prefix_space": True})},
     "adds a prefix space"),
    ({"pre_tokenizer": _split_then_byte_level(byte_level={"use_regex": True})},
     "splits again with its own regex"),
    ({"pre_tokenizer": _split_then_byte_level({"behavior": "Removed"})}, "behavior is Removed"),
    ({"pre_tokenizer": _split_then_byte_level({"invert": True})}, "Isolated, inverted"),
    ({"pre_tokenizer": _split_then_byte_level({"pattern": {"String": " "}})}, "not a Regex"),
    ({"model": {"type": "BPE", "vocab": {}, "merges": [], "continuing_subword_prefix": "##"}},
     "marks subwords"),
    ({"model": {"type": "BPE", "vocab": {}, "merges": [], "dropout": 0.1}}, "dropout"),
    ({"model": {"type": "Unigram", "vocab": []}}, "is not BPE"),
])
def test_load_tokenizer_refuses_what_would_give_other_ids(tmp_path, change, message):
    base = {"model": {"type": "BPE", "vocab": {}, "merges": []}, "added_tokens": [],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}}
    (tmp_path / "tokenizer.json").write_text(json.dumps({**base, **change}))
    with pytest.raises(ValueError, match=message):
        load_tokenizer(tmp_path)


def test_load_tokenizer_takes_a_split_regex_and_nfc(tmp_path):
    vocab = {token_to_string(bytes([byte])): byte for byte in range(256)}
    (tmp_path / "tokenizer.json").write_text(json.dumps({
        "model": {"type": "BPE", "vocab": vocab, "merges": [], "ignore_merges": True},
        "added_tokens": [], "normalizer": {"type": "NFC"},
        "pre_tokenizer": _split_then_byte_level()}))
    ours = load_tokenizer(tmp_path)
    assert (ours.pattern, ours.normalization, ours.ignore_merges) == (r"\p{N}", "NFC", True)


def test_export_writes_a_tokenizer_auto_tokenizer_agrees_with(tmp_path):
    from lmlib.model import ModelConfig, TransformerLM

    vocab = {**{i: bytes([i]) for i in range(256)}, 256: b"ab"}
    tokenizer = Tokenizer(vocab, [(b"a", b"b")], ["<|endoftext|>"])
    model = TransformerLM(ModelConfig(vocab_size=260, context_length=32, d_model=32,
                                      num_layers=1, num_heads=4, attention_backend="torch"))
    export(model, tokenizer, tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert hf_model.config.eos_token_id == 257
    text = "plain abc text<|endoftext|>more"
    ids = tokenizer.encode(text)
    assert 256 in ids and ids[-5] == 257
    assert reference(text)["input_ids"] == ids
    with torch.no_grad():
        torch.testing.assert_close(hf_model(torch.tensor([ids])).logits,
                                   model(torch.tensor([ids])), atol=1e-4, rtol=1e-4)
