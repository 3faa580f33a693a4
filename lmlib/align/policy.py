"""What every post-training loop shares: the policy, its optimizer, checkpoints that resume,
the run log, stop signals, and the finished model's directory.

Notable:
- the policy starts from a saved model directory (base_model, an SFT checkpoint, or a Hugging
  Face model loaded with lmlib.hf.load and saved with lmlib.model.save_model);
- the pretraining trainer's own parts do the work: lmlib.optim's AdamW, cosine schedule and
  gradient clipping, lmlib.train's CheckpointManager (model, optimizer, RNG states and the
  loop's own state at each checkpoint, resumed on the next call with the same run directory),
  RunLog (log.jsonl, console, progress callback) and StopSignals (a SIGTERM or Ctrl-C writes a
  checkpoint and raises TrainingInterrupted); deterministic kernels on CPU, as in pretraining;
- one process, one device: the loops alternate generation (lmlib.infer.Engine over the same
  weights) and gradient steps, which the distributed strategies do not wrap yet;
- `precision` as in pretraining: "auto" is bf16 on CUDA (autocast over the loops' forward
  passes, fp32 master weights and optimizer state, and a bf16 copy of the weights for the
  engine that every optimizer step refreshes) and fp32 on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlib.distributed import make_strategy
from lmlib.formats import TRAIN_LOG_FILE
from lmlib.infer import Engine
from lmlib.model.saved_model import load_model, save_model
from lmlib.model.transformer import TransformerLM
from lmlib.optim import AdamW, get_lr_cosine_schedule
from lmlib.train.checkpoint import CheckpointManager
from lmlib.train.interrupts import StopSignals, TrainingInterrupted
from lmlib.train.report import plot_loss_curve
from lmlib.train.run_log import RunLog
from lmlib.train.trainer import (
    autocast_context,
    autocast_dtype,
    deterministic_kernels,
    resolve_device,
)


@dataclass
class OptimizerConfig:
    """The optimizer settings every post-training loop has (its config embeds these fields)."""

    learning_rate: float = 1e-4
    min_learning_rate: float = 1e-5
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    checkpoint_interval: int = 50
    log_interval: int = 10
    precision: str = "auto"  # auto: bf16 autocast (and a bf16 engine) on CUDA, fp32 on CPU
    # None: deterministic kernels on CPU (bitwise reproducible runs and resumes), fast on CUDA
    deterministic: bool | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")


class PolicyRun:
    """The policy being trained and the machinery around its steps.

    `loop_state` is the loop's own JSON-able state (round, data position, metrics so far): it is
    saved with every checkpoint and restored by `resume`."""

    def __init__(self, model_dir: Path, run_dir: Path, config, total_steps: int,
                 progress: Callable[[dict], None] | None = None, quiet: bool = True):
        self.config, self.total_steps = config, total_steps
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.model: TransformerLM = load_model(model_dir, device=self.device)
        self.model.train()
        self.log = RunLog(self.run_dir / TRAIN_LOG_FILE, progress, None, quiet)
        self.strategy = make_strategy("none", self.model)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=config.learning_rate, betas=(0.9, 0.95))
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", self.strategy,
                                             _jsonable_config(config))
        self.step = 0
        self.loop_state: dict = {}
        self.seconds: dict[str, float] = {}
        self.engines: list[Engine] = []

    def engine(self, max_batch_size: int) -> Engine:
        """An engine over the policy, in the run's precision, kept in step with its weights."""
        engine = Engine(self.model, max_batch_size=max_batch_size,
                        dtype=autocast_dtype(self.device, self.config.precision))
        self.engines.append(engine)
        return engine

    def autocast(self):
        """The run's precision over a forward pass (bf16 autocast on CUDA under "auto")."""
        return autocast_context(self.device, self.config.precision)

    def resume(self) -> bool:
        """Continues from the newest checkpoint if there is one."""
        resumed = self.checkpoints.resume(self.optimizer, self.device)
        if resumed is None:
            self.log.discard()
            return False
        self.step = resumed.step
        self.loop_state = resumed.trainer_state.get("loop", {})
        self.log.truncate_after(self.step)
        self.log.status(f"resuming from {resumed.path} at step {self.step}")
        return True

    def learning_rate(self) -> float:
        config = self.config
        return get_lr_cosine_schedule(self.step + 1, config.learning_rate,
                                      config.min_learning_rate, config.warmup_steps,
                                      max(self.total_steps, config.warmup_steps + 1))

    def optimizer_step(self) -> float | None:
        """Clips, steps and zeroes the gradients the loop accumulated; returns the gradient
        norm before clipping (None without clipping)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        grad_norm = None
        if self.config.grad_clip > 0:
            grad_norm = float(self.strategy.clip_gradients(self.config.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        for engine in self.engines:
            engine.sync_weights()
        return grad_norm

    @contextlib.contextmanager
    def timed(self, part: str):
        """Adds the block's wall time to seconds[part] (generation against training)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - started

    def after_step(self, stop_signals: StopSignals, record: dict) -> None:
        """Logs on the interval, checkpoints on the interval and at the end, and turns a stop
        signal into a checkpoint and TrainingInterrupted."""
        config = self.config
        if self.step % config.log_interval == 0 or self.step == self.total_steps:
            self.log.write({"kind": "train", "step": self.step, **record})
        if stop_signals.received:
            path = self.write_checkpoint()
            raise TrainingInterrupted(self.step, path, stop_signals.received.name)
        if self.step % config.checkpoint_interval == 0 or self.step == self.total_steps:
            self.write_checkpoint()

    def write_checkpoint(self) -> Path:
        return self.checkpoints.save(self.step, self.optimizer, {"loop": self.loop_state})

    def finish(self, output_dir: Path) -> Path | None:
        """Writes the trained model (model/), the log and the loss curve into output_dir;
        returns the curve's path (None without matplotlib or records)."""
        output_dir = Path(output_dir)
        save_model(self.model, output_dir / "model")
        records = self.log.records() if (self.run_dir / TRAIN_LOG_FILE).exists() else []
        if records:
            (output_dir / TRAIN_LOG_FILE).write_text(
                (self.run_dir / TRAIN_LOG_FILE).read_text())
        return plot_loss_curve(records, output_dir / "loss_curve.png") if records else None


def deterministic_on_cpu(loop: Callable) -> Callable:
    """Runs a post-training loop (a function with a `config` argument) with deterministic
    kernels when config.deterministic says so (None: on CPU), as pretraining does."""
    signature = inspect.signature(loop)

    @functools.wraps(loop)
    def wrapper(*args, **kwargs):
        config = signature.bind(*args, **kwargs).arguments["config"]
        enabled = config.deterministic
        if enabled is None:
            enabled = resolve_device(config.device).type == "cpu"
        with deterministic_kernels(enabled):
            return loop(*args, **kwargs)

    return wrapper


def _jsonable_config(config) -> dict:
    return {key: (list(value) if isinstance(value, tuple) else value)
            for key, value in dataclasses.asdict(config).items()}
