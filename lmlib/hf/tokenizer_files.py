"""Byte-level BPE tokenizers in Hugging Face's files, read into and written from our Tokenizer.

Notable:
- read: a `tokenizer.json` whose model is BPE behind either ByteLevel's own (GPT-2) split or a
  `Split` on a regex (isolated) followed by ByteLevel without its regex, the layout of Llama 3
  and Qwen2, whose regex becomes the Tokenizer's pattern; no normalizer or NFC (Qwen2); BPE's
  `ignore_merges` (Llama 3) is kept. GPT-2's `vocab.json` + `merges.txt` (special tokens from
  `tokenizer_config.json`) and our own `Tokenizer.save` directory also load. What would give
  other ids is refused with the reason rather than silently mis-split: other normalizers,
  SentencePiece (Metaspace), a prefix space, other Split behaviours, subword marks, dropout.
  Our `encode` adds no BOS: Llama 3's post-processor does (`add_special_tokens=True`);
- write: a GPT-2 style tokenizer as `vocab.json` + `merges.txt` + `tokenizer_config.json` naming
  `GPT2Tokenizer`, the layout of the `gpt2` repository, which `AutoTokenizer` loads with our ids.
  Those files cannot say another pattern, NFC or ignore_merges: such a tokenizer is written as
  a `tokenizer.json` in the Split + ByteLevel layout, with a config naming
  `PreTrainedTokenizerFast`, which takes that file as it is (transformers 5's `GPT2Tokenizer`
  and `Qwen2Tokenizer` would rebuild their own pre-tokenizer from its vocabulary).
  `Tokenizer.save` writes its own format under the name `tokenizer.json`: keep the two apart.
"""

import json
from pathlib import Path

from lmlib.formats import MERGES_FILE, VOCAB_FILE
from lmlib.tokenizer.gpt2_files import save_vocab_and_merges, string_to_token, token_to_string
from lmlib.tokenizer.pretokenize import GPT2_PATTERN
from lmlib.tokenizer.tokenizer import NORMALIZATIONS, Tokenizer

# HF's fast-tokenizer file; Tokenizer.save writes its own format under the same name
# (lmlib.formats.TOKENIZER_CONFIG_FILE), so load_tokenizer tells the two apart by content
HF_TOKENIZER_FILE = "tokenizer.json"
HF_TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_TOKENS_FILE = "special_tokens_map.json"
_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
# the tokens that end documents, by preference: GPT-2's and Qwen2's, then Llama 3's
_END_OF_TEXT_TOKENS = ("<|endoftext|>", "<|end_of_text|>")
_READ_PRE_TOKENIZERS = ("ByteLevel with its own regex, or a Sequence of Split(Regex, behavior "
                        "Isolated, invert false) and ByteLevel(use_regex false), neither adding "
                        "a prefix space")


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


def _split_pattern(pre_tokenizer: dict | None, path: Path) -> str:
    """The pattern our Tokenizer splits with to cut text as this pre-tokenizer does: ByteLevel's
    own regex is GPT-2's, a Split's regex is taken as it is; ValueError saying why when none
    does."""
    def refuse(reason: str) -> ValueError:
        return ValueError(f"{path}: {reason}, which our Tokenizer does not reproduce; it reads "
                          f"{_READ_PRE_TOKENIZERS}")

    kind = (pre_tokenizer or {}).get("type")
    steps = pre_tokenizer.get("pretokenizers", []) if kind == "Sequence" else [pre_tokenizer]
    if len(steps) == 1 and (steps[0] or {}).get("type") == "ByteLevel":
        if steps[0].get("add_prefix_space"):
            raise refuse("the ByteLevel pre-tokenizer adds a prefix space")
        if not steps[0].get("use_regex", True):
            raise refuse("the ByteLevel pre-tokenizer splits nothing (use_regex false, no Split)")
        return GPT2_PATTERN
    if len(steps) != 2 or steps[0].get("type") != "Split" or steps[1].get("type") != "ByteLevel":
        raise refuse(f"the pre-tokenizer is {json.dumps(pre_tokenizer)[:300]}")
    split, byte_level = steps
    if "Regex" not in (split.get("pattern") or {}):
        raise refuse(f"the Split's pattern is not a Regex ({split.get('pattern')})")
    if split.get("behavior") != "Isolated" or split.get("invert"):
        raise refuse(f"the Split's behavior is {split.get('behavior')}"
                     + (", inverted" if split.get("invert") else ""))
    if byte_level.get("use_regex", True) or byte_level.get("add_prefix_space"):
        raise refuse("the ByteLevel after the Split splits again with its own regex or adds a "
                     "prefix space")
    return split["pattern"]["Regex"]


def _normalization(normalizer: dict | None, path: Path) -> str | None:
    """None or the name of the one normalization (NFC) the normalizer applies."""
    steps = [normalizer] if normalizer else []
    if normalizer and normalizer.get("type") == "Sequence":
        steps = normalizer.get("normalizers", [])
    kinds = [step.get("type") for step in steps]
    if not kinds:
        return None
    if len(kinds) > 1 or kinds[0] not in NORMALIZATIONS:
        raise ValueError(f"{path}: has a {' + '.join(map(str, kinds))} normalizer; our Tokenizer "
                         f"applies {', '.join(NORMALIZATIONS)} or none, so its ids would differ")
    return kinds[0]


