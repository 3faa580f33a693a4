"""Hugging Face interchange: Llama / Qwen2 checkpoints and byte-level BPE tokenizers.

- `load(path) -> (TransformerLM, ModelConfig)`: a Llama or Qwen2 directory (config.json and
  one or sharded safetensors files) as our model, same logits as `transformers`;
- `load_tokenizer(path) -> Tokenizer`: its tokenizer, where it is byte-level BPE (GPT-2's,
  Qwen2's and Llama 3's split patterns, NFC, ignore_merges);
- `export(checkpoint, tokenizer, out_dir)`: our model as a directory that
  `AutoModelForCausalLM` and `AutoTokenizer` load with the same logits and token ids.

What maps: pre-norm RMSNorm (norm_eps -> rms_norm_eps), RoPE (rope_theta, linear or llama3
rope scaling), SwiGLU (d_ff -> intermediate_size), grouped-query attention (num_kv_heads ->
num_key_value_heads), tied embeddings, q/k/v biases (Qwen2). Refused by name: post_norm,
no_rmsnorm, no_rope, silu_ffn, qk_norm; on load, biases on the output projection or the
feed-forward, activations other than SiLU, sliding-window attention, other RoPE scalings.
Only safetensors, json and torch are imported: `transformers` is a test dependency.
"""

from lmlib.hf.checkpoint import export, load, read_safetensors
from lmlib.hf.export_stage import HFExportConfig, HFExportResult, export_model
from lmlib.hf.llama import hf_config_from_model, model_config_from_hf, unsupported_switches
from lmlib.hf.tokenizer_files import load_tokenizer, save_hf_tokenizer

__all__ = [
    "HFExportConfig",
    "HFExportResult",
    "export",
    "export_model",
    "hf_config_from_model",
    "load",
    "load_tokenizer",
    "model_config_from_hf",
    "read_safetensors",
    "save_hf_tokenizer",
    "unsupported_switches",
]
