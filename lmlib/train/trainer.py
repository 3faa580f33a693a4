"""The training loop: `train(config, data_dir, run_dir)` is the one entry point.

Notable:
- resumes automatically from the newest checkpoint in run_dir/checkpoints, and ends with
  bitwise the same weights as an uninterrupted run on CPU (batches are a pure function of
  (seed, batch number); optimizer, RNG and sampler state are checkpointed);
- SIGTERM (preemption) and SIGINT (Ctrl-C, a cancelled Dagster run) write a checkpoint and raise
  `TrainingInterrupted` (the CLI exits with 143 or 130), so a stopped run never looks finished
  and resumes from the step where it stopped (lmlib.train.interrupts);
- a NaN or inf loss raises `FloatingPointError` naming the step;
- bf16 autocast on CUDA, optional torch.compile, periodic validation loss, console progress,
  run_dir/log.jsonl, and wandb only when a project is configured (offline by default);
- under torchrun, strategy ddp, zero1 or fsdp (lmlib.dist, applied from outside the model):
  each rank reads its slice of every global batch, rank 0 alone logs and writes the final
  model, the ranks agree on NaN and stop signals through one all-reduce per step, and ZeRO-1/FSDP
  checkpoints are sharded per rank (see lmlib.train.checkpoint).
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
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
    CHECKPOINT_FILE,
    is_sharded_checkpoint,
    latest_checkpoint,
    rank_file_name,
    read_sharded_index,
    read_training_state,
    restore_rng_states,
    rng_states,
    step_directory_name,
    write_sharded_training_checkpoint,
    write_training_checkpoint,
)
from lmlib.train.config import RESUME_INVARIANT_FIELDS, TrainConfig
from lmlib.train.data import ShardSampler, check_device, open_split, read_index
from lmlib.train.interrupts import STOP_SIGNALS, StopSignals, TrainingInterrupted
from lmlib.train.report import load_tokenizer, plot_loss_curve, read_log, sample_generations


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA under "auto" or "bf16"; nothing (fp32) otherwise."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def build_optimizer(model: torch.nn.Module, config: TrainConfig, sharded: bool = False):
    """AdamW with weight decay on matrices only; norm gains are left alone.

    `model` may be an FSDP wrapper (its shards keep their weights' dimensions). With
    `sharded`, a ZeRO-1 ShardedOptimizer around AdamW.
    """
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    kwargs = dict(lr=config.max_lr, betas=(config.beta1, config.beta2), eps=config.adam_eps)
    if sharded:
        from lmlib.dist import ShardedOptimizer

        return ShardedOptimizer(groups, AdamW, **kwargs)
    return AdamW(groups, **kwargs)


class _RunLog:
    """Appends records to log.jsonl, prints them, and forwards them to wandb and `progress`."""

    def __init__(self, path: Path, progress: Callable[[dict], None] | None, wandb_run, quiet: bool,
                 enabled: bool = True):
        self.path, self.progress, self.wandb_run, self.quiet = path, progress, wandb_run, quiet
        self.enabled = enabled  # False on ranks other than 0
        self.started = time.perf_counter()

    def status(self, message: str) -> None:
        """What the run is doing before and between steps, with the time since it started;
        printed and passed to `progress` (kind "status"), not written to log.jsonl."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        if not self.quiet:
            print(f"[status +{elapsed:.1f}s] {message}", flush=True)
        if self.progress is not None:
            self.progress({"kind": "status", "message": message, "elapsed_s": round(elapsed, 2)})

    def truncate_after(self, step: int) -> None:
        """Drops records a killed run wrote after its last checkpoint."""
        if not self.enabled:
            return
        kept = [r for r in read_log(self.path) if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
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


def first_step_work(config: TrainConfig, device: torch.device) -> str:
    """What the first step pays for beyond its arithmetic, for the status line."""
    work = []
    if config.compile:
        work.append("compiling the model with torch.compile")
    if device.type == "cuda":
        work.append("compiling and autotuning the Triton kernels (cached for later runs)")
    return ": " + " and ".join(work) if work else ""


@contextlib.contextmanager
def _kernel_reports(log: _RunLog):
    """Forwards lmlib's kernel log lines (autotuning: which kernel, which shape, how long) to
    the run's status while it trains."""

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log.status(record.getMessage())

    logger = logging.getLogger("lmlib.kernels")
    handler, level = Forward(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


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
    # through the dataclass, so that a field added since the checkpoint compares as its default
    saved = TrainConfig.from_dict(saved).to_dict()
    current = config.to_dict()
    changed = [name for name in RESUME_INVARIANT_FIELDS if saved.get(name) != current[name]]
    if changed:
        raise ValueError(
            f"{checkpoint} was trained with different {changed}; resuming would not reproduce the "
            "run. Use a new run_dir, or delete its checkpoints to start over."
        )


@torch.no_grad()
def evaluate(model, sampler: ShardSampler, batches: int, device, precision: str) -> float:
    """Mean loss over the first `batches` batches of `sampler` (the same ones every time);
    under a process group, the mean over every rank's slice of them."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    for position in range(batches):
        x, y = sampler.batch_at(position, device)
        with autocast_context(device, precision):
            total += cross_entropy(model(x), y).float()
    model.train(was_training)
    if sampler.world_size > 1:
        torch.distributed.all_reduce(total)
        total /= sampler.world_size
    return float(total) / batches


class _Parallelism:
    """The strategy's wrapped model, optimizer and calls, so the loop reads the same for all."""

    def __init__(self, config: TrainConfig, model: TransformerLM, device: torch.device,
                 world_size: int, rank: int):
        from lmlib.dist import DDP, FSDP, apply_activation_checkpointing

        self.strategy, self.rank, self.world_size = config.strategy, rank, world_size
        apply_activation_checkpointing(model, config.activation_checkpointing,
                                       config.activation_checkpointing_every_k)
        runnable = torch.compile(model) if config.compile else model
        self.model = model
        if config.strategy == "none":
            self.wrapped = runnable
        elif config.strategy in ("ddp", "zero1"):
            self.wrapped = DDP(runnable, bucket_size_mb=config.bucket_size_mb)
        else:
            # weights are cast to bf16 before the all-gather when the loop autocasts to bf16
            uses_bf16 = not isinstance(autocast_context(device, config.precision),
                                       contextlib.nullcontext)
            self.wrapped = FSDP(model, compute_dtype=torch.bfloat16 if uses_bf16 else None)
        self.optimizer = build_optimizer(
            self.wrapped if config.strategy == "fsdp" else model, config,
            sharded=config.strategy == "zero1",
        )

    @property
    def sharded_checkpoints(self) -> bool:
        return self.strategy in ("zero1", "fsdp")

    def start_step(self) -> None:
        if self.strategy != "none":
            self.wrapped.on_train_batch_start()

    def no_sync(self, last_micro_batch: bool):
        if self.strategy in ("ddp", "zero1") and not last_micro_batch:
            return self.wrapped.no_sync()
        return contextlib.nullcontext()

    def finish_gradients(self) -> None:
        if self.strategy != "none":
            self.wrapped.finish_gradient_synchronization()

    def clip(self, max_norm: float):
        if self.strategy == "fsdp":
            from lmlib.dist import clip_gradients

            shards = [p for p in self.wrapped.parameters()
                      if not any(p is q for q in self.wrapped.replicated_parameters)]
            return clip_gradients(shards, self.wrapped.replicated_parameters, max_norm)
        return gradient_clipping(self.model.parameters(), max_norm)

    def local_state(self) -> dict:
        """This rank's part of a sharded checkpoint: weights (FSDP shards; rank 0's full model
        under ZeRO-1) and its optimizer state."""
        if self.strategy == "fsdp":
            model_state = self.wrapped.sharded_state_dict()
        else:
            model_state = self.model.state_dict() if self.rank == 0 else {}
        return {"model": model_state, "optimizer": self.optimizer.state_dict()}

    def sharded_index(self) -> dict:
        index = {"strategy": self.strategy}
        if self.strategy == "fsdp":
            names = {id(p): name for name, p in self.wrapped.named_parameters()}
            index["layout"] = self.wrapped.sharding_layout()
            index["optimizer_parameter_names"] = [
                names[id(p)] for group in self.optimizer.param_groups for p in group["params"]
            ]
        return index

    def load(self, state: dict, rank0_model_state: dict | None) -> None:
        if self.strategy == "fsdp":
            self.wrapped.load_sharded_state_dict(state["model"])
        else:
            self.model.load_state_dict(rank0_model_state if rank0_model_state is not None
                                       else state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def full_model(self, model_config, device) -> TransformerLM | None:
        """The whole model on rank 0 (None elsewhere); collective under FSDP."""
        if self.strategy != "fsdp":
            return self.model if self.rank == 0 else None
        full = self.wrapped.gather_full_params()
        if self.rank != 0:
            return None
        exported = TransformerLM(model_config, device=device)
        exported.load_state_dict(full)
        return exported


def _join_process_group(config: TrainConfig) -> tuple[int, int, torch.device | None, bool]:
    """(rank, world size, device or None, whether we created the group) for config.strategy."""
    if config.strategy == "none":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                f"strategy none under torchrun with WORLD_SIZE={os.environ['WORLD_SIZE']}: every "
                "process would train alone into the same run_dir; set strategy ddp, zero1 or fsdp"
            )
        return 0, 1, None, False
    from lmlib.dist.runtime import init_distributed

    created = not torch.distributed.is_initialized()
    environment = init_distributed(config.device)
    return environment.rank, environment.world_size, environment.device, created


def _barrier() -> None:
    from lmlib.dist.runtime import barrier

    barrier()


def _check_same_world(saved_world_size: int, saved_strategy: str, world_size: int,
                      strategy: str, checkpoint: Path) -> None:
    if saved_world_size != world_size or saved_strategy != strategy:
        raise ValueError(
            f"{checkpoint} was written by {saved_world_size} process(es) with strategy "
            f"{saved_strategy!r}; this run has {world_size} with {strategy!r}. Resume with the "
            "same torchrun --nproc_per_node/--nnodes and strategy, or merge a sharded checkpoint "
            "with lmlib.train.checkpoint.consolidate_checkpoint and resume single-process."
        )


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
    the stats include sample generations. With a distributed strategy, every rank calls this
    (torchrun); rank 0 writes the files, logs, and returns the full stats. Deterministic kernels
    are on for the run when config.deterministic says so (by default on CPU, where the embedding
    backward otherwise sums in a thread-dependent order), so runs and resumes are bitwise equal.
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    rank, world_size, distributed_device, created_group = _join_process_group(config)
    is_main = rank == 0
    quiet = quiet or not is_main
    deterministic = config.deterministic
    if deterministic is None:
        deterministic = (distributed_device or resolve_device(config.device)).type == "cpu"
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        return _train(config, data_dir, run_dir, progress if is_main else None, tokenizer_dir,
                      quiet, rank, world_size, distributed_device)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        if created_group:
            from lmlib.dist.runtime import destroy_distributed

            destroy_distributed()


def _train(config, data_dir, run_dir, progress, tokenizer_dir, quiet, rank, world_size,
           distributed_device) -> dict:
    is_main = rank == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _RunLog(run_dir / "log.jsonl", progress, None, quiet, enabled=is_main)
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
    device = distributed_device or resolve_device(config.device)

    context_length = model_config.context_length
    train_sampler = ShardSampler(
        open_split(data_dir, "train", index), config.batch_size, context_length, config.seed,
        rank=rank, world_size=world_size,
    )
    val_sampler = None
    if "val" in index["splits"]:
        val_shards = open_split(data_dir, "val", index)
        if any(len(s) > context_length for s in val_shards):
            val_sampler = ShardSampler(val_shards, config.batch_size, context_length,
                                       config.seed + 1, rank=rank, world_size=world_size)

    log.status(f"token shards {data_dir}: {train_sampler.num_tokens:,} training tokens, "
               f"{index['vocab_size']:,} token vocabulary")

    torch.manual_seed(config.seed)
    model = TransformerLM(model_config, device=device)
    parallel = _Parallelism(config, model, device, world_size, rank)
    compiled, optimizer = parallel.wrapped, parallel.optimizer
    log.status(f"model: {model.num_parameters():,} parameters on {device} "
               f"(strategy {config.strategy}, {world_size} process(es))")
    tokens_per_step = config.tokens_per_step * world_size
    step, tokens_seen = 0, 0
    checkpoints_dir = run_dir / "checkpoints"
    resumed_from = latest_checkpoint(checkpoints_dir)
    if resumed_from is not None:
        _check_resumable(json.loads((resumed_from / "config.json").read_text()), config,
                         resumed_from)
        if is_sharded_checkpoint(resumed_from):
            sharded = read_sharded_index(resumed_from)
            _check_same_world(sharded["world_size"], sharded["strategy"], world_size,
                              config.strategy, resumed_from)
            state = read_training_state(resumed_from / rank_file_name(rank), device)
            rank0_model = None
            if config.strategy == "zero1" and rank != 0:
                rank0_model = read_training_state(resumed_from / rank_file_name(0),
                                                  device)["model"]
        else:
            state = read_training_state(resumed_from / CHECKPOINT_FILE, device)
            _check_same_world(state["extra"].get("world_size", 1),
                              state["extra"].get("strategy", "none"), world_size,
                              config.strategy, resumed_from)
            rank0_model = None
        parallel.load(state, rank0_model)
        step = state["iteration"]
        tokens_seen = state["extra"]["tokens_seen"]
        train_sampler.load_state_dict(state["extra"]["sampler"])
        restore_rng_states(state["extra"]["rng"])
        log.truncate_after(step)
        log.status(f"resuming from {resumed_from} at step {step}")
    elif is_main and log.path.exists():
        log.path.unlink()  # a log without checkpoints belongs to a run that left nothing
    if is_main:
        log.wandb_run = _start_wandb(config, run_dir)

    def checkpoint() -> Path:
        trainer_state = {
            "tokens_seen": tokens_seen, "sampler": train_sampler.state_dict(), "rng": rng_states(),
            "world_size": world_size, "strategy": config.strategy,
        }
        if parallel.sharded_checkpoints:
            state = {**parallel.local_state(), "iteration": step, "extra": trainer_state}
            return write_sharded_training_checkpoint(
                checkpoints_dir, step, rank, world_size, state, config.to_dict(), trainer_state,
                parallel.sharded_index(), _barrier, keep=config.keep_checkpoints,
            )
        path = checkpoints_dir / step_directory_name(step)
        if is_main:
            path = write_training_checkpoint(
                checkpoints_dir, step, model, optimizer, config.to_dict(), trainer_state,
                keep=config.keep_checkpoints,
            )
        if world_size > 1:
            _barrier()
        return path

    def evaluate_and_log() -> float | None:
        if val_sampler is None:
            return None
        val_loss = evaluate(compiled, val_sampler, config.eval_batches, device, config.precision)
        log.write({"kind": "eval", "step": step, "val_loss": val_loss, "tokens_seen": tokens_seen})
        return val_loss

    start_step = step
    train_seconds, timed_tokens = 0.0, 0
    interval_losses: list[float] = []
    stop_requested: str | None = None  # the name of the signal that stops every rank
    if step < config.max_steps:
        log.status(f"first step{first_step_work(config, device)}")
    first_step_seconds = None
    with StopSignals() as stop_signals, _kernel_reports(log):
        while step < config.max_steps:
            if world_size == 1 and stop_signals.received:
                stop_requested = stop_signals.received.name
            if stop_requested:
                raise TrainingInterrupted(step, checkpoint(), stop_requested)
            started = time.perf_counter()
            lr = get_lr_cosine_schedule(
                step + 1, config.max_lr, config.min_lr, config.warmup_steps,
                config.resolved_cosine_steps,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            parallel.start_step()
            loss_sum = torch.zeros((), device=device)
            for micro_step in range(config.grad_accum_steps):
                x, y = train_sampler.next_batch(device)
                with parallel.no_sync(micro_step == config.grad_accum_steps - 1):
                    with autocast_context(device, config.precision):
                        loss = cross_entropy(compiled(x), y) / config.grad_accum_steps
                    loss.backward()
                loss_sum += loss.detach()
            parallel.finish_gradients()
            if world_size > 1:
                # one all-reduce: the mean loss, and whether any rank got SIGTERM or SIGINT
                received = stop_signals.received
                agreed = torch.stack([loss_sum.float(), *(
                    torch.tensor(float(received == number), device=device)
                    for number in STOP_SIGNALS)])
                torch.distributed.all_reduce(agreed)
                loss_sum = agreed[0] / world_size
                stopped_by = [number.name for number, count in zip(STOP_SIGNALS, agreed[1:])
                              if count > 0]
                stop_requested = stopped_by[0] if stopped_by else None
            loss_value = float(loss_sum)
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"training loss became {loss_value} at step {step + 1} (lr {lr:.3g}); the "
                    f"last checkpoint is {latest_checkpoint(checkpoints_dir)}. Lower max_lr, "
                    "raise warmup_steps, or check the data."
                )
            grad_norm = None
            if config.grad_clip > 0:
                grad_norm = parallel.clip(config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += tokens_per_step
            interval_losses.append(loss_value)
            elapsed = time.perf_counter() - started
            if first_step_seconds is None:
                first_step_seconds = time.perf_counter() - log.started
                log.status(f"first step done in {elapsed:.1f} s; training")
            if step > start_step + 1 or config.max_steps - start_step == 1:
                # the first step of a session pays for compilation and warm-up
                train_seconds += elapsed
                timed_tokens += tokens_per_step
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

    records = read_log(log.path) if is_main else []
    final_evals = [r for r in records if r["kind"] == "eval" and r["step"] == step]
    if world_size > 1:  # every rank must take part in the final evaluation, or none
        has_final = torch.tensor(float(bool(final_evals)), device=device)
        torch.distributed.broadcast(has_final, src=0)
        final_evals = final_evals or ([{"val_loss": None}] if bool(has_final) else [])
    val_loss = final_evals[-1]["val_loss"] if final_evals else evaluate_and_log()
    full_model = parallel.full_model(model_config, device)
    tokens_per_second = timed_tokens / train_seconds if train_seconds else None
    whole = full_model if full_model is not None else TransformerLM(model_config, device="meta")
    mfu = None
    if device.type == "cuda" and tokens_per_second:
        mfu = whole.flops_per_token() * tokens_per_second / (config.peak_flops * world_size)
    stats = {
        "parameters": whole.num_parameters(),
        "non_embedding_parameters": whole.num_parameters(exclude_embeddings=True),
        "steps": step,
        "resumed_from_step": start_step if resumed_from is not None else None,
        "tokens_trained": tokens_seen,
        "first_train_loss": None,
        "final_train_loss": None,
        "final_val_loss": val_loss,
        "tokens_per_second": tokens_per_second,
        "tokens_per_second_per_device": tokens_per_second / world_size
        if tokens_per_second else None,
        "mfu": mfu,
        "train_seconds": train_seconds,
        "seconds_to_first_step": first_step_seconds,
        "device": str(device),
        "strategy": config.strategy,
        "world_size": world_size,
        "rank": rank,
        "model_dir": None,
        "checkpoint_dir": str(latest_checkpoint(checkpoints_dir)),
        "log_path": str(log.path),
        "loss_curve_png": None,
        "samples": [],
    }
    if is_main:
        stats["model_dir"] = str(save_model(full_model, run_dir / "model"))
        records = read_log(log.path)
        train_records = [r for r in records if r["kind"] == "train"]
        if train_records:
            stats["first_train_loss"] = train_records[0]["loss"]
            stats["final_train_loss"] = train_records[-1]["loss"]
        png = plot_loss_curve(records, run_dir / "loss_curve.png")
        stats["loss_curve_png"] = str(png) if png else None
        if tokenizer_dir is not None:
            tokenizer = load_tokenizer(Path(tokenizer_dir))
            stats["samples"] = sample_generations(full_model, tokenizer, config,
                                                  index["eot_token_id"])
        if log.wandb_run is not None:
            log.wandb_run.summary.update(
                {k: v for k, v in stats.items() if isinstance(v, int | float)})
            log.wandb_run.finish()
    if world_size > 1:
        _barrier()
    return stats
