"""Run directories: where a training run keeps its checkpoints, and what it hands on.

A run directory is keyed by the training config and the fingerprints of its inputs, so that
starting the same training again (after a crash, a preemption, a cancel) finds its checkpoints
and resumes, while a changed config or new data starts a new run beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from lmlib.formats import LOSS_CURVE_PLOT_FILE, TRAIN_LOG_FILE
from lmlib.train.config import TrainConfig

RUN_OUTPUTS = (TRAIN_LOG_FILE, LOSS_CURVE_PLOT_FILE)  # besides model/: what an artifact keeps of a run


def run_directory(root: Path, config: TrainConfig | object, inputs: Mapping[str, str]) -> Path:
    """root/<16 hex digits of sha256 over the config (a TrainConfig, or any dataclass: the
    post-training loops') and the inputs' fingerprints>."""
    values = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
    key = hashlib.sha256(json.dumps([values, dict(inputs)], sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    return Path(root) / key


def export_run(run_dir: Path, output_dir: Path) -> None:
    """Copies a finished run's model/ and its log and loss curve into an artifact directory."""
    shutil.copytree(Path(run_dir) / "model", Path(output_dir) / "model")
    for name in RUN_OUTPUTS:
        if (Path(run_dir) / name).exists():
            shutil.copy2(Path(run_dir) / name, Path(output_dir) / name)
