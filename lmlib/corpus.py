"""The `pretraining_corpus` stage: documents from Parquet, shuffled by seed, split into text files.

Output: `train.txt` and `val.txt`, UTF-8, documents joined by the separator "<|endoftext|>"
(between documents, not after the last one), which is also the tokenizer's end-of-text token.
Any literal "<|endoftext|>" inside a document is removed first (and counted), so splitting a
file on the separator gives back exactly its documents. Empty or whitespace-only documents are
dropped.

The shuffle is a seeded numpy permutation over all documents of all files, in the order the files
are given, so the split is the same on every run. The texts are held in memory while shuffling:
fine for the demo and for corpora of a few GB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DOCUMENT_SEPARATOR = "<|endoftext|>"
_READ_CHARS = 1 << 20


@dataclass
class CorpusConfig:
    """How the documents are split: the fraction held out for validation, and the seed."""

    validation_fraction: float = 0.05
    seed: int = 0
    text_column: str = "text"

    def validate(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"CorpusConfig.validation_fraction={self.validation_fraction} must be in [0, 1)"
            )


def iter_documents(path: Path, separator: str = DOCUMENT_SEPARATOR) -> Iterator[str]:
    """The documents of a corpus text file, streamed (memory bounded by the largest one)."""
    pending = ""
    with Path(path).open("r", encoding="utf-8", newline="") as handle:
        while chunk := handle.read(_READ_CHARS):
            pending += chunk
            *documents, pending = pending.split(separator)
            yield from documents
    if pending:
        yield pending


def _read_texts(document_parquets: list[Path], column: str) -> list[str]:
    import pyarrow.parquet as pq

    texts: list[str] = []
    for path in document_parquets:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"document file {path} does not exist")
        schema = pq.read_schema(path)
        if column not in schema.names:
            raise ValueError(
                f"{path} has no column {column!r} (columns: {', '.join(schema.names)}); "
                "set CorpusConfig.text_column"
            )
        for text in pq.read_table(path, columns=[column]).column(column).to_pylist():
            texts.append(text or "")
    return texts


def build_pretraining_corpus(
    document_parquets: list[Path], output_dir: Path, config: CorpusConfig
) -> dict:
    """Shuffle the documents of all files by seed and write output_dir/train.txt and val.txt
    (documents separated by "<|endoftext|>"); returns documents and bytes per split."""
    config.validate()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    texts = _read_texts(list(document_parquets), config.text_column)

    separators_removed = 0
    documents = []
    for text in texts:
        if DOCUMENT_SEPARATOR in text:
            separators_removed += text.count(DOCUMENT_SEPARATOR)
            text = text.replace(DOCUMENT_SEPARATOR, "")
        if text.strip():
            documents.append(text)
    dropped_empty = len(texts) - len(documents)

    order = np.random.default_rng(config.seed).permutation(len(documents))
    validation_count = round(len(documents) * config.validation_fraction)
    if config.validation_fraction > 0 and len(documents) >= 2:
        validation_count = min(max(validation_count, 1), len(documents) - 1)
    splits = {
        "val": [documents[i] for i in order[:validation_count]],
        "train": [documents[i] for i in order[validation_count:]],
    }
    stats: dict = {
        "config": asdict(config),
        "input_files": len(document_parquets),
        "input_documents": len(texts),
        "dropped_empty_documents": dropped_empty,
        "separators_removed": separators_removed,
        "separator": DOCUMENT_SEPARATOR,
    }
    for name, split_documents in splits.items():
        data = DOCUMENT_SEPARATOR.join(split_documents).encode("utf-8")
        (output_dir / f"{name}.txt").write_bytes(data)
        stats[f"{name}_documents"] = len(split_documents)
        stats[f"{name}_bytes"] = len(data)
    return stats
