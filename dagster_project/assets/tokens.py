"""tokens group: the pretraining corpus, a byte-level BPE tokenizer trained on it, token shards."""

from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from dagster_project.assets.dedup import deduplicated_documents
from dagster_project.metadata import markdown_table, numbers, partitions_metadata
from dagster_project.resources import Storage
from dagster_project.stage import partition_inputs, run_stage, upstream
from lmlib.corpus import CorpusConfig, build_pretraining_corpus
from lmlib.tokenizer import (
    ShardConfig,
    Tokenizer,
    TokenizerConfig,
    round_trip_failures,
    train_tokenizer,
    write_token_shards,
)

# Bytes per token outside this range means the tokenizer or its corpus is broken (byte-level
# fallback everywhere gives ~1; a 2k-50k vocabulary on English prose gives ~2.5-4.5).
COMPRESSION_RANGE = (2.0, 6.0)


class PretrainingCorpusConfig(Config):
    """Mirrors lmlib.corpus.CorpusConfig."""

    validation_fraction: float = 0.05
    seed: int = 0


@asset(deps=[deduplicated_documents], group_name="tokens", kinds={"python", "text"},
       description="Deduplicated documents of all files, shuffled by seed and split into "
                   "train.txt and val.txt (documents separated by <|endoftext|>).")
def pretraining_corpus(
    context: AssetExecutionContext, config: PretrainingCorpusConfig, storage: Storage
) -> MaterializeResult:
    sources = partition_inputs(context, storage, "deduplicated_documents")
    corpus_config = CorpusConfig(**config.model_dump())
    stats = run_stage(
        storage.artifact_dir("pretraining_corpus"), "pretraining_corpus",
        lambda out: build_pretraining_corpus(
            [s / "documents.parquet" for s in sources.dirs.values()], out, corpus_config),
        config=corpus_config,
        count_keys=("train_documents", "val_documents", "train_bytes", "val_bytes"),
        inputs={p: upstream(s) for p, s in sources.dirs.items()})
    return MaterializeResult(metadata={
        **numbers(stats, ["input_documents", "train_documents", "val_documents", "train_bytes",
                          "val_bytes", "dropped_empty_documents"]),
        **partitions_metadata(sources),
    })


class BpeTokenizerConfig(Config):
    """Mirrors lmlib.tokenizer.TokenizerConfig."""

    vocab_size: int = 2048
    special_tokens: list[str] = ["<|endoftext|>"]
    workers: int | None = None


@asset(deps=[pretraining_corpus], group_name="tokens", kinds={"python", "bpe"},
       check_specs=[
           AssetCheckSpec("round_trip", asset="bpe_tokenizer", blocking=True,
                          description="decode(encode(doc)) == doc on validation documents"),
           AssetCheckSpec("compression_in_range", asset="bpe_tokenizer",
                          description=f"bytes per token within {COMPRESSION_RANGE}"),
       ],
       description="Byte-level BPE (GPT-2 pre-tokenization) trained on train.txt; GPT-2 style "
                   "vocab.json and merges.txt.")
def bpe_tokenizer(context: AssetExecutionContext, config: BpeTokenizerConfig, storage: Storage):
    corpus = storage.artifact_dir("pretraining_corpus")
    final = storage.artifact_dir("bpe_tokenizer")
    tokenizer_config = TokenizerConfig(**config.model_dump())
    stats = run_stage(
        final, "bpe_tokenizer",
        lambda out: train_tokenizer(corpus / "train.txt", out, tokenizer_config,
                                    corpus / "val.txt"),
        config=tokenizer_config, count_keys=("vocab_size", "merges", "bytes_per_token"),
        inputs={"pretraining_corpus": upstream(corpus)})
    round_trip = round_trip_failures(Tokenizer.from_directory(final), corpus / "val.txt")
    low, high = COMPRESSION_RANGE
    sample = [{"token": repr(t)} for t in stats["sample_tokens"][:40]]
    yield Output(None, metadata={
        **numbers(stats, ["vocab_size", "merges", "training_seconds", "bytes_per_token",
                          "train_bytes", "unique_pretokens"]),
        "longest_tokens": MetadataValue.md(markdown_table(
            [{"token": repr(t)} for t in stats["longest_tokens"]])),
        "sample_text": MetadataValue.text(stats["sample_text"]),
        "sample_encoding": MetadataValue.md(
            f"ids: `{stats['sample_ids'][:40]}`\n\n{markdown_table(sample)}"),
        "path": MetadataValue.path(str(final)),
    })
    yield AssetCheckResult(check_name="round_trip", passed=round_trip["failures"] == 0,
                           metadata={k: round_trip[k] for k in ("documents_checked", "failures")})
    yield AssetCheckResult(check_name="compression_in_range",
                           passed=low <= stats["bytes_per_token"] <= high,
                           metadata={"bytes_per_token": stats["bytes_per_token"]})


class TokenShardsConfig(Config):
    """Mirrors lmlib.tokenizer.ShardConfig."""

    max_tokens_per_shard: int = 100_000_000
    workers: int | None = None


@asset(deps=[pretraining_corpus, bpe_tokenizer], group_name="tokens", kinds={"python", "numpy"},
       description="train/val token shards: little-endian uint16/uint32 .bin files readable "
                   "with np.memmap, document offsets, and index.json.")
def token_shards(
    context: AssetExecutionContext, config: TokenShardsConfig, storage: Storage
) -> MaterializeResult:
    corpus = storage.artifact_dir("pretraining_corpus")
    tokenizer = storage.artifact_dir("bpe_tokenizer")
    shard_config = ShardConfig(**config.model_dump())
    final = storage.artifact_dir("token_shards")
    stats = run_stage(
        final, "token_shards",
        lambda out: write_token_shards(corpus, tokenizer, out, shard_config),
        config=shard_config, count_keys=("tokens", "documents"),
        inputs={"pretraining_corpus": upstream(corpus), "bpe_tokenizer": upstream(tokenizer)})
    return MaterializeResult(metadata={
        **numbers(stats, ["tokens", "documents", "train_tokens", "val_tokens", "bytes_per_token",
                          "tokens_per_second", "seconds"]),
        "dtype": MetadataValue.text(str(stats["dtype"])),
        "path": MetadataValue.path(str(Path(final))),
    })
