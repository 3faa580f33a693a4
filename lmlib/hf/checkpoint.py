"""Hugging Face checkpoint directories (config.json + safetensors) in and out of TransformerLM.

Notable:
- `load` reads one `model.safetensors` or the shards named by `model.safetensors.index.json`;
- `export` writes `model.safetensors` (a tied output matrix once, as the embeddings), a Llama
  (or, with q/k/v biases, Qwen2) `config.json` and the tokenizer files, so
  `AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(out_dir)` run our model;
- only safetensors, json and torch: transformers is never imported here (tests use it as the
  reference).
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lmlib.hf.llama import (
    hf_config_from_model,
    hf_state_dict,
    model_config_from_hf,
    state_dict_from_hf,
)
from lmlib.hf.tokenizer_files import end_of_text_token, load_tokenizer, save_hf_tokenizer
from lmlib.model.saved_model import load_model
from lmlib.model.transformer import ModelConfig, TransformerLM
from lmlib.tokenizer.tokenizer import Tokenizer

HF_CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"


def read_safetensors(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: one safetensors file or an index and its shards."""
    directory = Path(directory)
    single, index = directory / SAFETENSORS_FILE, directory / SAFETENSORS_INDEX_FILE
    if single.is_file():
        return load_file(single)
    if not index.is_file():
        raise FileNotFoundError(f"{directory} has neither {SAFETENSORS_FILE} nor "
                                f"{SAFETENSORS_INDEX_FILE} (PyTorch .bin checkpoints are not read)")
    weight_map = json.loads(index.read_text())["weight_map"]
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(load_file(directory / shard))
    missing = set(weight_map) - set(tensors)
    if missing:
        raise ValueError(f"{index} lists tensors its shards lack: {sorted(missing)[:5]}")
    return tensors


def load(path: str | Path, device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, context_length: int | None = None
         ) -> tuple[TransformerLM, ModelConfig]:
    """A Llama or Qwen2 checkpoint directory as our TransformerLM (in eval mode), to evaluate,
    fine-tune or sample from published models with our code.

    context_length: RoPE tables and the longest sequence (default: the config's
    max_position_embeddings, which can be large; lower it to save memory)."""
    directory = Path(path)
    config_path = directory / HF_CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {directory} is not a Hugging Face "
                                "model directory")
    config = model_config_from_hf(json.loads(config_path.read_text()), context_length)
    state = state_dict_from_hf(read_safetensors(directory), config)
    model = TransformerLM(config, device=device, dtype=dtype)
    model.load_state_dict({name: tensor.to(dtype) for name, tensor in state.items()})
    return model.eval(), config


def _as_tokenizer(tokenizer: Tokenizer | str | Path) -> Tokenizer:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    return load_tokenizer(tokenizer)


def export(checkpoint: TransformerLM | str | Path, tokenizer: Tokenizer | str | Path | None,
           out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Writes `checkpoint` (a TransformerLM or a directory saved by lmlib.model.save_model)
    and its tokenizer as a Hugging Face Llama/Qwen2 directory, for the tools of that ecosystem
    (evaluation harnesses, inference servers, the Hub). Refuses, naming the switch, a model
    Llama cannot express. dtype: of the written weights (default: the model's own)."""
    model = load_model(checkpoint) if isinstance(checkpoint, str | Path) else checkpoint
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    config = model.config
    tokenizer = _as_tokenizer(tokenizer) if tokenizer is not None else None
    end_id = None
    if tokenizer is not None:
        if tokenizer.vocab_size > config.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only "
                             f"{config.vocab_size}: they do not belong together")
        end = end_of_text_token(tokenizer)
        end_id = tokenizer.token_id(end) if end is not None else None
    weight_dtype = dtype or model.lm_head.weight.dtype
    hf_config = hf_config_from_model(config, end_id, end_id,  # refuses what Llama lacks
                                     str(weight_dtype).removeprefix("torch."))
    tensors = hf_state_dict(model.state_dict(), config)
    tensors = {name: tensor.to(weight_dtype) for name, tensor in tensors.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.cpu() for name, tensor in tensors.items()},
              out_dir / SAFETENSORS_FILE, metadata={"format": "pt"})
    (out_dir / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, out_dir, config.context_length)
    return out_dir
