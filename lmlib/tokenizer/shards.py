"""The `token_shards` stage: encode the corpus into flat binary shards for training.

Format "lmpipe-token-shards/1" (read with numpy alone):
- `<split>_<NNNNN>.bin`: raw little-endian uint16 token ids (uint32 when the vocabulary has more
  than 65,536 ids), `<|endoftext|>` after every document; `np.memmap(path, dtype="<u2")`.
- `<split>_<NNNNN>.offsets.npy`: int64 start offset of each document within that shard.
- `index.json`: {"format", "dtype", "vocab_size", "eot_token_id", "splits": {split: {"tokens",
  "documents", "shards": [{"file", "tokens", "documents"}]}}}.
A document never straddles two shards; a shard is closed before the document that would take it
past `max_tokens_per_shard` (a single longer document gets a shard of its own).

Encoding runs in a pool of worker processes over batches of documents; `imap` returns batches in
input order, so the output is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lmlib.corpus import DOCUMENT_SEPARATOR, iter_documents
from lmlib.tokenizer.tokenizer import Tokenizer

FORMAT = "lmpipe-token-shards/1"
SPLITS = ("train", "val")


@dataclass
class ShardConfig:
    """Shard size and parallelism of the encoding."""

    max_tokens_per_shard: int = 100_000_000
    workers: int | None = None  # encoding processes; None: all cores
    batch_chars: int = 1 << 20  # text per task sent to a worker

    def validate(self) -> None:
        if self.max_tokens_per_shard < 1:
            raise ValueError(
                f"ShardConfig.max_tokens_per_shard={self.max_tokens_per_shard} must be >= 1"
            )
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"ShardConfig.workers={self.workers} must be >= 1 or None")
        if self.batch_chars < 1:
            raise ValueError(f"ShardConfig.batch_chars={self.batch_chars} must be >= 1")


_worker_tokenizer: Tokenizer | None = None
_worker_eot: int = -1


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer, _worker_eot
    _worker_tokenizer = Tokenizer.from_directory(tokenizer_dir)
    _worker_eot = _worker_tokenizer.token_id(DOCUMENT_SEPARATOR)


def _encode_batch(documents: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """(token ids with eot after each document, tokens per document, text bytes)."""
    ids: list[int] = []
    lengths = np.empty(len(documents), dtype=np.int64)
    text_bytes = 0
    for index, document in enumerate(documents):
        before = len(ids)
        ids += _worker_tokenizer.encode(document)
        ids.append(_worker_eot)
        lengths[index] = len(ids) - before
        text_bytes += len(document.encode("utf-8"))
    return np.asarray(ids, dtype=np.int64), lengths, text_bytes


def _batches(path: Path, batch_chars: int) -> Iterator[list[str]]:
    batch, size = [], 0
    for document in iter_documents(path):
        batch.append(document)
        size += len(document)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


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


def write_token_shards(
    corpus_dir: Path, tokenizer_dir: Path, output_dir: Path, config: ShardConfig
) -> dict:
    """Encode corpus_dir/train.txt and val.txt into token shards in output_dir; returns stats."""
    config.validate()
    corpus_dir, tokenizer_dir, output_dir = Path(corpus_dir), Path(tokenizer_dir), Path(output_dir)
    for split in SPLITS:
        if not (corpus_dir / f"{split}.txt").is_file():
            raise FileNotFoundError(
                f"{corpus_dir / f'{split}.txt'} not found: expected the pretraining corpus "
                "(train.txt and val.txt written by lmlib.corpus.build_pretraining_corpus)"
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

    index = {"format": FORMAT, "dtype": dtype.name, "vocab_size": vocab_size,
             "eot_token_id": eot_token_id, "splits": {}}
    stats: dict = {"config": asdict(config), "dtype": dtype.name, "vocab_size": vocab_size}
    started = time.perf_counter()
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=(str(tokenizer_dir),))
    else:
        _init_worker(str(tokenizer_dir))
    try:
        total_tokens = total_documents = total_bytes = 0
        for split in SPLITS:
            writer = _ShardWriter(output_dir, split, dtype, config.max_tokens_per_shard)
            batches = _batches(corpus_dir / f"{split}.txt", config.batch_chars)
            results = (pool.imap(_encode_batch, batches) if pool is not None
                       else map(_encode_batch, batches))
            tokens = documents = text_bytes = 0
            for ids, lengths, batch_bytes in results:
                writer.add_batch(ids, lengths)
                tokens += len(ids)
                documents += len(lengths)
                text_bytes += batch_bytes
            index["splits"][split] = {"tokens": tokens, "documents": documents,
                                      "shards": writer.finish()}
            stats[f"{split}_tokens"] = tokens
            stats[f"{split}_documents"] = documents
            stats[f"{split}_shards"] = len(index["splits"][split]["shards"])
            total_tokens += tokens
            total_documents += documents
            total_bytes += text_bytes
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.perf_counter() - started
    (output_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n", "utf-8")
    stats.update(
        tokens=total_tokens,
        documents=total_documents,
        text_bytes=total_bytes,
        # eot tokens are left out: they stand for no text
        bytes_per_token=total_bytes / max(total_tokens - total_documents, 1),
        seconds=seconds,
        tokens_per_second=total_tokens / seconds if seconds else 0.0,
        workers=workers,
    )
    return stats
