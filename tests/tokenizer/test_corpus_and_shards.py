import gzip
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmlib.tokenizer import (
    CorpusConfig,
    ShardConfig,
    Tokenizer,
    TokenizerConfig,
    build_pretraining_corpus,
    iter_documents,
    round_trip_failures,
    train_tokenizer,
    write_token_shards,
)
from tests.conftest import shared_path

EOT = "<|endoftext|>"


def _write_documents(path, texts):
    count = len(texts)
    table = pa.table({
        "doc_id": [f"doc-{i}" for i in range(count)],
        "url": [f"https://example.org/{i}" for i in range(count)],
        "record_id": [f"<urn:uuid:{i}>" for i in range(count)],
        "date": ["2024-01-01T00:00:00Z"] * count,
        "content_type": ["text/html"] * count,
        "text": texts,
        "payload_bytes": [len(t) for t in texts],
        "text_bytes": [len(t.encode()) for t in texts],
        "source_file": ["sample.warc.gz"] * count,
    })
    pq.write_table(table, path, compression="zstd")
    return path


@pytest.fixture(scope="module")
def document_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("documents")
    news = shared_path("data/text/news-lee-background.txt").read_text("utf-8").splitlines()
    with gzip.open(shared_path("data/text/enwiki-excerpt.jsonl.gz"), "rt") as handle:
        wiki = [json.loads(line)["text"] for _, line in zip(range(15), handle)]
    return [
        _write_documents(directory / "part-0.parquet", news[:150] + ["", "   "]),
        _write_documents(directory / "part-1.parquet", news[150:] + wiki + [f"a{EOT}b"]),
    ]


