"""Checkpoints: the plain save/load pair, and the trainer's resumable checkpoint directories.

`save_checkpoint`/`load_checkpoint` store model, optimizer and iteration in one torch file (or
file object). The trainer writes `checkpoints/step_NNNNNNNN/` holding config.json,
trainer_state.json (for people) and checkpoint.pt (model, optimizer, step, tokens seen, RNG
states, data-sampler position). Each directory is written under a temporary name and renamed,
so a kill leaves either a complete checkpoint or none. Loading always uses
`torch.load(weights_only=True)`: no arbitrary objects are unpickled.

Distributed runs: under DDP rank 0 writes the same single-file checkpoint. Under ZeRO-1 and
FSDP each rank writes its own `rank_NNNNN.pt` (its optimizer shard; FSDP also its weight
shards) into the shared directory, and rank 0 adds `sharded.json` (strategy, world size and
which tensors are row-sharded). Such a checkpoint resumes on the same world size only;
`consolidate_checkpoint(step_dir, out_dir)` merges it into the single-file format, which
resumes single-process (with batch_size multiplied by the old world size to see the same
data) and loads with `lmlib.model.load_model(out_dir)`.

`CheckpointManager` owns both formats for a training loop: it saves in the one its parallel
strategy needs, and resumes from the newest checkpoint after checking the config and the world
size still fit. Directories are published with lmlib.artifacts.atomic_directory.
"""

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from lmlib.artifacts import atomic_directory
from lmlib.distributed.runtime import barrier, broadcast_object
from lmlib.formats import CHECKPOINT_FILE, MODEL_CONFIG_FILE, SHARDED_CHECKPOINT_INDEX_FILE

SHARDED_INDEX_FILE = SHARDED_CHECKPOINT_INDEX_FILE
SHARDED_FORMAT = "lmpipe-sharded-checkpoint/1"
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


def _tensors_to(value, device):
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _tensors_to(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_tensors_to(item, device) for item in value)
    return value


def read_training_state(src: str | os.PathLike | BinaryIO, device) -> dict:
    """Reads a trainer checkpoint file with every piece where it belongs.

    Model and optimizer tensors go to `device` (the training device); everything else, the RNG
    states above all, stays on the CPU: torch.set_rng_state and torch.cuda.set_rng_state_all
    take CPU byte tensors, so a checkpoint read with map_location=<cuda device> cannot resume.
    `device` may be anything `Tensor.to` accepts.
    """
    state = read_checkpoint(src, map_location="cpu")
    for key in ("model", "optimizer"):
        if key in state:
            state[key] = _tensors_to(state[key], device)
    return state


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
    """Restores the generators saved by `rng_states` (CPU byte tensors; see read_training_state)."""
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
    final = Path(checkpoints_dir) / step_directory_name(step)
    with atomic_directory(final) as temporary:  # a re-run that reached this step replaces it
        save_checkpoint(model, optimizer, step, temporary / CHECKPOINT_FILE, extra=trainer_state)
        _write_summaries(temporary, step, config, trainer_state)
    prune_checkpoints(checkpoints_dir, keep)
    return final


