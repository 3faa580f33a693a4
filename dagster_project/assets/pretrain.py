"""pretrain group: the base model, trained from scratch on the token shards."""

import hashlib
import json
import shutil
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.assets.tokens import bpe_tokenizer, token_shards
from dagster_project.launcher import launch_torchrun_training, termination_timeout_seconds
from dagster_project.metadata import image_markdown, markdown_table, numbers
from dagster_project.policies import GPU_POOL, TRAINING_RETRY_POLICY
from dagster_project.resources import Storage
from dagster_project.stage import run_stage, upstream
from lmlib.model import TransformerLM
from lmlib.train import TrainingInterrupted, get_preset, read_index, train


class BaseModelConfig(Config):
    """A preset of lmlib.train (tiny: the CPU demo) and the fields people change most; unset
    fields keep the preset's value. launcher=torchrun runs `torchrun -m lmlib.train` through
    Dagster Pipes with nproc_per_node processes per node (strategy ddp unless set)."""

    preset: str = "tiny"
    max_steps: int | None = None
    batch_size: int | None = None
    max_lr: float | None = None
    d_model: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    context_length: int | None = None
    checkpoint_interval: int | None = None
    device: str | None = None
    compile: bool | None = None
    seed: int | None = None
    strategy: str | None = None  # ddp | zero1 | fsdp (torchrun); none in process
    activation_checkpointing: str | None = None  # none | every | every_k
    launcher: str = "inprocess"  # inprocess | torchrun (through Dagster Pipes)
    nproc_per_node: int = 1
    nnodes: int = 1

    def train_config(self):
        launch = {"preset", "launcher", "nproc_per_node", "nnodes"}
        overrides = {key: value for key, value in self.model_dump().items()
                     if key not in launch and value is not None}
        if self.launcher == "torchrun" and self.strategy is None:
            overrides["strategy"] = "ddp"
        model_fields = {"d_model", "num_layers", "num_heads", "context_length"}
        dotted = {(f"model.{k}" if k in model_fields else k): v for k, v in overrides.items()}
        return get_preset(self.preset).with_overrides(dotted)


@asset(deps=[token_shards, bpe_tokenizer], group_name="pretrain", kinds={"pytorch"}, pool=GPU_POOL,
       retry_policy=TRAINING_RETRY_POLICY,
       description="A TransformerLM trained from scratch on the token shards; resumes from the "
                   "latest checkpoint of the same run when re-materialized after a crash.")
def base_model(
    context: AssetExecutionContext, config: BaseModelConfig, storage: Storage
) -> MaterializeResult:
    shards = storage.artifact_dir("token_shards")
    tokenizer = storage.artifact_dir("bpe_tokenizer")
    train_config = config.train_config()
    inputs = {"token_shards": upstream(shards), "bpe_tokenizer": upstream(tokenizer)}
    # Checkpoints live outside the artifact, keyed by config and inputs, so that a killed run
    # resumes when the asset is materialized again with the same config.
    run_key = hashlib.sha256(json.dumps([train_config.to_dict(), inputs], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
    run_dir = storage.home_path / "runs" / "base_model" / run_key
    context.log.info(f"training in {run_dir} (checkpoints there survive a crash)")

    def log_progress(record: dict) -> None:
        if record["kind"] == "status":
            context.log.info(f"[+{record['elapsed_s']:.1f} s] {record['message']}")
        elif record["kind"] == "eval" or record["step"] % 50 == 0:
            context.log.info(json.dumps(record))

    def produce(out: Path) -> dict:
        if config.launcher == "torchrun":
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "train_config.json").write_text(json.dumps(train_config.to_dict()))
            vocab_size = train_config.model.vocab_size or read_index(shards)["vocab_size"]
            parameters = TransformerLM(train_config.model, vocab_size=vocab_size,
                                       device="meta").num_parameters()
            stats = launch_torchrun_training(
                context, nproc_per_node=config.nproc_per_node, nnodes=config.nnodes,
                train_args=["--config", str(run_dir / "train_config.json"), "--data-dir",
                            str(shards), "--run-dir", str(run_dir), "--tokenizer-dir",
                            str(tokenizer)],
                termination_timeout_s=termination_timeout_seconds(parameters))
        elif config.launcher == "inprocess":
            try:
                stats = train(train_config, shards, run_dir, progress=log_progress,
                              tokenizer_dir=tokenizer, quiet=True)
            except TrainingInterrupted as stopped:
                # Terminate in the UI sends SIGINT: a checkpoint was written; never retried.
                raise Failure(str(stopped), allow_retries=stopped.signal_name != "SIGINT",
                              metadata={"stopped_at_step": stopped.step,
                                        "checkpoint": str(stopped.checkpoint)}) from stopped
        else:
            raise ValueError(f"launcher must be inprocess or torchrun, got {config.launcher!r}")
        shutil.copytree(run_dir / "model", out / "model")
        for name in ("log.jsonl", "loss_curve.png"):
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, out / name)
        return stats

    final = storage.artifact_dir("base_model")
    stats = run_stage(final, "base_model", produce, config=train_config,
                      count_keys=("parameters", "steps", "tokens_trained"), inputs=inputs)
    metadata = {
        **numbers(stats, ["parameters", "steps", "tokens_trained", "first_train_loss",
                          "final_train_loss", "tokens_per_second", "train_seconds"]),
        "device": MetadataValue.text(str(stats["device"])),
        "samples": MetadataValue.md(markdown_table(stats.get("samples") or [])),
        "path": MetadataValue.path(str(final / "model")),
    }
    if stats.get("final_val_loss") is not None:
        metadata["final_val_loss"] = MetadataValue.float(float(stats["final_val_loss"]))
    if stats.get("resumed_from_step"):
        metadata["resumed_from_step"] = MetadataValue.int(int(stats["resumed_from_step"]))
    if stats.get("mfu") is not None:
        metadata["mfu"] = MetadataValue.float(float(stats["mfu"]))
    if (final / "loss_curve.png").exists():
        metadata["loss_curve"] = image_markdown(final / "loss_curve.png", "loss curve")
    return MaterializeResult(metadata=metadata)
