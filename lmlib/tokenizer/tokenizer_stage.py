"""The `bpe_tokenizer` stage: train on the training text, save, and measure on validation text.

Writes vocab.json and merges.txt (GPT-2 formats) and tokenizer.json (special tokens) into the
output directory, and returns what a person wants to see (a TokenizerResult): training time, bytes per token on
validation text, the longest tokens, a sample encoding.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from lmlib.formats import MERGES_FILE, TOKENIZER_CONFIG_FILE, VOCAB_FILE
from lmlib.stage import StageResult, check_positive
from lmlib.tokenizer.bpe_training import train_bpe
from lmlib.tokenizer.corpus import iter_documents
from lmlib.tokenizer.tokenizer import Tokenizer

_SAMPLE_CHARS = 240
_READ_CHARS = 1 << 20


@dataclass
class TokenizerConfig:
    """Byte-level BPE training settings; the defaults suit the demo's corpus of a few MB."""

    vocab_size: int = 2048
    special_tokens: list[str] = field(default_factory=lambda: ["<|endoftext|>"])
    workers: int | None = None  # pre-tokenization processes; None: all cores

    def __post_init__(self) -> None:
        minimum = 256 + len(self.special_tokens)
        if self.vocab_size < minimum:
            raise ValueError(
                f"TokenizerConfig.vocab_size={self.vocab_size} must be at least {minimum} "
                "(256 single bytes plus the special tokens)"
            )
        if any(not isinstance(token, str) or not token for token in self.special_tokens):
            raise ValueError("TokenizerConfig.special_tokens must be non-empty strings")
        check_positive(self, "workers", allow_none=True)


@dataclass
class TokenizerResult(StageResult):
    """The trained tokenizer: its size, training cost, compression on held-out text, the longest
    tokens and a sample encoding (rows of id and token text)."""

    MANIFEST_COUNTS = ("vocab_size", "merges", "bytes_per_token")

    vocab_size: int
    merges: int
    unique_pretokens: int
    training_seconds: float
    pretokenize_seconds: float
    merge_seconds: float
    train_bytes: int
    train_mb_per_second: float
    measured_on: str  # "validation" or "train": the text bytes_per_token was measured on
    bytes_per_token: float
    measured_tokens: int
    measured_bytes: int
    longest_tokens: list[str]
    sample_text: str
    sample_encoding: list[dict]  # rows {id, token}: sample_text token by token
    files: list[str] = field(metadata={"show": False})


def _read_chunks(path: Path):
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        while chunk := handle.read(_READ_CHARS):
            yield chunk


def measure_compression(tokenizer: Tokenizer, text_path: Path) -> dict:
    """Bytes of ordinary text per token over a file, special tokens left out of both counts."""
    special_ids = {tokenizer.token_id(token): len(token.encode("utf-8"))
                   for token in tokenizer.special_tokens}
    tokens = 0
    special_bytes = 0
    specials = 0
    started = time.perf_counter()
    for token_id in tokenizer.encode_iterable(_read_chunks(text_path)):
        length = special_ids.get(token_id)
        if length is None:
            tokens += 1
        else:
            specials += 1
            special_bytes += length
    text_bytes = text_path.stat().st_size - special_bytes
    seconds = time.perf_counter() - started
    return {
        "text_bytes": text_bytes,
        "tokens": tokens,
        "special_tokens_seen": specials,
        "bytes_per_token": text_bytes / tokens if tokens else 0.0,
        "encode_seconds": seconds,
        "encode_mb_per_second": text_path.stat().st_size / 1e6 / seconds if seconds else 0.0,
    }


def round_trip_failures(tokenizer: Tokenizer, text_path: Path, max_documents: int = 200) -> dict:
    """Encode and decode the first documents of a corpus file; list those that do not come back
    identical (an asset check: there must be none)."""
    failures = []
    checked = 0
    for document in islice(iter_documents(Path(text_path)), max_documents):
        checked += 1
        if tokenizer.decode(tokenizer.encode(document)) != document:
            failures.append(document[:80])
    return {"documents_checked": checked, "failures": len(failures), "failed_previews": failures}


def _printable(token: bytes) -> str:
    return token.decode("utf-8", errors="replace")


def train_tokenizer(
    train_text: Path,
    output_dir: Path,
    config: TokenizerConfig,
    validation_text: Path | None = None,
) -> TokenizerResult:
    """Train a BPE tokenizer on train_text, write it to output_dir, and measure it."""
    train_text, output_dir = Path(train_text), Path(output_dir)
    if not train_text.is_file():
        raise FileNotFoundError(f"training text {train_text} does not exist")
    if validation_text is not None and not Path(validation_text).is_file():
        raise FileNotFoundError(f"validation text {validation_text} does not exist")
    output_dir.mkdir(parents=True, exist_ok=True)

    training_stats: dict = {}
    started = time.perf_counter()
    vocab, merges = train_bpe(train_text, config.vocab_size, config.special_tokens,
                              workers=config.workers or os.cpu_count(), stats=training_stats)
    training_seconds = time.perf_counter() - started
    tokenizer = Tokenizer(vocab, merges, config.special_tokens)
    tokenizer.save(output_dir)

    measured_on = Path(validation_text) if validation_text is not None else train_text
    compression = measure_compression(tokenizer, measured_on)
    with measured_on.open("r", encoding="utf-8", errors="replace") as handle:
        sample = handle.read(_SAMPLE_CHARS)
    sample_ids = tokenizer.encode(sample)
    special = {token.encode("utf-8") for token in config.special_tokens}
    longest = sorted((token for token in vocab.values() if token not in special),
                     key=lambda token: (-len(token), token))[:10]
    return TokenizerResult(
        vocab_size=tokenizer.vocab_size,
        merges=training_stats["merges"],
        unique_pretokens=training_stats["unique_pretokens"],
        training_seconds=training_seconds,
        pretokenize_seconds=training_stats["pretokenize_seconds"],
        merge_seconds=training_stats["merge_seconds"],
        train_bytes=train_text.stat().st_size,
        train_mb_per_second=train_text.stat().st_size / 1e6 / training_seconds,
        measured_on="validation" if validation_text is not None else "train",
        bytes_per_token=compression["bytes_per_token"],
        measured_tokens=compression["tokens"],
        measured_bytes=compression["text_bytes"],
        longest_tokens=[_printable(token) for token in longest],
        sample_text=sample,
        sample_encoding=[{"id": token_id, "token": _printable(vocab[token_id])}
                         for token_id in sample_ids],
        files=[VOCAB_FILE, MERGES_FILE, TOKENIZER_CONFIG_FILE],
    )
