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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmlib.formats import DOC_IDS_FILES, TRAIN_TEXT_FILE, VALIDATION_TEXT_FILE
from lmlib.stage import StageResult

DOCUMENT_SEPARATOR = "<|endoftext|>"
_READ_CHARS = 1 << 20


@dataclass
class CorpusConfig:
    """How the documents are split: the fraction held out for validation, and the seed."""

    validation_fraction: float = 0.05
    seed: int = 0
    text_column: str = "text"

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"CorpusConfig.validation_fraction={self.validation_fraction} must be in [0, 1)"
            )
        if not self.text_column:
            raise ValueError("CorpusConfig.text_column must name a column of the documents")


@dataclass
class CorpusResult(StageResult):
    """Documents read, dropped and written per split (bytes as written, separators included)."""

    MANIFEST_COUNTS = ("train_documents", "val_documents", "train_bytes", "val_bytes")

    input_files: int
    input_documents: int
    dropped_empty_documents: int
    separators_removed: int
    train_documents: int
    train_bytes: int
    val_documents: int
    val_bytes: int


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


def _read_documents(document_parquets: list[Path], column: str) -> tuple[list[str], list[str]]:
    """(texts, doc_ids) of every file in order; a file without a doc_id column (a user's own
    Parquet) gets "<file name>:<row>"."""
    import pyarrow.parquet as pq

    texts: list[str] = []
    doc_ids: list[str] = []
    for path in document_parquets:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"document file {path} not found")
        schema = pq.read_schema(path)
        if column not in schema.names:
            raise ValueError(
                f"{path} has no column {column!r} (columns: {', '.join(schema.names)}); "
                "set CorpusConfig.text_column"
            )
        columns = [column, "doc_id"] if "doc_id" in schema.names else [column]
        table = pq.read_table(path, columns=columns)
        column_texts = table.column(column).to_pylist()
        texts += [text or "" for text in column_texts]
        doc_ids += (table.column("doc_id").to_pylist() if "doc_id" in columns
                    else [f"{path.name}:{row}" for row in range(len(column_texts))])
    return texts, doc_ids


def build_pretraining_corpus(
    document_parquets: list[Path], output_dir: Path, config: CorpusConfig
) -> CorpusResult:
    """Shuffle the documents of all files by seed and write output_dir/train.txt and val.txt
    (documents separated by "<|endoftext|>")."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    texts, all_doc_ids = _read_documents(list(document_parquets), config.text_column)

    separators_removed = 0
    documents, doc_ids = [], []
    for text, doc_id in zip(texts, all_doc_ids, strict=True):
        if DOCUMENT_SEPARATOR in text:
            separators_removed += text.count(DOCUMENT_SEPARATOR)
            text = text.replace(DOCUMENT_SEPARATOR, "")
        if text.strip():
            documents.append(text)
            doc_ids.append(doc_id)
    dropped_empty = len(texts) - len(documents)

    order = np.random.default_rng(config.seed).permutation(len(documents))
    validation_count = round(len(documents) * config.validation_fraction)
    if config.validation_fraction > 0 and len(documents) >= 2:
        validation_count = min(max(validation_count, 1), len(documents) - 1)
    val_documents, val_bytes = _write_split(output_dir, "val", VALIDATION_TEXT_FILE, documents,
                                            doc_ids, order[:validation_count])
    train_documents, train_bytes = _write_split(output_dir, "train", TRAIN_TEXT_FILE, documents,
                                                doc_ids, order[validation_count:])
    return CorpusResult(
        input_files=len(document_parquets),
        input_documents=len(texts),
        dropped_empty_documents=dropped_empty,
        separators_removed=separators_removed,
        train_documents=train_documents,
        train_bytes=train_bytes,
        val_documents=val_documents,
        val_bytes=val_bytes,
    )


def _write_split(output_dir: Path, split: str, file_name: str, documents: list[str],
                 doc_ids: list[str], chosen: np.ndarray) -> tuple[int, int]:
    """Write the chosen documents joined by the separator, and their doc_ids one per line in the
    same order (so a document of the token shards can be traced to its crawl record);
    (documents, bytes) written."""
    data = DOCUMENT_SEPARATOR.join(documents[i] for i in chosen).encode("utf-8")
    (output_dir / file_name).write_bytes(data)
    (output_dir / DOC_IDS_FILES[split]).write_text("".join(f"{doc_ids[i]}\n" for i in chosen),
                                                   "utf-8")
    return len(chosen), len(data)


def corpus_doc_id(corpus_dir: Path, split: str, ordinal: int) -> str:
    """The doc_id of the `ordinal`-th document (from 0) of a split of the corpus."""
    path = Path(corpus_dir) / DOC_IDS_FILES[split]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this corpus was built before documents "
                                "recorded their doc_ids; rebuild pretraining_corpus")
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index == ordinal:
                return line.rstrip("\n")
    raise IndexError(f"document {ordinal} is past the end of the {split} split of {corpus_dir}")
