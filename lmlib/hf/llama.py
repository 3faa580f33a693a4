"""Our ModelConfig and state dict in Hugging Face Llama / Qwen2 terms, and back.

Notable:
- Llama and Qwen2 share our block: pre-norm RMSNorm, RoPE, SwiGLU (gate_proj = w1, up_proj = w3,
  down_proj = w2), no absolute positions. Qwen2 adds biases on q/k/v (our `qkv_bias`); both may
  use grouped-query attention (`num_kv_heads`) and tied embeddings;
- RoPE: ours rotates adjacent pairs (x0, x1), (x2, x3), ...; Hugging Face rotates the two
  halves of each head (x_i, x_{i + d/2}). Permuting the rows of q_proj and k_proj (and their
  biases) inside each head turns one into the other without changing any attention score;
- configurations with no Llama/Qwen2 counterpart are refused by name (`unsupported_switches`).
"""

import torch

from lmlib.model.transformer import ModelConfig

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")

# ModelConfig switches with no counterpart in the Llama / Qwen2 architectures, and why
_UNMAPPED_SWITCHES = {
    "post_norm": "Llama normalizes before each sublayer (pre-norm) only",
    "no_rmsnorm": "Llama always has RMSNorm layers",
    "no_rope": "Llama always applies RoPE",
    "silu_ffn": "Llama's feed-forward is gated (SwiGLU); the ungated SiLU one has no counterpart",
    "qk_norm": "Llama and Qwen2 have no QK-norm",
}


def unsupported_switches(config: ModelConfig) -> list[str]:
    """The switches of `config` that Llama/Qwen2 cannot express, each with its reason."""
    return [f"{name}=True ({reason})" for name, reason in _UNMAPPED_SWITCHES.items()
            if getattr(config, name)]


# --- RoPE layout --------------------------------------------------------------------------------


