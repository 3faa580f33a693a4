"""tokens group: the pretraining corpus, a byte-level BPE tokenizer trained on it, token shards."""

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from dagster_project.assets.dedup import deduplicated_documents
from dagster_project.automation import after_global_inputs_condition
from dagster_project.metadata import partitions_metadata, result_metadata
from dagster_project.resources import Storage
from dagster_project.stage import config_class, materialization, partition_inputs, publish, upstream
from lmlib.formats import DOCUMENTS_FILE, TRAIN_TEXT_FILE, VALIDATION_TEXT_FILE
from lmlib.tokenizer import (
    CorpusConfig,
    ShardConfig,
    Tokenizer,
    TokenizerConfig,
    build_pretraining_corpus,
    round_trip_failures,
    train_tokenizer,
    write_token_shards,
)

# Bytes per token outside this range means the tokenizer or its corpus is broken (byte-level
# fallback everywhere gives ~1; a 2k-50k vocabulary on English prose gives ~2.5-4.5).
COMPRESSION_RANGE = (2.0, 6.0)

PretrainingCorpusConfig = config_class(CorpusConfig, "PretrainingCorpusConfig")
BpeTokenizerConfig = config_class(TokenizerConfig, "BpeTokenizerConfig")
TokenShardsConfig = config_class(ShardConfig, "TokenShardsConfig")


@asset(deps=[deduplicated_documents], automation_condition=after_global_inputs_condition(),
       group_name="tokens", kinds={"python", "text"},
       description="Deduplicated documents of all files, shuffled by seed and split into "
                   "train.txt and val.txt (documents separated by <|endoftext|>).")
def pretraining_corpus(
    context: AssetExecutionContext, config: PretrainingCorpusConfig, storage: Storage
) -> MaterializeResult:
    sources = partition_inputs(context, storage, deduplicated_documents)
    corpus_config = config.build()
    result = publish(
        context, storage,
        lambda out: build_pretraining_corpus(
            sources.files(DOCUMENTS_FILE), out, corpus_config),
        config=corpus_config, inputs=sources.fingerprints())
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result), **partitions_metadata(sources)}))


@asset(deps=[pretraining_corpus], automation_condition=after_global_inputs_condition(),
       group_name="tokens", kinds={"python", "bpe"},
       check_specs=[
           AssetCheckSpec("round_trip", asset="bpe_tokenizer", blocking=True,
                          description="decode(encode(doc)) == doc on validation documents"),
           AssetCheckSpec("compression_in_range", asset="bpe_tokenizer",
                          description=f"bytes per token within {COMPRESSION_RANGE}"),
       ],
       description="Byte-level BPE (GPT-2 pre-tokenization) trained on train.txt; GPT-2 style "
                   "vocab.json and merges.txt.")
def bpe_tokenizer(context: AssetExecutionContext, config: BpeTokenizerConfig, storage: Storage):
    corpus = storage.artifact_dir(pretraining_corpus)
    tokenizer_config = config.build()
    result = publish(
        context, storage,
        lambda out: train_tokenizer(corpus / TRAIN_TEXT_FILE, out, tokenizer_config,
                                    corpus / VALIDATION_TEXT_FILE),
        config=tokenizer_config, inputs={"pretraining_corpus": upstream(corpus)})
    final = storage.artifact_dir(context.asset_key)
    yield Output(None, **materialization(context, storage, {
        **result_metadata(result), "path": MetadataValue.path(str(final))}))
    round_trip = round_trip_failures(Tokenizer.from_directory(final), corpus / VALIDATION_TEXT_FILE)
    yield AssetCheckResult(check_name="round_trip", passed=round_trip["failures"] == 0,
                           metadata={k: round_trip[k] for k in ("documents_checked", "failures")})
    low, high = COMPRESSION_RANGE
    yield AssetCheckResult(check_name="compression_in_range",
                           passed=low <= result.bytes_per_token <= high,
                           metadata={"bytes_per_token": result.bytes_per_token})


@asset(deps=[pretraining_corpus, bpe_tokenizer],
       automation_condition=after_global_inputs_condition(), group_name="tokens", kinds={"python", "numpy"},
       description="train/val token shards: little-endian uint16/uint32 .bin files readable "
                   "with np.memmap, document offsets, and index.json.")
def token_shards(
    context: AssetExecutionContext, config: TokenShardsConfig, storage: Storage
) -> MaterializeResult:
    corpus = storage.artifact_dir(pretraining_corpus)
    tokenizer = storage.artifact_dir(bpe_tokenizer)
    shard_config = config.build()
    result = publish(
        context, storage, lambda out: write_token_shards(corpus, tokenizer, out, shard_config),
        config=shard_config,
        inputs={"pretraining_corpus": upstream(corpus), "bpe_tokenizer": upstream(tokenizer)})
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result),
        "path": MetadataValue.path(str(storage.artifact_dir(context.asset_key))),
    }))
