"""The `hf_export` stage: a trained model and its tokenizer as a Hugging Face directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlib.hf.checkpoint import HF_CONFIG_FILE, export
from lmlib.model.saved_model import load_model
from lmlib.stage import StageResult

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class HFExportConfig:
    """The dtype of the written weights."""

    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"HFExportConfig.dtype must be one of {sorted(DTYPES)}, "
                             f"got {self.dtype!r}")


@dataclass
class HFExportResult(StageResult):
    """What was written: the architecture transformers will build, its size and dtype."""

    MANIFEST_COUNTS = ("parameters", "bytes")

    architecture: str
    dtype: str
    parameters: int
    bytes: int
    vocab_size: int
    context_length: int


def export_model(model_dir: Path, tokenizer_dir: Path, output_dir: Path,
                 config: HFExportConfig) -> HFExportResult:
    """Export the saved model in model_dir with the tokenizer in tokenizer_dir."""
    model = load_model(model_dir)
    export(model, Path(tokenizer_dir), output_dir, dtype=DTYPES[config.dtype])
    hf_config = json.loads((Path(output_dir) / HF_CONFIG_FILE).read_text())
    return HFExportResult(
        architecture=hf_config["architectures"][0], dtype=config.dtype,
        parameters=model.num_parameters(),
        bytes=sum(path.stat().st_size for path in Path(output_dir).iterdir()),
        vocab_size=hf_config["vocab_size"],
        context_length=hf_config["max_position_embeddings"])
