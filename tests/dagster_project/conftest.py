"""A small LMPIPE_HOME with the inputs base_model reads (a BPE tokenizer and token shards), made
with the pipeline's own lmlib entry points, so base_model can run without the graph upstream."""

import random
from pathlib import Path

import pytest

from dagster_project.resources import Storage
from lmlib.artifacts import atomic_directory, write_manifest
from lmlib.tokenizer import (
    DOCUMENT_SEPARATOR,
    ShardConfig,
    TokenizerConfig,
    train_tokenizer,
    write_token_shards,
)
from tests.conftest import lmpipe_environment

WORDS = ("the model reads a token and learns which token comes next from many small "
         "documents of plain text").split()


def write_training_inputs(home: Path) -> None:
    storage = Storage(home=str(home))
    corpus = home / "corpus"
    corpus.mkdir(parents=True)
    rng = random.Random(0)
    documents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
                 for _ in range(120)]
    (corpus / "train.txt").write_text(DOCUMENT_SEPARATOR.join(documents[:100]))
    (corpus / "val.txt").write_text(DOCUMENT_SEPARATOR.join(documents[100:]))
    tokenizer_config = TokenizerConfig(vocab_size=320, workers=1)
    tokenizer_dir = storage.artifact_dir("bpe_tokenizer")
    with atomic_directory(tokenizer_dir) as out:
        train_tokenizer(corpus / "train.txt", out, tokenizer_config)
        write_manifest(out, stage="bpe_tokenizer", config=tokenizer_config)
    shard_config = ShardConfig(workers=1)
    with atomic_directory(storage.artifact_dir("token_shards")) as out:
        write_token_shards(corpus, tokenizer_dir, out, shard_config)
        write_manifest(out, stage="token_shards", config=shard_config)


@pytest.fixture
def training_home(tmp_path):
    """LMPIPE_HOME (and DAGSTER_HOME inside it) with base_model's inputs in place."""
    home = tmp_path / "lmpipe"
    write_training_inputs(home)
    with lmpipe_environment(home):
        yield home
