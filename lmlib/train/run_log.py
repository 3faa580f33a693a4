"""What a training run tells people while it runs: log.jsonl, console lines, status, wandb.

`RunLog` appends each record (kind "train", "eval", ...) to run_dir/log.jsonl, prints it, and
passes it to wandb and to a `progress` callback; `status` lines (what the run is doing before
and between steps) go to the console and `progress` only. Every loop (pretraining; SFT, GRPO
and DPO later) logs through one, so Dagster and the console see the same records. wandb is
imported only when a project is configured: lmlib.train imports with torch and numpy alone.
"""

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from lmlib.train.report import read_log


class RunLog:
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

    def discard(self) -> None:
        """Deletes the log: without checkpoints it belongs to a run that left nothing."""
        if self.enabled and self.path.exists():
            self.path.unlink()

    def records(self) -> list[dict]:
        return read_log(self.path) if self.enabled else []

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

    def tracking_location(self) -> str | None:
        """Where the experiment tracker keeps this run: the wandb URL when online, its local
        directory when offline (`wandb sync` uploads it later); None when not tracking."""
        if self.wandb_run is None:
            return None
        try:
            url = self.wandb_run.url
        except Exception:  # noqa: BLE001 - offline runs may have no URL at all
            url = None
        return url or str(Path(self.wandb_run.dir).parent)

    def finish(self, stats: dict) -> None:
        """Hands the run's numeric stats to wandb's summary and closes the wandb run."""
        if self.wandb_run is not None:
            self.wandb_run.summary.update(
                {k: v for k, v in stats.items() if isinstance(v, int | float)})
            self.wandb_run.finish()


@contextlib.contextmanager
def kernel_reports(log: RunLog):
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


def start_wandb(project: str | None, mode: str | None, run_dir: Path, config: dict):
    """A wandb run resumed under the id kept in run_dir (offline unless `mode` or $WANDB_MODE
    says otherwise); None without a project."""
    if not project:
        return None
    try:
        import wandb
    except ImportError as error:
        raise ImportError("TrainConfig.wandb_project is set but wandb is not installed") from error
    id_file = run_dir / "wandb_run_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id)
    mode = mode or os.environ.get("WANDB_MODE", "offline")
    return wandb.init(project=project, dir=str(run_dir), id=run_id, resume="allow", mode=mode,
                      config=config)
