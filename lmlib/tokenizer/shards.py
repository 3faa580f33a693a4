"""The `token_shards` stage: encode the corpus into flat binary shards for training.

Format "lmpipe-token-shards/1" (read with numpy alone):
- `<split>_<NNNNN>.bin`: raw little-endian uint16 token ids (uint32 when the vocabulary has more
  than 65,536 ids), `<|endoftext|>` after every document; `np.memmap(path, dtype="<u2")`.
- `<split>_<NNNNN>.offsets.npy`: int64 start offset of each document within that shard.
- `index.json`: {"format", "dtype", "vocab_size", "eot_token_id", "splits": {split: {"tokens",
  "documents", "shards": [{"file", "tokens", "documents"}]}}}.
A document never straddles two shards; a shard is closed before the document that would take it
past `max_tokens_per_shard` (a single longer document gets a shard of its own).

Encoding runs on lmlib.parallel's process map over batches of documents of both splits (one
pool, the tokenizer loaded once per worker); batches come back in input order, so the output is
byte-identical whatever the number of workers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmlib.formats import (
    TOKEN_SHARDS_FORMAT,
    TOKEN_SHARDS_INDEX_FILE,
    TRAIN_TEXT_FILE,
    VALIDATION_TEXT_FILE,
)
from lmlib.parallel import ordered_map
from lmlib.stage import StageResult, check_positive
from lmlib.tokenizer.corpus import DOCUMENT_SEPARATOR, iter_documents
from lmlib.tokenizer.tokenizer import Tokenizer

SPLIT_FILES = {"train": TRAIN_TEXT_FILE, "val": VALIDATION_TEXT_FILE}


@dataclass
class ShardConfig:
    """Shard size and parallelism of the encoding."""

    max_tokens_per_shard: int = 100_000_000
    workers: int | None = None  # encoding processes; None: all cores
    batch_chars: int = 1 << 20  # text per task sent to a worker

    def __post_init__(self) -> None:
        check_positive(self, "max_tokens_per_shard", "batch_chars")
        check_positive(self, "workers", allow_none=True)


@dataclass
class ShardsResult(StageResult):
    """Tokens, documents and shards per split, compression and encoding speed."""

    MANIFEST_COUNTS = ("tokens", "documents")

    dtype: str
    vocab_size: int
    tokens: int
    documents: int
    text_bytes: int
    bytes_per_token: float  # end-of-text tokens left out: they stand for no text
    train_tokens: int
    train_documents: int
    train_shards: int
    val_tokens: int
    val_documents: int
    val_shards: int
    seconds: float
    tokens_per_second: float
    workers: int


_worker_tokenizer: Tokenizer | None = None
_worker_eot: int = -1


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer, _worker_eot
    _worker_tokenizer = Tokenizer.from_directory(tokenizer_dir)
    _worker_eot = _worker_tokenizer.token_id(DOCUMENT_SEPARATOR)


def _encode_batch(task: tuple[str, list[str]]) -> tuple[str, np.ndarray, np.ndarray, int]:
    """(split, token ids with eot after each document, tokens per document, text bytes)."""
    split, documents = task
    ids: list[int] = []
    lengths = np.empty(len(documents), dtype=np.int64)
    text_bytes = 0
    for index, document in enumerate(documents):
        before = len(ids)
        ids += _worker_tokenizer.encode(document)
        ids.append(_worker_eot)
        lengths[index] = len(ids) - before
        text_bytes += len(document.encode("utf-8"))
    return split, np.asarray(ids, dtype=np.int64), lengths, text_bytes


def _batches(corpus_dir: Path, batch_chars: int) -> Iterator[tuple[str, list[str]]]:
    """(split, documents) batches of about batch_chars, every train batch before any val one."""
    for split, file_name in SPLIT_FILES.items():
        batch, size = [], 0
        for document in iter_documents(corpus_dir / file_name):
            batch.append(document)
            size += len(document)
            if size >= batch_chars:
                yield split, batch
                batch, size = [], 0
        if batch:
            yield split, batch


class _ShardWriter:
    """Appends documents to `<split>_<NNNNN>.bin`, rolling over at the token limit."""

    def __init__(self, output_dir: Path, split: str, dtype: np.dtype, max_tokens: int):
        self.output_dir, self.split, self.dtype, self.max_tokens = output_dir, split, dtype, max_tokens
        self.shards: list[dict] = []
        self._handle = None
        self._offsets: list[int] = []
        self._tokens = 0

    def _close(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        name = self.shards[-1]["file"]
        offsets_path = self.output_dir / name.replace(".bin", ".offsets.npy")
        np.save(offsets_path, np.asarray(self._offsets, dtype=np.int64))
        self.shards[-1].update(tokens=self._tokens, documents=len(self._offsets))
        self._handle = None

    def add_batch(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        ids = ids.astype(self.dtype.newbyteorder("<"), copy=False)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        position = 0  # first document of the batch not yet written
        while position < len(lengths):
            if self._handle is None:
                self._open()
            room = self.max_tokens - self._tokens
            # the documents from `position` on that fit in the room left
            end = int(np.searchsorted(starts, starts[position] + room, side="right")) - 1
            if end <= position:
                if self._tokens:
                    self._open()
                    continue
                end = position + 1  # longer than a whole shard: it gets one of its own
            self._offsets += (self._tokens + starts[position:end] - starts[position]).tolist()
            self._handle.write(ids[starts[position]:starts[end]].tobytes())
            self._tokens += int(starts[end] - starts[position])
            position = end

    def _open(self) -> None:
        self._close()
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self.shards.append({"file": name, "tokens": 0, "documents": 0})
        self._handle = (self.output_dir / name).open("wb")
        self._offsets, self._tokens = [], 0

    def finish(self) -> list[dict]:
        self._close()
        return self.shards


@dataclass(frozen=True)
class ShardPosition:
    """Where a token of a split lies: its shard, the document (its ordinal in the split, as in
    the corpus) and the token's offset within that document."""

    split: str
    position: int
    shard: str
    document: int
    token_in_document: int


