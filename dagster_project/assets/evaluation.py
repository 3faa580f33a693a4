"""evaluation group: the same battery on every checkpoint, and one report card comparing them.

Each checkpoint asset gets its own `<checkpoint>_eval` asset (`CHECKPOINTS` names them; the
post-training stages add theirs there), so a changed checkpoint re-evaluates alone, and
`eval_report` reads every evaluation into one report. Benchmark data is off by default (the
embedded default has none); point the run config, or LMPIPE_EVAL_MMLU_DIR,
LMPIPE_EVAL_GSM8K_DIR and LMPIPE_EVAL_MATH_FILE for scheduled runs, at local copies.
"""

import dataclasses
import json
import math
import os

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

import lmlib
from dagster_project.assets.posttrain import POST_TRAINED
from dagster_project.assets.pretrain import base_model
from dagster_project.assets.tokens import bpe_tokenizer, token_shards
from dagster_project.automation import int_setting
from dagster_project.metadata import inline_images, result_metadata
from dagster_project.policies import GPU_POOL
from dagster_project.provenance import walk
from dagster_project.resources import Storage
from dagster_project.stage import config_class, materialization, publish, upstream
from lmlib.artifacts import read_manifest
from lmlib.eval.battery import EvalConfig, check_checkpoint, evaluate_checkpoint
from lmlib.eval.report import CheckpointReport, ReportContext, write_report
from lmlib.formats import (
    EVALUATION_FILE,
    EVALUATION_TIMINGS_FILE,
    REPORT_FILE,
    TRAIN_LOG_FILE,
)
from lmlib.train.report import read_log

CHECKPOINTS = {"base_model": base_model, **POST_TRAINED}  # name -> asset, lineage order
ENVIRONMENT_PATHS = {"mmlu_dir": "LMPIPE_EVAL_MMLU_DIR", "gsm8k_dir": "LMPIPE_EVAL_GSM8K_DIR",
                     "math_file": "LMPIPE_EVAL_MATH_FILE"}

EvalSettings = config_class(EvalConfig, "EvalSettings")


def eval_config(settings) -> EvalConfig:
    """The run config's EvalConfig, with benchmark paths left empty taken from the environment."""
    config = settings.build()
    paths = {field: os.environ.get(variable, "") for field, variable in ENVIRONMENT_PATHS.items()
             if not getattr(config, field)}
    return dataclasses.replace(config, **{k: v for k, v in paths.items() if v})


def checkpoint_eval(name: str, checkpoint) -> object:
    """The `<name>_eval` asset of one checkpoint asset."""

    @asset(name=f"{name}_eval", deps=[checkpoint, bpe_tokenizer, token_shards],
           group_name="evaluation", kinds={"pytorch"}, pool=GPU_POOL,
           description=f"The evaluation battery on {name}: bits per byte on the validation "
                       "shards, the arithmetic task (greedy accuracy, pass@k), and MMLU, GSM8K "
                       "and MATH when their data is configured.")
    def evaluation(context: AssetExecutionContext, config: EvalSettings,
                   storage: Storage) -> MaterializeResult:
        model_dir = storage.artifact_dir(checkpoint)
        tokenizer, shards = storage.artifact_dir(bpe_tokenizer), storage.artifact_dir(token_shards)
        settings = eval_config(config)
        result = publish(
            context, storage,
            lambda out: evaluate_checkpoint(model_dir / "model", tokenizer, shards, out, settings,
                                            name=name),
            config=settings, inputs={name: upstream(model_dir), "bpe_tokenizer": upstream(tokenizer),
                                     "token_shards": upstream(shards)})
        return MaterializeResult(**materialization(context, storage, {
            **result_metadata(result),
            **{f"{r.task} {r.metric}": MetadataValue.float(round(r.value, 6))
               for r in result.tasks}}))

    return evaluation


CHECKPOINT_EVALS = [checkpoint_eval(name, checkpoint) for name, checkpoint in CHECKPOINTS.items()]


def checkpoint_check(name: str, checkpoint) -> object:
    """The blocking check of one checkpoint asset: nothing downstream (its evaluation, its
    export, the next training stage) runs on a model with a non-finite loss or one that does no
    better than LMPIPE_EVAL_MAX_BITS_PER_BYTE (default: a uniform guess over its vocabulary)."""

    @asset_check(asset=checkpoint, name=f"{name}_beats_its_bound", blocking=True,
                 description="Finite validation loss, and bits per byte on the first "
                             "LMPIPE_EVAL_CHECK_TOKENS (8192) validation tokens below "
                             "LMPIPE_EVAL_MAX_BITS_PER_BYTE (default: a uniform guess).")
    def check(storage: Storage) -> AssetCheckResult:
        bound = os.environ.get("LMPIPE_EVAL_MAX_BITS_PER_BYTE")
        result = check_checkpoint(
            storage.artifact_dir(checkpoint) / "model", storage.artifact_dir(bpe_tokenizer),
            storage.artifact_dir(token_shards),
            max_tokens=int_setting("LMPIPE_EVAL_CHECK_TOKENS", 8192, minimum=2),
            max_bits_per_byte=float(bound) if bound else None)
        return AssetCheckResult(passed=result.passed, description=result.reason, metadata={
            "validation_loss": round(result.loss, 6) if math.isfinite(result.loss) else -1.0,
            "bits_per_byte": round(result.bits_per_byte, 6)
            if math.isfinite(result.bits_per_byte) else -1.0,
            "bound": round(result.bound, 6), "tokens": result.tokens})

    return check


