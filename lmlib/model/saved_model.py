"""Saving a trained model as a plain directory (config.json + model.pt) and loading it back.

This is the hand-off format between stages (base model -> SFT -> RL -> evals); the trainer's
resumable checkpoints (optimizer, RNG, data position) live in lmlib.train.checkpoint.
Loading uses `torch.load(weights_only=True)`: no arbitrary objects are ever unpickled.
"""

import dataclasses
import json
from pathlib import Path

import torch

from lmlib.formats import CHECKPOINT_FILE, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE
from lmlib.model.transformer import ModelConfig, TransformerLM

CONFIG_FILE = MODEL_CONFIG_FILE
WEIGHTS_FILE = MODEL_WEIGHTS_FILE
TRAINER_CHECKPOINT_FILE = CHECKPOINT_FILE  # lmlib.train's resumable checkpoint, holds "model"


def save_model(model: TransformerLM, directory: str | Path) -> Path:
    """Writes config.json and model.pt into `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    (directory / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(model.config), indent=2))
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    return directory


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> TransformerLM:
    """Rebuilds the TransformerLM saved by `save_model` (or a trainer checkpoint directory)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not weights_path.exists():
        weights_path = directory / TRAINER_CHECKPOINT_FILE
    for path in (config_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: {directory} is neither a saved model nor a trainer checkpoint"
            )
    config_values = json.loads(config_path.read_text())
    config_values = config_values.get("model", config_values)  # a trainer config nests it
    model = TransformerLM(ModelConfig.from_dict(config_values), device=device)
    state = torch.load(weights_path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"] if weights_path.name == TRAINER_CHECKPOINT_FILE else state)
    return model
