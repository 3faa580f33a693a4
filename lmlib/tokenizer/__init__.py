"""Byte-level BPE: training, a GPT-2 compatible encoder/decoder, the pretraining corpus and
token shards.

Written in pure Python with `regex`; HF tokenizers and tiktoken are only the benchmark peers
and a test reference. Entry points of the pipeline stages, each taking a config dataclass and
returning a typed result: `build_pretraining_corpus` (pretraining_corpus), `train_tokenizer`
(bpe_tokenizer) and `write_token_shards` (token_shards).
"""

from lmlib.tokenizer.bpe_training import train_bpe
from lmlib.tokenizer.corpus import (
    DOCUMENT_SEPARATOR,
    CorpusConfig,
    CorpusResult,
    build_pretraining_corpus,
    corpus_doc_id,
    iter_documents,
)
from lmlib.tokenizer.shards import (
    ShardConfig,
    ShardPosition,
    ShardsResult,
    document_at,
    write_token_shards,
)
from lmlib.tokenizer.tokenizer import Tokenizer
from lmlib.tokenizer.tokenizer_stage import (
    TokenizerConfig,
    TokenizerResult,
    measure_compression,
    round_trip_failures,
    train_tokenizer,
)

__all__ = [
    "DOCUMENT_SEPARATOR",
    "CorpusConfig",
    "CorpusResult",
    "ShardConfig",
    "ShardPosition",
    "ShardsResult",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerResult",
    "build_pretraining_corpus",
    "corpus_doc_id",
    "document_at",
    "iter_documents",
    "measure_compression",
    "round_trip_failures",
    "train_bpe",
    "train_tokenizer",
    "write_token_shards",
]