def _half_split_to_interleaved(rows: torch.Tensor, head_dim: int) -> torch.Tensor:
    """q/k projection rows (or bias) in HF's half-split order -> our adjacent-pairs order."""
    heads = rows.shape[0] // head_dim
    # per head: row i pairs with row i + head_dim / 2; ours wants them at 2i and 2i + 1
    return rows.reshape(heads, 2, head_dim // 2, *rows.shape[1:]).transpose(1, 2).reshape(rows.shape)


def _interleaved_to_half_split(rows: torch.Tensor, head_dim: int) -> torch.Tensor:
    heads = rows.shape[0] // head_dim
    return rows.reshape(heads, head_dim // 2, 2, *rows.shape[1:]).transpose(1, 2).reshape(rows.shape)


# --- configs ------------------------------------------------------------------------------------


def _rope_settings(hf_config: dict) -> tuple[float, dict | None]:
    """(rope_theta, scaling dict or None) from a transformers 5 `rope_parameters` or a
    transformers 4 `rope_theta` + `rope_scaling` config."""
    parameters = hf_config.get("rope_parameters")
    if isinstance(parameters, dict) and "full_attention" in parameters:  # per layer type
        parameters = parameters["full_attention"]
    if parameters:
        theta = parameters.get("rope_theta", hf_config.get("rope_theta", 10000.0))
        scaling = parameters
    else:
        theta = hf_config.get("rope_theta", 10000.0)
        scaling = hf_config.get("rope_scaling") or None
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "default":
            scaling = None
    return float(theta), scaling


def model_config_from_hf(hf_config: dict, context_length: int | None = None) -> ModelConfig:
    """ModelConfig of a Llama or Qwen2 config.json; a clear error for anything we cannot run."""
    model_type = hf_config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not supported; lmlib.hf loads "
                         f"{SUPPORTED_MODEL_TYPES}")
    problems = []
    if hf_config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={hf_config['hidden_act']!r} (we run SwiGLU with SiLU)")
    if model_type == "llama" and hf_config.get("attention_bias"):
        problems.append("attention_bias=true (a bias on the output projection too; we have "
                        "biases on q/k/v only)")
    if hf_config.get("mlp_bias"):
        problems.append("mlp_bias=true (our feed-forward has no biases)")
    if model_type == "qwen2" and hf_config.get("use_sliding_window"):
        problems.append("use_sliding_window=true (we attend to the whole context)")
    d_model, num_heads = hf_config["hidden_size"], hf_config["num_attention_heads"]
    head_dim = hf_config.get("head_dim") or d_model // num_heads
    if head_dim * num_heads != d_model:
        problems.append(f"head_dim={head_dim} with {num_heads} heads != hidden_size={d_model}")
    theta, scaling = _rope_settings(hf_config)
    scaling_fields = {}
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind not in ("linear", "llama3"):
            problems.append(f"rope scaling type {kind!r} (supported: 'linear', 'llama3')")
        else:
            scaling_fields = {"rope_scaling": kind, "rope_scaling_factor": float(scaling["factor"])}
            if kind == "llama3":
                scaling_fields.update(
                    rope_low_freq_factor=float(scaling["low_freq_factor"]),
                    rope_high_freq_factor=float(scaling["high_freq_factor"]),
                    rope_original_context_length=int(scaling["original_max_position_embeddings"]),
                )
    if problems:
        raise ValueError(f"cannot load this {model_type} config: " + "; ".join(problems))
    return ModelConfig(
        vocab_size=hf_config["vocab_size"],
        context_length=context_length or hf_config["max_position_embeddings"],
        d_model=d_model,
        num_layers=hf_config["num_hidden_layers"],
        num_heads=num_heads,
        num_kv_heads=hf_config.get("num_key_value_heads") or num_heads,
        d_ff=hf_config["intermediate_size"],
        rope_theta=theta,
        norm_eps=hf_config.get("rms_norm_eps", 1e-6),
        tie_embeddings=bool(hf_config.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2",
        attention_backend="torch",
        **scaling_fields,
    )


def hf_config_from_model(config: ModelConfig, bos_token_id: int | None = None,
                         eos_token_id: int | None = None, dtype: str = "float32") -> dict:
    """config.json for `config`: LlamaForCausalLM, or Qwen2ForCausalLM when it has q/k/v biases
    (Llama's attention_bias would also put one on the output projection, which we lack)."""
    problems = unsupported_switches(config)
    if problems:
        raise ValueError("this model has no Llama/Qwen2 counterpart: " + "; ".join(problems)
                         + ". Only pre-norm RMSNorm + RoPE + SwiGLU models export.")
    model_type = "qwen2" if config.qkv_bias else "llama"
    values = {
        "architectures": ["Qwen2ForCausalLM" if config.qkv_bias else "LlamaForCausalLM"],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.resolved_d_ff,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.resolved_num_kv_heads,
        "head_dim": config.d_model // config.num_heads,
        "hidden_act": "silu",
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": dtype,
        "use_cache": True,
    }
    if model_type == "llama":
        values.update(attention_bias=False, mlp_bias=False)
    else:
        values.update(use_sliding_window=False, sliding_window=None)
    if config.rope_scaling is not None:
        scaling = {"rope_type": config.rope_scaling, "factor": config.rope_scaling_factor}
        if config.rope_scaling == "llama3":
            scaling.update(low_freq_factor=config.rope_low_freq_factor,
                           high_freq_factor=config.rope_high_freq_factor,
                           original_max_position_embeddings=config.rope_original_context_length)
        values["rope_scaling"] = scaling
    return values


# --- weights ------------------------------------------------------------------------------------

# per layer: HF name -> ours
_LAYER_NAMES = {
    "self_attn.q_proj": "attn.q_proj",
    "self_attn.k_proj": "attn.k_proj",
    "self_attn.v_proj": "attn.v_proj",
    "self_attn.o_proj": "attn.output_proj",
    "mlp.gate_proj": "ffn.w1",
    "mlp.up_proj": "ffn.w3",
    "mlp.down_proj": "ffn.w2",
    "input_layernorm": "ln1",
    "post_attention_layernorm": "ln2",
}
_TOP_NAMES = {
    "model.embed_tokens.weight": "token_embeddings.weight",
    "model.norm.weight": "ln_final.weight",
    "lm_head.weight": "lm_head.weight",
}
_ROPE_PROJECTIONS = ("attn.q_proj", "attn.k_proj")


def _our_name(hf_name: str) -> str | None:
    if hf_name in _TOP_NAMES:
        return _TOP_NAMES[hf_name]
    parts = hf_name.split(".")
    if len(parts) >= 5 and parts[:2] == ["model", "layers"]:
        module, leaf = ".".join(parts[3:-1]), parts[-1]
        if module in _LAYER_NAMES:
            return f"layers.{parts[2]}.{_LAYER_NAMES[module]}.{leaf}"
    return None


def state_dict_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig
                       ) -> dict[str, torch.Tensor]:
    """Our state dict from HF tensors: renamed, q/k rows permuted to our RoPE layout, the
    output matrix taken from the embeddings when they are tied (HF then omits lm_head)."""
    head_dim = config.d_model // config.num_heads
    state, unknown = {}, []
    for hf_name, tensor in tensors.items():
        if hf_name.endswith("rotary_emb.inv_freq"):  # a buffer some old checkpoints hold
            continue
        name = _our_name(hf_name)
        if name is None:
            unknown.append(hf_name)
            continue
        if name.rsplit(".", 1)[0].endswith(_ROPE_PROJECTIONS):
            tensor = _half_split_to_interleaved(tensor, head_dim)
        state[name] = tensor
    if unknown:
        raise ValueError(f"checkpoint tensors with no place in our model: {sorted(unknown)[:5]}"
                         f"{' ...' if len(unknown) > 5 else ''}")
    if config.tie_embeddings:
        embedding = state.get("token_embeddings.weight", state.get("lm_head.weight"))
        state["token_embeddings.weight"] = state["lm_head.weight"] = embedding
    return state


def hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig
                  ) -> dict[str, torch.Tensor]:
    """HF tensors from our state dict (the inverse of state_dict_from_hf); a tied output matrix
    is written once, as the embeddings, since safetensors refuses shared storage."""
    inverse_layer = {ours: hf for hf, ours in _LAYER_NAMES.items()}
    inverse_top = {ours: hf for hf, ours in _TOP_NAMES.items()}
    head_dim = config.d_model // config.num_heads
    tensors = {}
    for name, tensor in state.items():
        if config.tie_embeddings and name == "lm_head.weight":
            continue
        if name in inverse_top:
            tensors[inverse_top[name]] = tensor
            continue
        _, index, *module, leaf = name.split(".")
        module = ".".join(module)
        if module in _ROPE_PROJECTIONS:
            tensor = _interleaved_to_half_split(tensor, head_dim)
        tensors[f"model.layers.{index}.{inverse_layer[module]}.{leaf}"] = tensor
    return {name: tensor.detach().contiguous() for name, tensor in tensors.items()}
