"""One point of a scaling sweep: a model of a given shape trained for a given compute budget.

Notable:
- N is the non-embedding parameter count (Kaplan et al. 2020: blocks only, token table and
  output projection left out), which is what follows a power law at small sizes where the
  embeddings dominate; D = C / (6 N) tokens, rounded to whole steps;
- the learning-rate schedule is fitted to the run's length: warmup over `warmup_fraction` of
  the steps, cosine decay to max_lr / 10 at the last step (a schedule cut short or run past its
  end biases the loss, Hoffmann et al. 2022, section 3);
- the result records the planned budget (the isoFLOP key), the tokens actually trained, the
  FLOPs both as 6 N D and by TransformerLM's attention-inclusive count, the training curve and
  the final validation loss; a run whose loss became NaN or inf is a result with status
  "diverged" and the reason, so the fits leave it out by name instead of losing it;
- runs are resumable like any training run: the run directory keeps the checkpoints;
- a point whose D / N lies outside the sweep's window is recorded as skipped, not trained.

`python -m lmlib.train.scaling_runs` runs a whole sweep without Dagster, one process per GPU
(the GPU machines have no Dagster), and fits it with lmlib.scaling.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmlib.artifacts import without_timings
from lmlib.formats import LOSS_CURVE_PLOT_FILE, TRAIN_LOG_FILE
from lmlib.scaling import Run, model_shape, training_flops, transformer_training_flops
from lmlib.stage import StageResult, check_positive, config_from_dict
from lmlib.train.config import TrainConfig, get_preset
from lmlib.train.data import read_index
from lmlib.train.report import read_log
from lmlib.train.runs import run_directory

SCALING_RUN_FILE = "scaling_run.json"  # a scaling run: its config, sizes, FLOPs, curve and loss
SCALING_CHECK_FILE = "scaling_check.json"  # scaling_check: predicted against achieved loss


@dataclass
class ScalingSweepConfig:
    """A sweep: model sizes ("<d_model>x<num_layers>") × compute budgets (FLOPs, C = 6 N D),
    every run trained from `preset` with the shape, context and batch given here; and the
    held-out `target_budget` that scaling_check trains at (larger than every budget)."""

    sizes: tuple[str, ...] = ("64x2", "96x3", "128x4")
    budgets: tuple[float, ...] = (3e10, 1e11, 3e11)
    target_budget: float = 1.2e12
    preset: str = "tiny"
    head_dim: int = 32
    context_length: int = 64
    batch_size: int = 16
    max_lr: float = 3e-3
    warmup_fraction: float = 0.05
    eval_batches: int = 16
    curve_points: int = 50  # train-loss records per run
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    # points whose D / N falls outside this window are recorded as skipped, not trained (a
    # full size x budget grid puts the small models at the large budgets far from any optimum)
    min_tokens_per_param: float | None = None
    max_tokens_per_param: float | None = None

    def __post_init__(self) -> None:
        self.sizes, self.budgets = tuple(self.sizes), tuple(float(b) for b in self.budgets)
        check_positive(self, "head_dim", "context_length", "batch_size", "max_lr",
                       "eval_batches", "curve_points", "target_budget")
        if len(self.sizes) < 1 or len(self.budgets) < 1:
            raise ValueError("ScalingSweepConfig needs at least one size and one budget")
        for size in self.sizes:
            parse_size(size)
        if any(budget <= 0 for budget in self.budgets):
            raise ValueError(f"ScalingSweepConfig.budgets must be positive, got {self.budgets}")
        if self.target_budget <= max(self.budgets):
            raise ValueError(f"target_budget={self.target_budget:g} must exceed every budget of "
                             f"the sweep (largest {max(self.budgets):g}): it is the held-out test")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction={self.warmup_fraction} must be in [0, 1)")

    @classmethod
    def from_dict(cls, values: dict) -> ScalingSweepConfig:
        return config_from_dict(cls, values)

    def to_dict(self) -> dict:
        return {**self.__dict__, "sizes": list(self.sizes), "budgets": list(self.budgets)}


# Named sweeps: the CPU demo's, and one for an H200 (8 sizes of 0.1M-6.4M non-embedding
# parameters x 4 budgets over two orders of magnitude, points with D/N outside [1.5, 200]
# skipped: 16 runs, about 270M tokens; the held-out target is 4x the largest budget).
SWEEPS = {
    "cpu-demo": ScalingSweepConfig,
    "h200": lambda: ScalingSweepConfig(
        sizes=("64x2", "96x2", "128x2", "128x3", "192x3", "256x3", "256x4", "320x5"),
        budgets=(2e12, 9e12, 4e13, 2e14), target_budget=8e14, preset="small",
        head_dim=32, context_length=256, batch_size=128, max_lr=3e-3, eval_batches=40,
        device="cuda", min_tokens_per_param=1.5, max_tokens_per_param=200),
}


def load_sweep(name_or_path: str) -> ScalingSweepConfig:
    """A named sweep (SWEEPS) or a JSON file of ScalingSweepConfig fields."""
    if name_or_path in SWEEPS:
        return SWEEPS[name_or_path]()
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"scaling sweep {name_or_path!r} is neither a named sweep "
                         f"({', '.join(SWEEPS)}) nor a JSON file")
    return ScalingSweepConfig.from_dict(json.loads(path.read_text()))


def parse_size(size: str) -> tuple[int, int]:
    """"256x4" -> (d_model 256, num_layers 4)."""
    width, _, depth = size.partition("x")
    if not (width.isdigit() and depth.isdigit() and int(width) > 0 and int(depth) > 0):
        raise ValueError(f"model size {size!r}: expected '<d_model>x<num_layers>', e.g. '256x4'")
    return int(width), int(depth)


def budget_key(budget: float) -> str:
    """A budget as a partition key: 3e+15 -> "3e15", 2e+09 -> "2e9"."""
    mantissa, _, exponent = f"{budget:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def plan_run(sweep: ScalingSweepConfig, size: str, budget: float, vocab_size: int) -> TrainConfig:
    """The TrainConfig of one run: its shape, D = C / (6 N) tokens in whole steps, and the
    learning-rate schedule fitted to that many steps."""
    d_model, num_layers = parse_size(size)
    shape = model_shape(d_model, num_layers, vocab_size, sweep.context_length, sweep.head_dim)
    tokens = budget / (6 * shape.non_embedding_params)
    tokens_per_step = sweep.batch_size * sweep.context_length
    steps = max(1, round(tokens / tokens_per_step))
    fields = shape.config_fields()
    return get_preset(sweep.preset).with_overrides({
        **{f"model.{name}": value for name, value in fields.items()},
        "batch_size": sweep.batch_size, "grad_accum_steps": 1, "max_steps": steps,
        "max_lr": sweep.max_lr, "min_lr": sweep.max_lr / 10,
        "warmup_steps": max(1, round(sweep.warmup_fraction * steps)), "cosine_steps": steps,
        "eval_interval": steps, "eval_batches": sweep.eval_batches,
        "checkpoint_interval": max(1, steps // 4), "log_interval": max(1, steps // sweep.curve_points),
        "seed": sweep.seed, "device": sweep.device, "compile": sweep.compile,
        "sample_prompts": [],
    })


def outside_window(sweep: ScalingSweepConfig, non_embedding_params: int, tokens: float) -> str:
    """Why a point is skipped (its D / N outside the sweep's window), or "" to train it."""
    ratio = tokens / non_embedding_params
    low, high = sweep.min_tokens_per_param, sweep.max_tokens_per_param
    if (low is not None and ratio < low) or (high is not None and ratio > high):
        return (f"D/N = {ratio:.3g} tokens per parameter is outside the sweep's window "
                f"[{low if low is not None else 0:g}, {high if high is not None else 'inf'}]")
    return ""


@dataclass
class ScalingRunResult(StageResult):
    """One point of the sweep: sizes, tokens, FLOPs, the final losses and its status."""

    MANIFEST_COUNTS = ("non_embedding_params", "tokens", "steps")

    size: str
    budget: float
    d_model: int
    num_layers: int
    non_embedding_params: int
    params: int
    tokens: int
    steps: int
    flops_6nd: float  # 6 N D with N non-embedding: the budget's own convention
    flops_with_attention: float  # TransformerLM's count (attention and output projection)
    status: str  # ok | diverged
    reason: str = ""
    final_val_loss: float | None = None
    final_train_loss: float | None = None
    seconds: float = 0.0
    loss_curve: Path | None = None
    curve: list[dict] = field(default_factory=list, metadata={"show": False})

    def as_run(self) -> Run:
        """The point as the fits take it (the planned budget groups the isoFLOP curves)."""
        loss = self.final_val_loss if self.final_val_loss is not None else math.nan
        return Run(params=self.non_embedding_params, tokens=self.tokens, flops=self.budget,
                   loss=loss, status=self.status, reason=self.reason,
                   name=f"{self.size}@{budget_key(self.budget)}")


def train_scaling_run(sweep: ScalingSweepConfig, size: str, budget: float, data_dir: Path,
                      runs_root: Path, output_dir: Path, inputs: dict | None = None,
                      progress=None, window: bool = True,
                      device: str | None = None) -> ScalingRunResult:
    """Train (or resume) one run of the sweep under runs_root (keyed by its config and
    `inputs`, like every training run) and write its record to output_dir. `window=False`
    trains it whatever its D / N (the held-out check); `device` (e.g. "cuda:1") overrides the
    sweep's without changing the run directory, so a run resumes on whichever GPU is free."""
    from lmlib.train.trainer import train  # torch: only when a run trains

    vocab_size = read_index(data_dir)["vocab_size"]
    config = plan_run(sweep, size, budget, vocab_size)
    run_dir = run_directory(runs_root, config, inputs or {})
    if device is not None:
        config = dataclasses.replace(config, device=device)
    shape = model_shape(config.model.d_model, config.model.num_layers, vocab_size,
                        sweep.context_length, sweep.head_dim)
    tokens = config.max_steps * config.tokens_per_step
    started = time.perf_counter()
    reason = outside_window(sweep, shape.non_embedding_params, tokens) if window else ""
    status, trained = "ok", None
    if reason:
        status = "skipped"
    else:
        try:
            trained = train(config, data_dir, run_dir, progress=progress, quiet=True)
        except FloatingPointError as error:
            status, reason = "diverged", str(error)
    records = read_log(Path(run_dir) / TRAIN_LOG_FILE)
    curve = [{"step": r["step"], "loss": r["loss"]} for r in records if r.get("kind") == "train"]
    result = ScalingRunResult(
        size=size, budget=budget, d_model=shape.d_model, num_layers=shape.num_layers,
        non_embedding_params=shape.non_embedding_params, params=shape.params, tokens=tokens,
        steps=config.max_steps,
        flops_6nd=training_flops(shape.non_embedding_params, tokens),
        flops_with_attention=transformer_training_flops(config.model, tokens),
        status=status, reason=reason,
        final_val_loss=trained.final_val_loss if trained else None,
        final_train_loss=trained.final_train_loss if trained else (
            curve[-1]["loss"] if curve else None),
        seconds=time.perf_counter() - started, curve=curve)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if (Path(run_dir) / LOSS_CURVE_PLOT_FILE).exists():
        (output_dir / LOSS_CURVE_PLOT_FILE).write_bytes((Path(run_dir) / LOSS_CURVE_PLOT_FILE)
                                                        .read_bytes())
        result.loss_curve = output_dir / LOSS_CURVE_PLOT_FILE
    record = {"sweep": sweep.to_dict(), "train_config": config.to_dict(),
              **{key: value for key, value in result.to_dict().items() if key != "loss_curve"}}
    (output_dir / SCALING_RUN_FILE).write_text(
        json.dumps(without_timings(record), indent=2, default=str) + "\n")
    return result


def read_scaling_run_record(values: dict) -> Run:
    """A Run from its JSON form (scaling_laws.json's runs: a diverged run's loss is null)."""
    return Run(**{**values, "loss": math.nan if values["loss"] is None else values["loss"]})


def read_scaling_run(directory: Path) -> Run:
    """The Run a finished scaling-run artifact recorded."""
    record = json.loads((Path(directory) / SCALING_RUN_FILE).read_text())
    loss = record["final_val_loss"]
    return Run(params=record["non_embedding_params"], tokens=record["tokens"],
               flops=record["budget"], loss=math.nan if loss is None else loss,
               status=record["status"], reason=record["reason"],
               name=f"{record['size']}@{budget_key(record['budget'])}")


@dataclass
class ScalingCheckResult(StageResult):
    """The held-out test: the recommended model trained at the target budget, its achieved
    loss against the loss the parametric fit predicted for it, with the interval."""

    MANIFEST_COUNTS = ("non_embedding_params", "tokens")

    size: str
    target_budget: float
    recommended_params: float
    non_embedding_params: int
    tokens: int
    status: str
    predicted_loss: float | None
    predicted_low: float | None
    predicted_high: float | None
    achieved_loss: float | None
    relative_error: float | None  # (achieved - predicted) / predicted
    within_interval: bool
    reason: str = ""  # why there is no prediction or no achieved loss
    seconds: float = 0.0
    loss_curve: Path | None = None
    prediction_plot: Path | None = None


def check_scaling_prediction(sweep: ScalingSweepConfig, laws_dir: Path, data_dir: Path,
                             runs_root: Path, output_dir: Path, inputs: dict | None = None,
                             progress=None) -> ScalingCheckResult:
    """Train the model scaling_laws recommends for its target budget (the sweep shape nearest
    its N_opt) for D = C / (6 N) tokens, and compare the achieved validation loss with the
    parametric fit's prediction at that exact N and D."""
    from lmlib.scaling import sweep_shapes
    from lmlib.scaling.laws import SCALING_LAWS_FILE, predicted_loss

    record = json.loads((Path(laws_dir) / SCALING_LAWS_FILE).read_text())
    target = record["recommendation"]["flops"]
    recommended = record["recommendation"]["params"]
    vocab_size = read_index(data_dir)["vocab_size"]
    (shape,) = sweep_shapes(recommended, recommended, 1, vocab_size, sweep.context_length,
                            head_dim=sweep.head_dim)
    size = f"{shape.d_model}x{shape.num_layers}"
    run = train_scaling_run(sweep, size, target, data_dir, runs_root, output_dir, inputs,
                            progress, window=False)
    try:
        predicted, interval = predicted_loss(laws_dir, run.non_embedding_params, run.tokens)
        reason = run.reason
    except ValueError as error:
        predicted, interval, reason = None, None, str(error)
    achieved = run.final_val_loss
    within = (achieved is not None and interval is not None
              and interval[0] <= achieved <= interval[1])
    result = ScalingCheckResult(
        size=size, target_budget=target, recommended_params=recommended,
        non_embedding_params=run.non_embedding_params, tokens=run.tokens, status=run.status,
        predicted_loss=predicted, predicted_low=interval[0] if interval else None,
        predicted_high=interval[1] if interval else None, achieved_loss=achieved,
        relative_error=None if achieved is None or predicted is None
        else (achieved - predicted) / predicted,
        within_interval=within, reason=reason, seconds=run.seconds, loss_curve=run.loss_curve)
    if predicted is not None:
        try:
            from lmlib.scaling.plots import plot_prediction_check

            runs = [read_scaling_run_record(run) for run in record["runs"]]
            result.prediction_plot = plot_prediction_check(
                runs, target, predicted, interval, achieved,
                Path(output_dir) / "prediction_check.png")
        except ImportError:  # no matplotlib (the GPU machines): the numbers are in the record
            pass
    record = {key: value for key, value in result.to_dict().items()
              if key not in ("loss_curve", "prediction_plot")}
    (Path(output_dir) / SCALING_CHECK_FILE).write_text(
        json.dumps(without_timings(record), indent=2) + "\n")
    return result


# --- the sweep without Dagster: one process per GPU ---------------------------------------

def _worker(sweep_name: str, data_dir: str, out_dir: str, runs_dir: str,
            points: list[str]) -> None:
    sweep = load_sweep(sweep_name)
    for point in points:
        size, budget = point.split("@")
        place = Path(f"budget={budget}") / f"size={size}"
        if (Path(out_dir) / place / SCALING_RUN_FILE).exists():
            continue
        result = train_scaling_run(sweep, size, float(budget), Path(data_dir),
                                   Path(runs_dir) / place, Path(out_dir) / place)
        print(json.dumps({"point": point, "status": result.status,
                          "val_loss": result.final_val_loss, "seconds": round(result.seconds, 1)}),
              flush=True)


def run_sweep(sweep_name: str, data_dir: Path, out_dir: Path, devices: list[str],
              runs_dir: Path | None = None) -> list[Run]:
    """Every point of the sweep, spread over `devices` (CUDA indices; one process each, the
    largest runs first), skipping points already finished; returns the Runs. Each point's
    record goes to out_dir/budget=B/size=S, its checkpoints under runs_dir (default out_dir)."""
    sweep = load_sweep(sweep_name)
    points = sorted(((size, budget) for size in sweep.sizes for budget in sweep.budgets),
                    key=lambda point: -point[1])
    keys = [f"{size}@{budget_key(budget)}" for size, budget in points]
    shares = [keys[index::len(devices)] for index in range(len(devices))]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "lmlib.train.scaling_runs", "--worker", sweep_name,
         str(data_dir), str(out_dir), str(runs_dir or out_dir), *share],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": device}) for device, share in
        zip(devices, shares, strict=True) if share]
    failed = [process.args for process in processes if process.wait() != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} sweep worker(s) failed; their output says why")
    return [read_scaling_run(path.parent) for path in sorted(Path(out_dir).glob(
        f"budget=*/size=*/{SCALING_RUN_FILE}"))]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        _worker(argv[1], argv[2], argv[3], argv[4], argv[5:])
        return
    parser = argparse.ArgumentParser(description="Run a scaling sweep, one process per GPU.")
    parser.add_argument("--sweep", default="h200", help=f"{', '.join(SWEEPS)} or a JSON file")
    parser.add_argument("--data-dir", required=True, help="token shards (index.json)")
    parser.add_argument("--out", required=True, help="where the runs' records, the fits and "
                                                     "the check go")
    parser.add_argument("--runs-dir", default=None,
                        help="checkpoints and weights (default: --out)")
    parser.add_argument("--devices", default=None,
                        help="CUDA device indices, comma-separated (default: all visible)")
    parser.add_argument("--check", action="store_true",
                        help="then fit both laws (no plots) and train the recommended model at "
                             "the target budget: out/laws, out/check")
    args = parser.parse_args(argv)
    if args.devices is None:
        import torch

        args.devices = ",".join(str(i) for i in range(max(torch.cuda.device_count(), 1)))
    runs_dir = Path(args.runs_dir or args.out)
    runs = run_sweep(args.sweep, Path(args.data_dir), Path(args.out), args.devices.split(","),
                     runs_dir)
    print(json.dumps([run.to_dict() for run in runs], indent=2), flush=True)
    if args.check:
        from lmlib.scaling import ScalingLawsConfig, fit_scaling_laws

        sweep, out = load_sweep(args.sweep), Path(args.out)
        laws = fit_scaling_laws(runs, out / "laws", ScalingLawsConfig(
            target_budget=sweep.target_budget, plots=False))
        print(json.dumps(laws.to_dict(), indent=2, default=str), flush=True)
        check = check_scaling_prediction(sweep, out / "laws", Path(args.data_dir),
                                         runs_dir / "check", out / "check")
        print(json.dumps(check.to_dict(), indent=2, default=str), flush=True)


if __name__ == "__main__":
    main()