def _tokenizer_from_hf_json(data: dict, path: Path) -> Tokenizer:
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: model type {model.get('type')!r} is not BPE; our Tokenizer "
                         "reads byte-level BPE only")
    normalization = _normalization(data.get("normalizer"), path)
    pattern = _split_pattern(data.get("pre_tokenizer"), path)
    marks = {key: model[key] for key in ("continuing_subword_prefix", "end_of_word_suffix")
             if model.get(key)}
    if marks:
        raise ValueError(f"{path}: the BPE model marks subwords ({marks}); byte-level BPE as "
                         "our Tokenizer reads it has no such marks")
    if model.get("dropout"):
        raise ValueError(f"{path}: the BPE model has dropout {model['dropout']}, which makes "
                         "encoding random; set it to null to load the tokenizer")
    vocab = {int(token_id): string_to_token(text) for text, token_id in model["vocab"].items()}
    merges = []
    for merge in model.get("merges", []):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        merges.append((string_to_token(left), string_to_token(right)))
    special = []
    for added in data.get("added_tokens", []):
        vocab[int(added["id"])] = added["content"].encode("utf-8")
        special.append(added["content"])
    return Tokenizer(vocab, merges, special, pattern=pattern, normalization=normalization,
                     ignore_merges=bool(model.get("ignore_merges")))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Our Tokenizer from a Hugging Face model directory (or our own tokenizer directory),
    so text is tokenized for an imported model exactly as its authors did."""
    directory = Path(path)
    json_path = directory / HF_TOKENIZER_FILE
    if json_path.is_file():
        data = json.loads(json_path.read_text("utf-8"))
        if "model" in data:
            return _tokenizer_from_hf_json(data, json_path)
        if data.get("format") == "gpt2-byte-level-bpe":  # written by Tokenizer.save
            return Tokenizer.from_directory(directory)
    if (directory / VOCAB_FILE).is_file() and (directory / MERGES_FILE).is_file():
        return Tokenizer.from_files(directory / VOCAB_FILE, directory / MERGES_FILE,
                                    _special_tokens_from_config(directory))
    raise ValueError(f"{directory} holds no byte-level BPE tokenizer: expected tokenizer.json "
                     "(BPE with a ByteLevel pre-tokenizer) or vocab.json + merges.txt")


def end_of_text_token(tokenizer: Tokenizer) -> str | None:
    """The special token that ends (and, GPT-2 style, begins) documents: <|endoftext|> or
    Llama 3's <|end_of_text|> when present, else the first special token."""
    for token in _END_OF_TEXT_TOKENS:
        if token in tokenizer.special_tokens:
            return token
    return tokenizer.special_tokens[0] if tokenizer.special_tokens else None


def _has_gpt2_layout(tokenizer: Tokenizer) -> bool:
    """Whether GPT-2's vocab.json + merges.txt say everything that decides the tokenizer's ids."""
    return (tokenizer.pattern == GPT2_PATTERN and tokenizer.normalization is None
            and not tokenizer.ignore_merges)


def _hf_tokenizer_json(tokenizer: Tokenizer) -> dict:
    """The tokenizer as Hugging Face's tokenizer.json: BPE behind Split(pattern, isolated) and
    ByteLevel without its regex, an NFC normalizer where it normalizes, as Qwen2 and Llama 3."""
    vocab = {token_to_string(token): token_id for token_id, token in sorted(tokenizer.vocab.items())}
    if len(vocab) != len(tokenizer.vocab):
        raise ValueError("vocabulary holds the same byte string under two ids; cannot save it")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": tokenizer.token_id(token), "content": token, "single_word": False,
             "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for token in tokenizer.special_tokens
        ],
        "normalizer": {"type": tokenizer.normalization} if tokenizer.normalization else None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tokenizer.pattern}, "behavior": "Isolated",
             "invert": False},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": tokenizer.ignore_merges, "vocab": vocab,
            "merges": [f"{token_to_string(left)} {token_to_string(right)}"
                       for left, right in tokenizer.merges],
        },
    }


def save_hf_tokenizer(tokenizer: Tokenizer, directory: str | Path,
                      model_max_length: int | None = None) -> None:
    """Writes the tokenizer files `AutoTokenizer` loads `tokenizer` from into `directory`: the
    GPT-2 repository's for a GPT-2 style tokenizer, else a tokenizer.json (module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gpt2_layout = _has_gpt2_layout(tokenizer)
    if gpt2_layout:
        save_vocab_and_merges(tokenizer.vocab, tokenizer.merges, directory / VOCAB_FILE,
                              directory / MERGES_FILE)
    else:
        (directory / HF_TOKENIZER_FILE).write_text(
            json.dumps(_hf_tokenizer_json(tokenizer), ensure_ascii=False, indent=2) + "\n", "utf-8")
    end = end_of_text_token(tokenizer)
    config = {
        "tokenizer_class": "GPT2Tokenizer" if gpt2_layout else "PreTrainedTokenizerFast",
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

