"""The pretraining loop: `train(config, data_dir, run_dir)` is the one entry point.

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
- under torchrun, strategy ddp, zero1 or fsdp (lmlib.distributed, applied from outside the
  model): each rank reads its slice of every global batch, rank 0 alone logs and writes the
  final model, the ranks agree on NaN and stop signals through one all-reduce per step, and
  ZeRO-1/FSDP checkpoints are sharded per rank (see lmlib.train.checkpoint).

The run is wired from parts a fine-tuning or RL loop reuses: the parallel strategy
(lmlib.distributed.strategy), the checkpoint manager (lmlib.train.checkpoint), the run log
(lmlib.train.run_log) and stop signals (lmlib.train.interrupts). `train` reads as setup
(`PretrainingRun(...)`), `resume`, `run_steps`, `finish`.
"""

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lmlib.artifacts import MANIFEST_NAME, sha256_file
from lmlib.distributed.strategy import ProcessPlacement, join_process_group, make_strategy
from lmlib.formats import LOSS_CURVE_PLOT_FILE, TRAIN_LOG_FILE
from lmlib.model.loss import cross_entropy
from lmlib.model.saved_model import save_model
from lmlib.model.transformer import ModelConfig, TransformerLM
from lmlib.optim import AdamW, get_lr_cosine_schedule
from lmlib.stage import StageResult
from lmlib.train.checkpoint import CheckpointManager
from lmlib.train.config import TrainConfig
from lmlib.train.data import ShardSampler, check_device, open_split, read_index
from lmlib.train.interrupts import StopSignals, TrainingInterrupted, all_reduce_with_stop_signal
from lmlib.train.report import load_tokenizer, plot_loss_curve, sample_generations
from lmlib.train.run_log import RunLog, kernel_reports, start_wandb

