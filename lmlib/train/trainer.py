"""The training loop: `train(config, data_dir, run_dir)` is the one entry point.

Notable:
- resumes automatically from the newest checkpoint in run_dir/checkpoints, and ends with
  bitwise the same weights as an uninterrupted run on CPU (batches are a pure function of
  (seed, batch number); optimizer, RNG and sampler state are checkpointed);
- SIGTERM writes a checkpoint and raises `TrainingInterrupted` (the CLI exits with 143), so a
  preempted run never looks finished;
- a NaN or inf loss raises `FloatingPointError` naming the step;
- bf16 autocast on CUDA, optional torch.compile, periodic validation loss, console progress,
  run_dir/log.jsonl, and wandb only when a project is configured (offline by default).
"""

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from lmlib.model.checkpoint_io import save_model
from lmlib.model.loss import cross_entropy
from lmlib.model.transformer import TransformerLM
from lmlib.optim import AdamW, get_lr_cosine_schedule, gradient_clipping
from lmlib.train.checkpoint import (
    latest_checkpoint,
    read_checkpoint,
    restore_rng_states,
    rng_states,
    write_training_checkpoint,
)
from lmlib.train.config import RESUME_INVARIANT_FIELDS, TrainConfig
from lmlib.train.data import ShardSampler, check_device, open_split, read_index
from lmlib.train.report import load_tokenizer, plot_loss_curve, read_log, sample_generations


class TrainingInterrupted(Exception):
    """SIGTERM arrived; a checkpoint was written and the run can resume from it."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"training stopped by SIGTERM at step {step}; checkpoint: {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA under "auto" or "bf16"; nothing (fp32) otherwise."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def build_optimizer(model: TransformerLM, config: TrainConfig) -> AdamW:
    """Weight decay on matrices only; norm gains are left alone."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return AdamW(groups, lr=config.max_lr, betas=(config.beta1, config.beta2), eps=config.adam_eps)


class _SigtermFlag:
    """Turns SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


class _RunLog:
    """Appends records to log.jsonl, prints them, and forwards them to wandb and `progress`."""

    def __init__(self, path: Path, progress: Callable[[dict], None] | None, wandb_run, quiet: bool):
        self.path, self.progress, self.wandb_run, self.quiet = path, progress, wandb_run, quiet

    def truncate_after(self, step: int) -> None:
        """Drops records a killed run wrote after its last checkpoint."""
        kept = [r for r in read_log(self.path) if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if not self.quiet:
            fields = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items() if k != "kind"
            )
            print(f"[{record['kind']}] {fields}", flush=True)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "kind"}, step=record["step"])
        if self.progress is not None:
            self.progress(record)


def _start_wandb(config: TrainConfig, run_dir: Path):
    if not config.wandb_project:
        return None
    try:
        import wandb
    except ImportError as error:
        raise ImportError("TrainConfig.wandb_project is set but wandb is not installed") from error
    id_file = run_dir / "wandb_run_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id)
    mode = config.wandb_mode or os.environ.get("WANDB_MODE", "offline")
    return wandb.init(
        project=config.wandb_project, dir=str(run_dir), id=run_id, resume="allow", mode=mode,
        config=config.to_dict(),
    )


def _check_resumable(saved: dict, config: TrainConfig, checkpoint: Path) -> None:
    current = config.to_dict()
    changed = [name for name in RESUME_INVARIANT_FIELDS if saved.get(name) != current[name]]
    if changed:
        raise ValueError(
            f"{checkpoint} was trained with different {changed}; resuming would not reproduce the "
            "run. Use a new run_dir, or delete its checkpoints to start over."
        )


@torch.no_grad()
def evaluate(model, sampler: ShardSampler, batches: int, device, precision: str) -> float:
    """Mean loss over the first `batches` batches of `sampler` (the same ones every time)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for position in range(batches):
        x, y = sampler.batch_at(position, device)
        with autocast_context(device, precision):
            total += float(cross_entropy(model(x), y))
    model.train(was_training)
    return total / batches


