"""Byte-level BPE: training, a GPT-2 compatible encoder/decoder, and token shards.

Written in pure Python with `regex`; HF tokenizers and tiktoken are only the benchmark peers
and a test reference. Entry points of the pipeline stages: `train_tokenizer` (bpe_tokenizer)
and `write_token_shards` (token_shards).
"""

from lmlib.tokenizer.shards import ShardConfig, write_token_shards
from lmlib.tokenizer.tokenizer import Tokenizer
from lmlib.tokenizer.train import train_bpe
from lmlib.tokenizer.training import (
    TokenizerConfig,
    measure_compression,
    round_trip_failures,
    train_tokenizer,
)

__all__ = [
    "ShardConfig",
    "Tokenizer",
    "TokenizerConfig",
    "measure_compression",
    "round_trip_failures",
    "train_bpe",
    "train_tokenizer",
    "write_token_shards",
]
