"""Checkpoints: the plain save/load pair, and the trainer's resumable checkpoint directories.

`save_checkpoint`/`load_checkpoint` store model, optimizer and iteration in one torch file (or
file object). The trainer writes `checkpoints/step_NNNNNNNN/` holding config.json,
trainer_state.json (for people) and checkpoint.pt (model, optimizer, step, tokens seen, RNG
states, data-sampler position). Each directory is written under a temporary name and renamed,
so a kill leaves either a complete checkpoint or none. Loading always uses
`torch.load(weights_only=True)`: no arbitrary objects are unpickled.
"""

import json
import os
import shutil
from pathlib import Path
from typing import BinaryIO

import torch

CHECKPOINT_FILE = "checkpoint.pt"
STEP_PREFIX = "step_"


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO,
    extra: dict | None = None,
) -> None:
    """Writes model and optimizer state and the iteration (plus `extra` trainer state)."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": int(iteration),
    }
    if extra is not None:
        state["extra"] = extra
    torch.save(state, out)


def read_checkpoint(src: str | os.PathLike | BinaryIO, map_location="cpu") -> dict:
    return torch.load(src, map_location=map_location, weights_only=True)


def load_checkpoint(
    src: str | os.PathLike | BinaryIO,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """Restores model (and optimizer) state from `src`; returns the saved iteration."""
    model = getattr(model, "_orig_mod", model)
    device = next(model.parameters()).device
    state = read_checkpoint(src, map_location=device)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["iteration"])


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def step_directory_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:08d}"


def write_training_checkpoint(
    checkpoints_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict,
    trainer_state: dict,
    keep: int = 2,
) -> Path:
    """Writes checkpoints_dir/step_NNNNNNNN atomically and prunes all but the newest `keep`."""
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoints_dir / step_directory_name(step)
    temporary = checkpoints_dir / f".tmp-{final.name}-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    save_checkpoint(model, optimizer, step, temporary / CHECKPOINT_FILE, extra=trainer_state)
    (temporary / "config.json").write_text(json.dumps(config, indent=2))
    summary = {k: v for k, v in trainer_state.items() if isinstance(v, int | float | str)}
    (temporary / "trainer_state.json").write_text(json.dumps({"step": step, **summary}, indent=2))
    if final.exists():  # a re-run reached the same step: replace it
        shutil.rmtree(final)
    os.replace(temporary, final)
    for old in list_checkpoints(checkpoints_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (temporary ones are ignored)."""
    if not checkpoints_dir.exists():
        return []
    found = [
        path for path in checkpoints_dir.iterdir()
        if path.is_dir() and path.name.startswith(STEP_PREFIX)
        and (path / CHECKPOINT_FILE).exists()
    ]
    return sorted(found, key=lambda path: int(path.name[len(STEP_PREFIX):]))


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(Path(checkpoints_dir))
    return checkpoints[-1] if checkpoints else None