@pytest.fixture(scope="module")
def pipeline(document_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    corpus_stats = build_pretraining_corpus(document_files, root / "corpus",
                                            CorpusConfig(validation_fraction=0.1, seed=7))
    tokenizer_stats = train_tokenizer(root / "corpus" / "train.txt", root / "tokenizer",
                                      TokenizerConfig(vocab_size=600, workers=1),
                                      root / "corpus" / "val.txt")
    return root, corpus_stats, tokenizer_stats


def test_corpus_split_counts_and_cleaning(pipeline):
    root, stats, _ = pipeline
    assert stats.input_documents == 300 + 2 + 15 + 1
    assert stats.dropped_empty_documents == 2
    assert stats.separators_removed == 1
    assert stats.val_documents == round(316 * 0.1)
    assert stats.train_documents + stats.val_documents == 316
    for split in ("train", "val"):
        path = root / "corpus" / f"{split}.txt"
        assert path.stat().st_size == getattr(stats, f"{split}_bytes")
        assert len(list(iter_documents(path))) == getattr(stats, f"{split}_documents")
    all_documents = set(iter_documents(root / "corpus" / "train.txt")) | set(
        iter_documents(root / "corpus" / "val.txt"))
    assert "ab" in all_documents


def test_corpus_split_is_deterministic_by_seed(document_files, tmp_path):
    build_pretraining_corpus(document_files, tmp_path / "a", CorpusConfig(seed=3))
    build_pretraining_corpus(document_files, tmp_path / "b", CorpusConfig(seed=3))
    build_pretraining_corpus(document_files, tmp_path / "c", CorpusConfig(seed=4))
    for split in ("train.txt", "val.txt"):
        assert (tmp_path / "a" / split).read_bytes() == (tmp_path / "b" / split).read_bytes()
    assert (tmp_path / "a" / "val.txt").read_bytes() != (tmp_path / "c" / "val.txt").read_bytes()


def test_corpus_rejects_bad_config_and_inputs(document_files, tmp_path):
    with pytest.raises(ValueError, match="validation_fraction"):
        build_pretraining_corpus(document_files, tmp_path, CorpusConfig(validation_fraction=1.0))
    with pytest.raises(ValueError, match="no column 'body'"):
        build_pretraining_corpus(document_files, tmp_path, CorpusConfig(text_column="body"))
    with pytest.raises(FileNotFoundError):
        build_pretraining_corpus([tmp_path / "nope.parquet"], tmp_path, CorpusConfig())


def test_train_tokenizer_writes_files_and_reports_stats(pipeline):
    root, _, stats = pipeline
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        assert (root / "tokenizer" / name).is_file()
    tokenizer = Tokenizer.from_directory(root / "tokenizer")
    assert tokenizer.vocab_size == stats.vocab_size == 600
    assert tokenizer.token_id(EOT) == 599
    assert 2.0 < stats.bytes_per_token < 5.0
    assert stats.measured_on == "validation"
    assert stats.training_seconds > 0
    assert len(stats.longest_tokens) == 10
    assert "".join(row["token"] for row in stats.sample_encoding) == stats.sample_text
    assert tokenizer.encode(stats.sample_text) == [row["id"] for row in stats.sample_encoding]
    check = round_trip_failures(tokenizer, root / "corpus" / "val.txt")
    assert check["documents_checked"] == 32 and check["failures"] == 0


@pytest.mark.parametrize("make, field", [
    (lambda: TokenizerConfig(vocab_size=100), "TokenizerConfig.vocab_size"),
    (lambda: TokenizerConfig(workers=0), "TokenizerConfig.workers"),
    (lambda: TokenizerConfig(special_tokens=[""]), "TokenizerConfig.special_tokens"),
    (lambda: ShardConfig(max_tokens_per_shard=0), "ShardConfig.max_tokens_per_shard"),
    (lambda: ShardConfig(batch_chars=-1), "ShardConfig.batch_chars"),
    (lambda: ShardConfig(workers=0), "ShardConfig.workers"),
    (lambda: CorpusConfig(validation_fraction=-0.1), "CorpusConfig.validation_fraction"),
    (lambda: CorpusConfig(text_column=""), "CorpusConfig.text_column"),
])
def test_configs_reject_a_bad_value_naming_the_field(make, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        make()


def _read_shards(directory):
    index = json.loads((directory / "index.json").read_text())
    documents = {}
    for split, info in index["splits"].items():
        documents[split] = []
        for shard in info["shards"]:
            tokens = np.fromfile(directory / shard["file"], dtype="<u2")
            offsets = np.load(directory / shard["file"].replace(".bin", ".offsets.npy"))
            assert len(tokens) == shard["tokens"] and len(offsets) == shard["documents"]
            bounds = [*offsets.tolist(), len(tokens)]
            documents[split] += [tokens[a:b] for a, b in zip(bounds, bounds[1:])]
    return index, documents


def test_token_shards_decode_to_the_corpus(pipeline, tmp_path):
    root, corpus_stats, _ = pipeline
    stats = write_token_shards(root / "corpus", root / "tokenizer", tmp_path,
                               ShardConfig(max_tokens_per_shard=20_000, workers=1,
                                           batch_chars=10_000))
    index, documents = _read_shards(tmp_path)
    tokenizer = Tokenizer.from_directory(root / "tokenizer")
    eot = tokenizer.token_id(EOT)
    assert index["format"] == "lmpipe-token-shards/1"
    assert index["dtype"] == "uint16" and index["vocab_size"] == 600 and index["eot_token_id"] == eot
    assert len(index["splits"]["train"]["shards"]) > 5
    for split in ("train", "val"):
        expected = list(iter_documents(root / "corpus" / f"{split}.txt"))
        assert len(documents[split]) == len(expected) == getattr(corpus_stats, f"{split}_documents")
        assert index["splits"][split]["documents"] == len(expected)
        for tokens, text in zip(documents[split], expected):
            assert tokens[-1] == eot and eot not in tokens[:-1]
            assert tokenizer.decode(tokens[:-1].tolist()) == text
        assert all(shard["tokens"] <= 20_000 or shard["documents"] == 1
                   for shard in index["splits"][split]["shards"])
    assert stats.tokens == stats.train_tokens + stats.val_tokens
    assert stats.documents == 316
    assert 2.0 < stats.bytes_per_token < 5.0


def test_token_shards_are_deterministic_across_worker_counts(pipeline, tmp_path):
    root, _, _ = pipeline
    config = dict(max_tokens_per_shard=30_000, batch_chars=20_000)
    write_token_shards(root / "corpus", root / "tokenizer", tmp_path / "one",
                       ShardConfig(workers=1, **config))
    write_token_shards(root / "corpus", root / "tokenizer", tmp_path / "two",
                       ShardConfig(workers=2, **config))
    names = sorted(path.name for path in (tmp_path / "one").iterdir())
    assert names == sorted(path.name for path in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_token_shards_need_an_end_of_text_token(pipeline, tmp_path):
    root, _, _ = pipeline
    trained = Tokenizer.from_directory(root / "tokenizer")
    vocab = {i: token for i, token in trained.vocab.items() if token != EOT.encode()}
    Tokenizer(vocab, trained.merges).save(tmp_path / "tokenizer")
    with pytest.raises(ValueError, match=re.escape(f"has no {EOT} token")):
        write_token_shards(root / "corpus", tmp_path / "tokenizer", tmp_path / "out",
                           ShardConfig(workers=1))
    with pytest.raises(FileNotFoundError, match="train.txt"):
        write_token_shards(tmp_path / "missing", root / "tokenizer", tmp_path / "out",
                           ShardConfig(workers=1))