CHECKPOINT_CHECKS = [checkpoint_check(name, checkpoint) for name, checkpoint in CHECKPOINTS.items()]


def _funnel(storage: Storage, steps) -> list[tuple[str, int, str]]:
    """Documents from crawl records to the corpus, summed over each per-file asset's
    partitions on the walk, then the shards' tokens."""
    wanted = [("web_documents", "documents"), ("filtered_documents", "kept"),
              ("deduplicated_documents", "documents_out")]
    totals = dict.fromkeys((asset_name for asset_name, _ in wanted), 0)
    for step in steps:
        for asset_name, count in wanted:
            if step.asset == asset_name:
                totals[asset_name] += int(read_manifest(step.directory)["counts"].get(count, 0))
    corpus = read_manifest(storage.artifact_dir(AssetKey("pretraining_corpus")))["counts"]
    shards = read_manifest(storage.artifact_dir(token_shards))["counts"]
    return [*((asset_name, totals[asset_name], "documents") for asset_name, _ in wanted),
            ("pretraining_corpus", int(corpus.get("train_documents", 0))
             + int(corpus.get("val_documents", 0)), "documents"),
            ("token_shards", int(shards.get("tokens", 0)), "tokens")]


def _evaluation(directory) -> tuple[dict, float | None]:
    """evaluation.json with each task row's seconds put back from timings.json, and the total."""
    evaluation = json.loads((directory / EVALUATION_FILE).read_text())
    timings_path = directory / EVALUATION_TIMINGS_FILE
    if not timings_path.exists():
        return evaluation, None
    timings = json.loads(timings_path.read_text())
    seconds = {(row["task"], row["metric"]): row["seconds"] for row in timings["tasks"]}
    for row in evaluation["tasks"]:
        row["seconds"] = seconds.get((row["task"], row["metric"]))
    return evaluation, timings["seconds"]


@asset(deps=CHECKPOINT_EVALS, group_name="evaluation", kinds={"python"},
       description="One report card (markdown and PNG plots) comparing every checkpoint's "
                   "evaluation side by side, with the data funnel, training curves and the "
                   "provenance back to the crawl files.")
def eval_report(context: AssetExecutionContext, storage: Storage) -> MaterializeResult:
    artifacts = storage.home_path / "artifacts"
    checkpoints, inputs = [], {}
    for name in CHECKPOINTS:
        directory = storage.artifact_dir(AssetKey(f"{name}_eval"))
        inputs[f"{name}_eval"] = upstream(directory)
        checkpoint_dir = storage.artifact_dir(AssetKey(name))
        evaluation, seconds = _evaluation(directory)
        checkpoints.append(CheckpointReport(
            name=name, evaluation=evaluation, evaluation_seconds=seconds,
            training_log=read_log(checkpoint_dir / TRAIN_LOG_FILE),
            training_summary=read_manifest(checkpoint_dir)["counts"]))
    provenance = walk(storage.artifact_dir(AssetKey(next(iter(CHECKPOINTS)))), artifacts)
    shards = read_manifest(storage.artifact_dir(token_shards))["counts"]
    tokenizer_counts = read_manifest(storage.artifact_dir(bpe_tokenizer))["counts"]
    crawl = [crawl_file.name for crawl_file in provenance.crawl_files]
    context_info = ReportContext(
        title="lmpipe report card", generated_by=f"lmpipe, lmlib {lmlib.__version__}", funnel=_funnel(storage, provenance.steps),
        data_summary={"crawl files": len(crawl), **{f"token_shards {k}": v
                                                     for k, v in shards.items()},
                      "tokenizer vocabulary": tokenizer_counts.get("vocab_size", "")},
        provenance=f"crawl files ({len(crawl)}): {', '.join(crawl[:5])}"
                   f"{' ...' if len(crawl) > 5 else ''} -> web_documents -> filtered_documents "
                   f"-> deduplicated_documents -> pretraining_corpus -> token_shards -> "
                   f"{', '.join(CHECKPOINTS)}")
    result = publish(context, storage, lambda out: write_report(checkpoints, context_info, out),
                     config={"checkpoints": list(CHECKPOINTS)}, inputs=inputs)
    report = storage.artifact_dir(context.asset_key) / REPORT_FILE
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result),
        "report": MetadataValue.md(inline_images(report.read_text(), report.parent)),
        "path": MetadataValue.path(str(report))}))
