"""Byte-level BPE tokenizers in Hugging Face's files, read into and written from our Tokenizer.

Notable:
- read: a `tokenizer.json` whose model is BPE behind a ByteLevel pre-tokenizer with the GPT-2
  split pattern, or GPT-2's `vocab.json` + `merges.txt` (special tokens from
  `tokenizer_config.json`); our own `Tokenizer.save` directory also loads. Anything else
  (a normalizer, another split pattern such as Qwen2's or Llama 3's, SentencePiece) would give
  different ids from our GPT-2 pre-tokenizer, so it is refused rather than silently mis-split;
- write: `vocab.json` + `merges.txt` + `tokenizer_config.json` naming `GPT2Tokenizer`, the
  layout of the `gpt2` repository, which `AutoTokenizer` loads with our ids. No `tokenizer.json`
  is written: that name holds our own format in `Tokenizer.save` directories.
"""

import json
from pathlib import Path

from lmlib.formats import MERGES_FILE, VOCAB_FILE
from lmlib.tokenizer.gpt2_files import save_vocab_and_merges, string_to_token
from lmlib.tokenizer.pretokenize import GPT2_PATTERN
from lmlib.tokenizer.tokenizer import Tokenizer

# HF's fast-tokenizer file; Tokenizer.save writes its own format under the same name
# (lmlib.formats.TOKENIZER_CONFIG_FILE), so load_tokenizer tells the two apart by content
HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_TOKENS_FILE = "special_tokens_map.json"
_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json gives it: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _special_tokens_from_config(directory: Path) -> list[str]:
    path = directory / HF_TOKENIZER_CONFIG_FILE
    if not path.is_file():
        return []
    config = json.loads(path.read_text("utf-8"))
    tokens = [_token_text(entry) for _, entry in sorted(
        config.get("added_tokens_decoder", {}).items(), key=lambda item: int(item[0]))]
    tokens += [_token_text(config.get(key)) for key in _SPECIAL_TOKEN_KEYS]
    return [token for token in dict.fromkeys(tokens) if token]


def _is_gpt2_byte_level(pre_tokenizer: dict | None) -> bool:
    """ByteLevel with its built-in (GPT-2) regex, or Split on the GPT-2 pattern + ByteLevel."""
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "ByteLevel":
        return pre_tokenizer.get("use_regex", True) and not pre_tokenizer.get("add_prefix_space")
    if pre_tokenizer.get("type") != "Sequence":
        return False
    steps = pre_tokenizer.get("pretokenizers", [])
    if len(steps) == 1:
        return _is_gpt2_byte_level(steps[0])
    if len(steps) != 2 or steps[0].get("type") != "Split" or steps[1].get("type") != "ByteLevel":
        return False
    return (steps[0].get("pattern", {}).get("Regex") == GPT2_PATTERN
            and steps[0].get("behavior") == "Isolated"
            and not steps[1].get("use_regex", True) and not steps[1].get("add_prefix_space"))


def _tokenizer_from_hf_json(path: Path) -> Tokenizer:
    data = json.loads(path.read_text("utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: model type {model.get('type')!r} is not BPE; our Tokenizer "
                         "reads byte-level BPE only")
    if data.get("normalizer"):
        raise ValueError(f"{path}: has a {data['normalizer'].get('type')} normalizer; our "
                         "Tokenizer applies none, so its ids would differ")
    if not _is_gpt2_byte_level(data.get("pre_tokenizer")):
        raise ValueError(f"{path}: the pre-tokenizer is not byte-level with the GPT-2 split "
                         f"pattern ({json.dumps(data.get('pre_tokenizer'))[:200]}); our "
                         "Tokenizer splits text the GPT-2 way only")
    vocab = {int(token_id): string_to_token(text) for text, token_id in model["vocab"].items()}
    merges = []
    for merge in model.get("merges", []):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        merges.append((string_to_token(left), string_to_token(right)))
    special = []
    for added in data.get("added_tokens", []):
        vocab[int(added["id"])] = added["content"].encode("utf-8")
        special.append(added["content"])
    return Tokenizer(vocab, merges, special)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Our Tokenizer from a Hugging Face model directory (or our own tokenizer directory),
    so text is tokenized for an imported model exactly as its authors did."""
    directory = Path(path)
    json_path = directory / HF_TOKENIZER_FILE
    if json_path.is_file():
        data = json.loads(json_path.read_text("utf-8"))
        if "model" in data:
            return _tokenizer_from_hf_json(json_path)
        if data.get("format") == "gpt2-byte-level-bpe":  # written by Tokenizer.save
            return Tokenizer.from_directory(directory)
    if (directory / VOCAB_FILE).is_file() and (directory / MERGES_FILE).is_file():
        return Tokenizer.from_files(directory / VOCAB_FILE, directory / MERGES_FILE,
                                    _special_tokens_from_config(directory))
    raise ValueError(f"{directory} holds no byte-level BPE tokenizer: expected tokenizer.json "
                     "(BPE with a ByteLevel pre-tokenizer) or vocab.json + merges.txt")


def end_of_text_token(tokenizer: Tokenizer) -> str | None:
    """The special token that ends (and, GPT-2 style, begins) documents: <|endoftext|> when
    present, else the first special token."""
    if "<|endoftext|>" in tokenizer.special_tokens:
        return "<|endoftext|>"
    return tokenizer.special_tokens[0] if tokenizer.special_tokens else None


def save_hf_tokenizer(tokenizer: Tokenizer, directory: str | Path,
                      model_max_length: int | None = None) -> None:
    """Writes the GPT-2 repository's tokenizer files for `tokenizer` into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_vocab_and_merges(tokenizer.vocab, tokenizer.merges, directory / VOCAB_FILE,
                          directory / MERGES_FILE)
    end = end_of_text_token(tokenizer)
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "added_tokens_decoder": {
            str(tokenizer.token_id(token)): {
                "content": token, "special": True, "lstrip": False, "rstrip": False,
                "normalized": False, "single_word": False,
            }
            for token in tokenizer.special_tokens
        },
    }
    if end is not None:
        config.update(bos_token=end, eos_token=end, unk_token=end)
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    (directory / HF_TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", "utf-8")
    special_map = {key: config[key] for key in ("bos_token", "eos_token", "unk_token")
                   if key in config}
    (directory / HF_SPECIAL_TOKENS_FILE).write_text(json.dumps(special_map, indent=2) + "\n",
                                                    "utf-8")