__all__ = ["PretrainingRun", "TrainingInterrupted", "evaluate", "train"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 on CUDA under "auto", and under "bf16"; None (fp32) otherwise."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast_context(device: torch.device, precision: str):
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_optimizer(strategy, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only; norm gains are left alone.

    Over the strategy's parameters (FSDP's shards keep their weights' dimensions); the strategy
    shards it under ZeRO-1.
    """
    module = strategy.optimized_module
    decay = [p for p in module.parameters() if p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return strategy.make_optimizer(groups, AdamW, lr=config.max_lr,
                                   betas=(config.beta1, config.beta2), eps=config.adam_eps)


def input_fingerprints(inputs: dict[str, Path | None]) -> dict[str, str]:
    """{name: sha256 of the directory's manifest.json} for the inputs that are published
    artifacts (lineage for the experiment tracker); others are left out."""
    found = {}
    for name, directory in inputs.items():
        manifest = Path(directory) / MANIFEST_NAME if directory is not None else None
        if manifest is not None and manifest.is_file():
            found[name] = sha256_file(manifest)
    return found


def first_step_work(config: TrainConfig, device: torch.device) -> str:
    """What the first step pays for beyond its arithmetic, for the status line."""
    work = []
    if config.compile:
        work.append("compiling the model with torch.compile")
    if device.type == "cuda":
        work.append("compiling and autotuning the Triton kernels (cached for later runs)")
    return ": " + " and ".join(work) if work else ""


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


def model_config_for_shards(model: ModelConfig, index: dict, data_dir: Path) -> ModelConfig:
    """`model` with the shards' vocabulary size when it leaves it at 0."""
    if model.vocab_size == 0:
        return dataclasses.replace(model, vocab_size=index["vocab_size"])
    if model.vocab_size < index["vocab_size"]:
        raise ValueError(
            f"model vocab_size={model.vocab_size} is smaller than the shards' "
            f"vocab_size={index['vocab_size']} ({data_dir}); set it to 0 to take the shards' size"
        )
    return model


class Throughput:
    """Training seconds and tokens of this session, leaving out its first step (it pays for
    compilation and warm-up) unless that step is the only one."""

    def __init__(self, start_step: int, max_steps: int):
        self.start_step, self.max_steps = start_step, max_steps
        self.seconds, self.tokens = 0.0, 0

    def add(self, step: int, elapsed: float, tokens: int) -> None:
        if step > self.start_step + 1 or self.max_steps - self.start_step == 1:
            self.seconds += elapsed
            self.tokens += tokens

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None


class PretrainingRun:
    """One call of `train`: the setup in the constructor, then `resume`, `run_steps`, `finish`.

    Its state between steps is `step` and `tokens_seen` (with the sampler's position, the
    optimizer and the RNG states, what a checkpoint holds).
    """

    def __init__(self, config: TrainConfig, data_dir: Path, run_dir: Path,
                 placement: ProcessPlacement, progress: Callable[[dict], None] | None,
                 quiet: bool):
        self.run_dir, self.data_dir = run_dir, data_dir
        self.rank, self.world_size = placement.rank, placement.world_size
        self.is_main = self.rank == 0
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(run_dir / TRAIN_LOG_FILE, progress, None, quiet, enabled=self.is_main)
        self.index = read_index(data_dir)
        model_config = model_config_for_shards(config.model, self.index, data_dir)
        self.config = config = dataclasses.replace(config, model=model_config)
        self.device = device = placement.device or resolve_device(config.device)
        self.train_sampler, self.val_sampler = self._open_samplers()
        self.log.status(f"token shards {data_dir}: {self.train_sampler.num_tokens:,} training "
                        f"tokens, {self.index['vocab_size']:,} token vocabulary")

        torch.manual_seed(config.seed)
        model = TransformerLM(model_config, device=device)
        self.strategy = make_strategy(
            config.strategy, model, rank=self.rank, world_size=self.world_size,
            compile=config.compile, bucket_size_mb=config.bucket_size_mb,
            # weights are cast to bf16 before FSDP's all-gather when the loop autocasts to bf16
            compute_dtype=autocast_dtype(device, config.precision),
            activation_checkpointing=config.activation_checkpointing,
            activation_checkpointing_every_k=config.activation_checkpointing_every_k,
        )
        self.optimizer = build_optimizer(self.strategy, config)
        self.log.status(f"model: {model.num_parameters():,} parameters on {device} "
                        f"(strategy {config.strategy}, {self.world_size} process(es))")
        self.checkpoints = CheckpointManager(
            run_dir / "checkpoints", self.strategy, config.to_dict(),
            keep=config.keep_checkpoints, check_config=config.check_can_resume,
        )
        self.tokens_per_step = config.tokens_per_step * self.world_size
        self.step, self.tokens_seen = 0, 0
        self.resumed_from: Path | None = None
        self.throughput = Throughput(0, config.max_steps)
        self.seconds_to_first_step: float | None = None

    def _open_samplers(self) -> tuple[ShardSampler, ShardSampler | None]:
        """The training sampler, and a validation one when the shards hold a usable val split."""
        config, index = self.config, self.index
        context_length = config.model.context_length
        placement = {"rank": self.rank, "world_size": self.world_size}
        train_sampler = ShardSampler(open_split(self.data_dir, "train", index), config.batch_size,
                                     context_length, config.seed, **placement)
        val_sampler = None
        if "val" in index["splits"]:
            val_shards = open_split(self.data_dir, "val", index)
            if any(len(s) > context_length for s in val_shards):
                val_sampler = ShardSampler(val_shards, config.batch_size, context_length,
                                           config.seed + 1, **placement)
        return train_sampler, val_sampler

    # --- resume -----------------------------------------------------------------------------

    def resume(self, inputs: dict[str, Path | None] | None = None) -> None:
        """Continues from the newest checkpoint if there is one, then opens wandb (its config
        records the run's config and the manifest hashes of `inputs`, {name: directory})."""
        resumed = self.checkpoints.resume(self.optimizer, self.device)
        if resumed is not None:
            self.resumed_from, self.step = resumed.path, resumed.step
            self.tokens_seen = resumed.trainer_state["tokens_seen"]
            self.train_sampler.load_state_dict(resumed.trainer_state["sampler"])
            self.log.truncate_after(self.step)
            self.log.status(f"resuming from {resumed.path} at step {self.step}")
        else:
            self.log.discard()  # a log without checkpoints belongs to a run that left nothing
        self.throughput = Throughput(self.step, self.config.max_steps)
        if self.is_main:
            tracked = {**self.config.to_dict(), "inputs": input_fingerprints(inputs or {})}
            self.log.wandb_run = start_wandb(self.config.wandb_project, self.config.wandb_mode,
                                             self.run_dir, tracked)

    def write_checkpoint(self) -> Path:
        return self.checkpoints.save(self.step, self.optimizer, {
            "tokens_seen": self.tokens_seen, "sampler": self.train_sampler.state_dict()})

    # --- the loop ---------------------------------------------------------------------------

    def run_steps(self) -> None:
        """Steps until max_steps, logging, evaluating and checkpointing on their intervals; a
        stop signal writes a checkpoint and raises TrainingInterrupted."""
        config = self.config
        if self.step < config.max_steps:
            self.log.status(f"starting the first step{first_step_work(config, self.device)}")
        interval_losses: list[float] = []
        stop_requested: str | None = None  # the name of the signal that stops every rank
        with StopSignals() as stop_signals, kernel_reports(self.log):
            while self.step < config.max_steps:
                if self.world_size == 1 and stop_signals.received:
                    stop_requested = stop_signals.received.name
                if stop_requested:
                    raise TrainingInterrupted(self.step, self.write_checkpoint(), stop_requested)
                started = time.perf_counter()
                lr = get_lr_cosine_schedule(
                    self.step + 1, config.max_lr, config.min_lr, config.warmup_steps,
                    config.resolved_cosine_steps,
                )
                loss, grad_norm, stop_requested = self._optimizer_step(lr, stop_signals)
                self.step += 1
                self.tokens_seen += self.tokens_per_step
                interval_losses.append(loss)
                self._account_time(time.perf_counter() - started)
                if self.step % config.log_interval == 0 or self.step == config.max_steps:
                    self._log_train(interval_losses, lr, grad_norm)
                    interval_losses = []
                if self.step % config.eval_interval == 0 and self.step != config.max_steps:
                    self.evaluate_and_log()
                if self.step % config.checkpoint_interval == 0 or self.step == config.max_steps:
                    self.write_checkpoint()

    def _optimizer_step(self, lr: float, stop_signals: StopSignals):
        """One optimizer step over grad_accum_steps micro-batches; returns the mean loss over
        the ranks, the gradient norm before clipping (None without clipping) and the stop
        signal any rank received (None if none did; always None single-process)."""
        config, strategy, optimizer = self.config, self.strategy, self.optimizer
        for group in optimizer.param_groups:
            group["lr"] = lr
        strategy.start_step()
        loss_sum = torch.zeros((), device=self.device)
        for micro_step in range(config.grad_accum_steps):
            x, y = self.train_sampler.next_batch(self.device)
            with strategy.no_sync(micro_step == config.grad_accum_steps - 1):
                with autocast_context(self.device, config.precision):
                    loss = cross_entropy(strategy.wrapped(x), y) / config.grad_accum_steps
                loss.backward()
            loss_sum += loss.detach()
        strategy.finish_gradients()
        stop_requested = None
        if self.world_size > 1:
            loss_sum, stop_requested = all_reduce_with_stop_signal(loss_sum,
                                                                   stop_signals.received)
            loss_sum = loss_sum / self.world_size
        loss_value = float(loss_sum)
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"training loss became {loss_value} at step {self.step + 1} (lr {lr:.3g}); the "
                f"last checkpoint is {self.checkpoints.latest()}. Lower max_lr, "
                "raise warmup_steps, or check the data."
            )
        grad_norm = None
        if config.grad_clip > 0:
            grad_norm = strategy.clip_gradients(config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, stop_requested

    def _account_time(self, elapsed: float) -> None:
        if self.seconds_to_first_step is None:
            self.seconds_to_first_step = time.perf_counter() - self.log.started
            self.log.status(f"first step done in {elapsed:.1f} s; training")
        self.throughput.add(self.step, elapsed, self.tokens_per_step)

    def _log_train(self, interval_losses: list[float], lr: float, grad_norm) -> None:
        record = {
            "kind": "train", "step": self.step,
            "loss": sum(interval_losses) / len(interval_losses),
            "lr": lr, "tokens_seen": self.tokens_seen,
            "tokens_per_s": self.throughput.tokens_per_second,
        }
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        self.log.write(record)

    def evaluate_and_log(self) -> float | None:
        if self.val_sampler is None:
            return None
        val_loss = evaluate(self.strategy.wrapped, self.val_sampler, self.config.eval_batches,
                            self.device, self.config.precision)
        self.log.write({"kind": "eval", "step": self.step, "val_loss": val_loss,
                        "tokens_seen": self.tokens_seen})
        return val_loss

    # --- finish -----------------------------------------------------------------------------

    def _final_val_loss(self) -> float | None:
        """The validation loss at the last step, evaluated now unless the log already has it."""
        final_evals = [r for r in self.log.records()
                       if r["kind"] == "eval" and r["step"] == self.step]
        if self.world_size > 1:  # every rank must take part in the final evaluation, or none
            has_final = torch.tensor(float(bool(final_evals)), device=self.device)
            torch.distributed.broadcast(has_final, src=0)
            final_evals = final_evals or ([{"val_loss": None}] if bool(has_final) else [])
        return final_evals[-1]["val_loss"] if final_evals else self.evaluate_and_log()

    def finish(self, tokenizer_dir: str | Path | None) -> "TrainResult":
        """Final evaluation, the exported model/, the loss curve and samples; the result."""
        config, device, world_size = self.config, self.device, self.world_size
        val_loss = self._final_val_loss()
        full_model = self.strategy.full_model(lambda: TransformerLM(config.model, device=device))
        tokens_per_second = self.throughput.tokens_per_second
        whole = full_model if full_model is not None else TransformerLM(config.model,
                                                                        device="meta")
        mfu = None
        if device.type == "cuda" and tokens_per_second:
            mfu = whole.flops_per_token() * tokens_per_second / (config.peak_flops * world_size)
        result = TrainResult(
            parameters=whole.num_parameters(),
            non_embedding_parameters=whole.num_parameters(exclude_embeddings=True),
            steps=self.step,
            resumed_from_step=self.throughput.start_step if self.resumed_from is not None
            else None,
            tokens_trained=self.tokens_seen,
            final_val_loss=val_loss,
            tokens_per_second=tokens_per_second,
            tokens_per_second_per_device=tokens_per_second / world_size
            if tokens_per_second else None,
            mfu=mfu,
            train_seconds=self.throughput.seconds,
            seconds_to_first_step=self.seconds_to_first_step,
            device=str(device),
            strategy=config.strategy,
            world_size=world_size,
            rank=self.rank,
            checkpoint_dir=self.checkpoints.latest(),
            log_path=self.log.path,
        )
        if self.is_main:
            self._write_outputs(result, full_model, tokenizer_dir)
        self.strategy.barrier()
        return result

    def _write_outputs(self, result: "TrainResult", full_model: TransformerLM,
                       tokenizer_dir: str | Path | None) -> None:
        """Rank 0: model/, the losses and loss curve, samples; fills them into `result`."""
        result.model_dir = save_model(full_model, self.run_dir / "model")
        records = self.log.records()
        train_records = [r for r in records if r["kind"] == "train"]
        if train_records:
            result.first_train_loss = train_records[0]["loss"]
            result.final_train_loss = train_records[-1]["loss"]
        result.loss_curve = plot_loss_curve(records, self.run_dir / LOSS_CURVE_PLOT_FILE)
        if tokenizer_dir is not None:
            tokenizer = load_tokenizer(Path(tokenizer_dir))
            result.samples = sample_generations(full_model, tokenizer, self.config,
                                                self.index["eot_token_id"])
        result.tracking = self.log.tracking_location()
        self.log.finish(result.to_dict())


@dataclasses.dataclass
class TrainResult(StageResult):
    """What a training run did: size, steps, losses, speed, where its files are. Rank 0 holds
    the complete result; other ranks leave the rank-0 fields (losses, samples) unset."""

    MANIFEST_COUNTS = ("parameters", "steps", "tokens_trained")

    parameters: int
    non_embedding_parameters: int
    steps: int
    tokens_trained: int
    resumed_from_step: int | None = None
    first_train_loss: float | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    tokens_per_second: float | None = None
    tokens_per_second_per_device: float | None = None
    mfu: float | None = None
    train_seconds: float = 0.0
    seconds_to_first_step: float | None = None
    device: str = "cpu"
    strategy: str = "none"
    world_size: int = 1
    rank: int = dataclasses.field(default=0, metadata={"show": False})
    model_dir: Path | None = None
    checkpoint_dir: Path | None = None
    log_path: Path | None = dataclasses.field(default=None, metadata={"show": False})
    loss_curve: Path | None = None
    tracking: str | None = None  # the wandb run's URL, or its offline directory
    samples: list[dict] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainResult":
        """The result back from its JSON form (the CLI's output, a Pipes message)."""
        paths = {"model_dir", "checkpoint_dir", "log_path", "loss_curve"}
        return cls(**{key: Path(value) if key in paths and value is not None else value
                      for key, value in values.items()})

    def to_json(self) -> dict:
        """JSON-ready: paths as text."""
        return {key: str(value) if isinstance(value, Path) else value
                for key, value in self.to_dict().items()}


def train(
    config: TrainConfig,
    data_dir: str | Path,
    run_dir: str | Path,
    progress: Callable[[dict], None] | None = None,
    tokenizer_dir: str | Path | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Trains (or resumes) a TransformerLM on the token shards in data_dir; returns its result.

    Writes into run_dir: checkpoints/step_*/ (resumable), model/ (config.json + model.pt, the
    final weights for later stages), log.jsonl, loss_curve.png. `progress` receives every log
    record (a dict with kind "train" or "eval"). With `tokenizer_dir` (vocab.json, merges.txt)
    the stats include sample generations. With a distributed strategy, every rank calls this
    (torchrun); rank 0 writes the files, logs, and returns the full stats. Deterministic kernels
    are on for the run when config.deterministic says so (by default on CPU, where the embedding
    backward otherwise sums in a thread-dependent order), so runs and resumes are bitwise equal.
    """
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    placement = join_process_group(config.strategy, config.device)
    is_main = placement.rank == 0
    deterministic = config.deterministic
    if deterministic is None:
        deterministic = (placement.device or resolve_device(config.device)).type == "cpu"
    try:
        with deterministic_kernels(deterministic):
            run = PretrainingRun(config, data_dir, run_dir, placement,
                                 progress if is_main else None, quiet or not is_main)
            run.resume({"token_shards": data_dir, "tokenizer": tokenizer_dir})
            run.run_steps()
            return run.finish(tokenizer_dir)
    finally:
        placement.leave()


@contextlib.contextmanager
def deterministic_kernels(enabled: bool):
    """torch's deterministic algorithms on (or off) inside the block, as they were after it."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