def document_at(shards_dir: Path, split: str, position: int) -> ShardPosition:
    """The document holding token `position` (from 0) of `split`, counted across its shards in
    order: the position a training loader reads."""
    index = json.loads((Path(shards_dir) / TOKEN_SHARDS_INDEX_FILE).read_text("utf-8"))
    if split not in index["splits"]:
        raise KeyError(f"no split {split!r} in {shards_dir} (splits: {', '.join(index['splits'])})")
    tokens = index["splits"][split]["tokens"]
    if not 0 <= position < tokens:
        raise IndexError(f"token {position} is outside the {tokens} tokens of the {split} split")
    documents_before, in_shard = 0, position
    for shard in index["splits"][split]["shards"]:
        if in_shard < shard["tokens"]:
            offsets = np.load(Path(shards_dir) / shard["file"].replace(".bin", ".offsets.npy"))
            within = int(np.searchsorted(offsets, in_shard, side="right")) - 1
            return ShardPosition(split, position, shard["file"], documents_before + within,
                                 in_shard - int(offsets[within]))
        in_shard -= shard["tokens"]
        documents_before += shard["documents"]
    raise AssertionError("index.json token counts disagree with its shards")


def write_token_shards(
    corpus_dir: Path, tokenizer_dir: Path, output_dir: Path, config: ShardConfig
) -> ShardsResult:
    """Encode corpus_dir/train.txt and val.txt into token shards in output_dir."""
    corpus_dir, tokenizer_dir, output_dir = Path(corpus_dir), Path(tokenizer_dir), Path(output_dir)
    for file_name in SPLIT_FILES.values():
        if not (corpus_dir / file_name).is_file():
            raise FileNotFoundError(
                f"{corpus_dir / file_name} not found: expected the pretraining corpus "
                "(train.txt and val.txt written by lmlib.tokenizer.build_pretraining_corpus)"
            )
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    try:
        eot_token_id = tokenizer.token_id(DOCUMENT_SEPARATOR)
    except KeyError:
        raise ValueError(
            f"tokenizer in {tokenizer_dir} has no {DOCUMENT_SEPARATOR} token; train it with "
            f"special_tokens=[{DOCUMENT_SEPARATOR!r}]"
        ) from None
    vocab_size = tokenizer.vocab_size
    dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
    output_dir.mkdir(parents=True, exist_ok=True)
    workers = config.workers or os.cpu_count() or 1

    started = time.perf_counter()
    writers = {split: _ShardWriter(output_dir, split, dtype, config.max_tokens_per_shard)
               for split in SPLIT_FILES}
    totals = {split: {"tokens": 0, "documents": 0, "text_bytes": 0} for split in SPLIT_FILES}
    encoded = ordered_map(_encode_batch, _batches(corpus_dir, config.batch_chars), workers,
                          initializer=_init_worker, initargs=(str(tokenizer_dir),))
    for split, ids, lengths, batch_bytes in encoded:
        writers[split].add_batch(ids, lengths)
        totals[split]["tokens"] += len(ids)
        totals[split]["documents"] += len(lengths)
        totals[split]["text_bytes"] += batch_bytes
    splits = {split: {"tokens": totals[split]["tokens"], "documents": totals[split]["documents"],
                      "shards": writers[split].finish()} for split in SPLIT_FILES}
    seconds = time.perf_counter() - started
    index = {"format": TOKEN_SHARDS_FORMAT, "dtype": dtype.name, "vocab_size": vocab_size,
             "eot_token_id": eot_token_id, "splits": splits}
    (output_dir / TOKEN_SHARDS_INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", "utf-8")
    tokens = sum(split["tokens"] for split in totals.values())
    documents = sum(split["documents"] for split in totals.values())
    text_bytes = sum(split["text_bytes"] for split in totals.values())
    return ShardsResult(
        dtype=dtype.name,
        vocab_size=vocab_size,
        tokens=tokens,
        documents=documents,
        text_bytes=text_bytes,
        bytes_per_token=text_bytes / max(tokens - documents, 1),
        train_tokens=splits["train"]["tokens"],
        train_documents=splits["train"]["documents"],
        train_shards=len(splits["train"]["shards"]),
        val_tokens=splits["val"]["tokens"],
        val_documents=splits["val"]["documents"],
        val_shards=len(splits["val"]["shards"]),
        seconds=seconds,
        tokens_per_second=tokens / seconds if seconds else 0.0,
        workers=workers,
    )