def train(
    config: TrainConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    progress: Callable[[dict], None] | None = None,
    tokenizer_dir: str | Path | None = None,
    quiet: bool = False,
) -> dict:
    """Trains (or resumes) a TransformerLM on the token shards in data_dir; returns its stats.

    Writes into run_dir: checkpoints/step_*/ (resumable), model/ (config.json + model.pt, the
    final weights for later stages), log.jsonl, loss_curve.png. `progress` receives every log
    record (a dict with kind "train" or "eval"). With `tokenizer_dir` (vocab.json, merges.txt)
    the stats include sample generations.
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    index = read_index(data_dir)
    model_config = config.model
    if model_config.vocab_size == 0:
        model_config = dataclasses.replace(model_config, vocab_size=index["vocab_size"])
    elif model_config.vocab_size < index["vocab_size"]:
        raise ValueError(
            f"model vocab_size={model_config.vocab_size} is smaller than the shards' "
            f"vocab_size={index['vocab_size']} ({data_dir}); set it to 0 to take the shards' size"
        )
    config = dataclasses.replace(config, model=model_config)
    device = resolve_device(config.device)

    context_length = model_config.context_length
    train_sampler = ShardSampler(
        open_split(data_dir, "train", index), config.batch_size, context_length, config.seed
    )
    val_sampler = None
    if "val" in index["splits"]:
        val_shards = open_split(data_dir, "val", index)
        if any(len(s) > context_length for s in val_shards):
            val_sampler = ShardSampler(val_shards, config.batch_size, context_length, config.seed + 1)

    torch.manual_seed(config.seed)
    model = TransformerLM(model_config, device=device)
    optimizer = build_optimizer(model, config)
    step, tokens_seen = 0, 0
    checkpoints_dir = run_dir / "checkpoints"
    log = _RunLog(run_dir / "log.jsonl", progress, None, quiet)
    resumed_from = latest_checkpoint(checkpoints_dir)
    if resumed_from is not None:
        _check_resumable(json.loads((resumed_from / "config.json").read_text()), config,
                         resumed_from)
        state = read_checkpoint(resumed_from / "checkpoint.pt", map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["iteration"]
        tokens_seen = state["extra"]["tokens_seen"]
        train_sampler.load_state_dict(state["extra"]["sampler"])
        restore_rng_states(state["extra"]["rng"])
        log.truncate_after(step)
        if not quiet:
            print(f"resuming from {resumed_from} at step {step}", flush=True)
    elif log.path.exists():
        log.path.unlink()  # a log without checkpoints belongs to a run that left nothing
    log.wandb_run = _start_wandb(config, run_dir)
    compiled = torch.compile(model) if config.compile else model

    def checkpoint() -> Path:
        trainer_state = {
            "tokens_seen": tokens_seen, "sampler": train_sampler.state_dict(), "rng": rng_states(),
        }
        return write_training_checkpoint(
            checkpoints_dir, step, model, optimizer, config.to_dict(), trainer_state,
            keep=config.keep_checkpoints,
        )

    def evaluate_and_log() -> float | None:
        if val_sampler is None:
            return None
        val_loss = evaluate(compiled, val_sampler, config.eval_batches, device, config.precision)
        log.write({"kind": "eval", "step": step, "val_loss": val_loss, "tokens_seen": tokens_seen})
        return val_loss

    start_step = step
    train_seconds, timed_tokens = 0.0, 0
    interval_losses: list[float] = []
    with _SigtermFlag() as sigterm:
        while step < config.max_steps:
            if sigterm.received:
                raise TrainingInterrupted(step, checkpoint())
            started = time.perf_counter()
            lr = get_lr_cosine_schedule(
                step + 1, config.max_lr, config.min_lr, config.warmup_steps,
                config.resolved_cosine_steps,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for _ in range(config.grad_accum_steps):
                x, y = train_sampler.next_batch(device)
                with autocast_context(device, config.precision):
                    loss = cross_entropy(compiled(x), y) / config.grad_accum_steps
                loss.backward()
                loss_sum += loss.detach()
            loss_value = float(loss_sum)
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"training loss became {loss_value} at step {step + 1} (lr {lr:.3g}); the "
                    f"last checkpoint is {latest_checkpoint(checkpoints_dir)}. Lower max_lr, "
                    "raise warmup_steps, or check the data."
                )
            grad_norm = None
            if config.grad_clip > 0:
                grad_norm = gradient_clipping(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += config.tokens_per_step
            interval_losses.append(loss_value)
            elapsed = time.perf_counter() - started
            if step > start_step + 1 or config.max_steps - start_step == 1:
                # the first step of a session pays for compilation and warm-up
                train_seconds += elapsed
                timed_tokens += config.tokens_per_step
            if step % config.log_interval == 0 or step == config.max_steps:
                record = {
                    "kind": "train", "step": step, "loss": sum(interval_losses) / len(interval_losses),
                    "lr": lr, "tokens_seen": tokens_seen,
                    "tokens_per_s": timed_tokens / train_seconds if train_seconds else None,
                }
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                log.write(record)
                interval_losses = []
            if step % config.eval_interval == 0 and step != config.max_steps:
                evaluate_and_log()
            if step % config.checkpoint_interval == 0 or step == config.max_steps:
                checkpoint()

    records = read_log(log.path)
    final_evals = [r for r in records if r["kind"] == "eval" and r["step"] == step]
    val_loss = final_evals[-1]["val_loss"] if final_evals else evaluate_and_log()
    model_dir = save_model(model, run_dir / "model")
    records = read_log(log.path)
    train_records = [r for r in records if r["kind"] == "train"]
    tokens_per_second = timed_tokens / train_seconds if train_seconds else None
    mfu = None
    if device.type == "cuda" and tokens_per_second:
        mfu = model.flops_per_token() * tokens_per_second / config.peak_flops
    stats = {
        "parameters": model.num_parameters(),
        "non_embedding_parameters": model.num_parameters(exclude_embeddings=True),
        "steps": step,
        "resumed_from_step": start_step if resumed_from is not None else None,
        "tokens_trained": tokens_seen,
        "first_train_loss": train_records[0]["loss"] if train_records else None,
        "final_train_loss": train_records[-1]["loss"] if train_records else None,
        "final_val_loss": val_loss,
        "tokens_per_second": tokens_per_second,
        "mfu": mfu,
        "train_seconds": train_seconds,
        "device": str(device),
        "model_dir": str(model_dir),
        "checkpoint_dir": str(latest_checkpoint(checkpoints_dir)),
        "log_path": str(log.path),
        "loss_curve_png": None,
        "samples": [],
    }
    png = plot_loss_curve(records, run_dir / "loss_curve.png")
    stats["loss_curve_png"] = str(png) if png else None
    if tokenizer_dir is not None:
        tokenizer = load_tokenizer(Path(tokenizer_dir))
        stats["samples"] = sample_generations(model, tokenizer, config, index["eot_token_id"])
    if log.wandb_run is not None:
        log.wandb_run.summary.update({k: v for k, v in stats.items() if isinstance(v, int | float)})
        log.wandb_run.finish()
    return stats
