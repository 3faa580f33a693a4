"""A small LMPIPE_HOME with the inputs base_model reads (a BPE tokenizer and token shards), made
with the pipeline's own lmlib entry points, so base_model can run without the graph upstream."""

import random
from pathlib import Path

import pytest

from dagster_project.resources import Storage
from dagster_project.stage import run_stage
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
    run_stage(tokenizer_dir, "bpe_tokenizer",
              lambda out: train_tokenizer(corpus / "train.txt", out, tokenizer_config),
              config=tokenizer_config, count_keys=())
    shard_config = ShardConfig(workers=1)
    run_stage(storage.artifact_dir("token_shards"), "token_shards",
              lambda out: write_token_shards(corpus, tokenizer_dir, out, shard_config),
              config=shard_config, count_keys=())


@pytest.fixture
def training_home(tmp_path):
    """LMPIPE_HOME (and DAGSTER_HOME inside it) with base_model's inputs in place."""
    home = tmp_path / "lmpipe"
    write_training_inputs(home)
    with lmpipe_environment(home):
        yield home
