"""Training: the loop, data loading from token shards, checkpoints with exact resume, presets.

Entry point: `train(config, data_dir, run_dir)`; the same from a shell is
`python -m lmlib.train --config tiny --data-dir ... --run-dir ...`, and on N processes
`torchrun --nproc_per_node N -m lmlib.train ... --strategy ddp|zero1|fsdp`.
"""

from lmlib.train.checkpoint import (
    consolidate_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    write_training_checkpoint,
)
from lmlib.train.config import PRESETS, TrainConfig, get_preset, load_config
from lmlib.train.data import ShardSampler, get_batch, open_split, read_index
from lmlib.train.trainer import TrainingInterrupted, TrainResult, evaluate, train

__all__ = [
    "PRESETS",
    "ShardSampler",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "consolidate_checkpoint",
    "evaluate",
    "get_batch",
    "get_preset",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "open_split",
    "read_index",
    "save_checkpoint",
    "train",
    "write_training_checkpoint",
]