def _write_summaries(directory: Path, step: int, config: dict, trainer_state: dict) -> None:
    """config.json, and trainer_state.json: the scalar trainer state, for people."""
    (directory / MODEL_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    summary = {k: v for k, v in trainer_state.items() if isinstance(v, int | float | str)}
    (directory / "trainer_state.json").write_text(json.dumps({"step": step, **summary}, indent=2))


def prune_checkpoints(checkpoints_dir: Path, keep: int) -> None:
    """Deletes all but the newest `keep` complete checkpoints."""
    for old in list_checkpoints(Path(checkpoints_dir))[:-keep]:
        shutil.rmtree(old)


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (temporary ones are ignored)."""
    if not checkpoints_dir.exists():
        return []
    found = [
        path for path in checkpoints_dir.iterdir()
        if path.is_dir() and path.name.startswith(STEP_PREFIX)
        and ((path / CHECKPOINT_FILE).exists() or (path / SHARDED_INDEX_FILE).exists())
    ]
    return sorted(found, key=lambda path: int(path.name[len(STEP_PREFIX):]))


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(Path(checkpoints_dir))
    return checkpoints[-1] if checkpoints else None


def rank_file_name(rank: int) -> str:
    return f"rank_{rank:05d}.pt"


def is_sharded_checkpoint(step_dir: Path) -> bool:
    return (Path(step_dir) / SHARDED_INDEX_FILE).exists()


def read_sharded_index(step_dir: Path) -> dict:
    index = json.loads((Path(step_dir) / SHARDED_INDEX_FILE).read_text())
    if index.get("format") != SHARDED_FORMAT:
        raise ValueError(f"{step_dir / SHARDED_INDEX_FILE}: format {index.get('format')!r}, "
                         f"expected {SHARDED_FORMAT!r}")
    return index


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run stands: the checkpoint it read, its step and the loop's own state
    (what the loop passed to `CheckpointManager.save`, plus rng, world_size and strategy)."""

    path: Path
    step: int
    trainer_state: dict


class CheckpointManager:
    """A run's checkpoints/ directory: saves in the format the strategy needs (one file, or one
    per rank), finds the newest, and resumes from it after checking it fits this run.

    `strategy` is an lmlib.distributed strategy; `config` (a dict) is written beside each
    checkpoint as config.json, and `check_config(saved_config, path)`, when given, raises if a
    saved one cannot be resumed by this run. Saving and resuming are collective under a
    process group: every rank calls them.
    """

    def __init__(self, directory: Path, strategy, config: dict, keep: int = 2,
                 check_config: Callable[[dict, Path], None] | None = None):
        self.directory = Path(directory)
        self.strategy, self.config, self.keep = strategy, config, keep
        self.check_config = check_config

    def latest(self) -> Path | None:
        return latest_checkpoint(self.directory)

    def save(self, step: int, optimizer: torch.optim.Optimizer, trainer_state: dict) -> Path:
        """Writes checkpoints/step_NNNNNNNN: the strategy's model and optimizer state, `step`,
        `trainer_state` and the RNG states; returns its path."""
        strategy = self.strategy
        trainer_state = {**trainer_state, "rng": rng_states(), "world_size": strategy.world_size,
                         "strategy": strategy.name}
        if strategy.sharded_checkpoints:
            state = {**strategy.local_state(optimizer), "iteration": step, "extra": trainer_state}
            return self._save_sharded(step, state, strategy.sharded_index(optimizer),
                                      trainer_state)
        path = self.directory / step_directory_name(step)
        if strategy.rank == 0:
            path = write_training_checkpoint(self.directory, step, strategy.model, optimizer,
                                             self.config, trainer_state, keep=self.keep)
        strategy.barrier()
        return path

    def _save_sharded(self, step: int, state: dict, index: dict, trainer_state: dict) -> Path:
        """Every rank writes its rank file into one temporary directory that rank 0 publishes
        with the index files; the directory must be on storage all ranks share."""
        rank, world_size = self.strategy.rank, self.strategy.world_size
        final = self.directory / step_directory_name(step)
        publishing = atomic_directory(final) if rank == 0 else contextlib.nullcontext()
        with publishing as temporary:
            temporary = Path(broadcast_object(str(temporary) if rank == 0 else None))
            torch.save(state, temporary / rank_file_name(rank))
            barrier()
            if rank == 0:
                _write_summaries(temporary, step, self.config, trainer_state)
                full_index = {"format": SHARDED_FORMAT, "step": step, "world_size": world_size,
                              **index}
                (temporary / SHARDED_INDEX_FILE).write_text(json.dumps(full_index, indent=2))
        if rank == 0:
            prune_checkpoints(self.directory, self.keep)
        barrier()
        return final

    def resume(self, optimizer: torch.optim.Optimizer, device) -> ResumePoint | None:
        """Loads the newest checkpoint into the strategy's model and `optimizer` (on `device`)
        and restores the RNG states; None when there is none."""
        path = self.latest()
        if path is None:
            return None
        if self.check_config is not None:
            self.check_config(json.loads((path / MODEL_CONFIG_FILE).read_text()), path)
        strategy = self.strategy
        rank0_model = None
        if is_sharded_checkpoint(path):
            index = read_sharded_index(path)
            self._check_same_world(index["world_size"], index["strategy"], path)
            state = read_training_state(path / rank_file_name(strategy.rank), device)
            if strategy.reads_rank0_weights():
                rank0_model = read_training_state(path / rank_file_name(0), device)["model"]
        else:
            state = read_training_state(path / CHECKPOINT_FILE, device)
            self._check_same_world(state["extra"].get("world_size", 1),
                                   state["extra"].get("strategy", "none"), path)
        strategy.load(optimizer, state, rank0_model)
        restore_rng_states(state["extra"]["rng"])
        return ResumePoint(path, state["iteration"], state["extra"])

    def _check_same_world(self, saved_world_size: int, saved_strategy: str, path: Path) -> None:
        world_size, strategy = self.strategy.world_size, self.strategy.name
        if saved_world_size != world_size or saved_strategy != strategy:
            raise ValueError(
                f"{path} was written by {saved_world_size} process(es) with strategy "
                f"{saved_strategy!r}; this run has {world_size} with {strategy!r}. Resume with "
                "the same torchrun --nproc_per_node/--nnodes and strategy, or merge a sharded "
                "checkpoint with lmlib.train.checkpoint.consolidate_checkpoint and resume "
                "single-process."
            )


def _merge_rows(pieces: list[torch.Tensor], rows: int) -> torch.Tensor:
    return torch.cat(pieces)[:rows]


def consolidate_checkpoint(step_dir: str | Path, output_dir: str | Path) -> Path:
    """Merges a ZeRO-1 or FSDP checkpoint directory into a single-process one.

    Writes output_dir/checkpoint.pt (model, optimizer, iteration, trainer state: the format of
    `write_training_checkpoint`), config.json (strategy set to "none") and trainer_state.json.
    Runs in one process, without a process group.
    """
    step_dir, output_dir = Path(step_dir), Path(output_dir)
    index = read_sharded_index(step_dir)
    world_size = index["world_size"]
    ranks = [read_checkpoint(step_dir / rank_file_name(r)) for r in range(world_size)]
    first = ranks[0]
    if index["strategy"] == "zero1":
        model_state = first["model"]
        optimizer_state = {"state": {}, "param_groups": first["optimizer"]["param_groups"]}
        for each in ranks:
            optimizer_state["state"].update(each["optimizer"]["state"])
    elif index["strategy"] == "fsdp":
        layout = index["layout"]
        model_state = {}
        for key, entry in layout.items():
            if entry["sharded"]:
                model_state[key] = _merge_rows([r["model"][key] for r in ranks], entry["shape"][0])
            else:
                model_state[key] = first["model"][key]
        optimizer_state = {"state": {}, "param_groups": first["optimizer"]["param_groups"]}
        for number, name in enumerate(index["optimizer_parameter_names"]):
            if number not in first["optimizer"]["state"]:
                continue
            merged = {}
            for field_name, value in first["optimizer"]["state"][number].items():
                if layout[name]["sharded"] and torch.is_tensor(value) and value.dim() > 0:
                    merged[field_name] = _merge_rows(
                        [r["optimizer"]["state"][number][field_name] for r in ranks],
                        layout[name]["shape"][0])
                else:
                    merged[field_name] = value
            optimizer_state["state"][number] = merged
    else:
        raise ValueError(f"{step_dir}: cannot consolidate strategy {index['strategy']!r}")
    extra = dict(first["extra"])
    extra.update(world_size=1, strategy="none")
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model_state, "optimizer": optimizer_state,
                "iteration": first["iteration"], "extra": extra}, output_dir / CHECKPOINT_FILE)
    config = json.loads((step_dir / MODEL_CONFIG_FILE).read_text())
    config["strategy"] = "none"
    config["batch_size"] = config["batch_size"] * world_size  # the same global batch
    (output_dir / MODEL_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    shutil.copy(step_dir / "trainer_state.json", output_dir / "trainer_state.json")
    return output_dir
