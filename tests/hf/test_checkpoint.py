"""lmlib.hf.load and export against transformers' own Llama and Qwen2 models."""

import json

import pytest
import torch

from lmlib.hf import export, load, model_config_from_hf
from lmlib.model import ModelConfig, TransformerLM, generate
from tests.hf.conftest import VOCAB, hf_model, randomize

transformers = pytest.importorskip("transformers")

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16}


def hf_logits(model, token_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(token_ids).logits


def our_logits(model: TransformerLM, token_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(token_ids)


def hf_greedy(model, prompt: list[int], steps: int) -> list[int]:
    """Argmax continuation re-running the whole sequence each step (no cache to trust)."""
    tokens = list(prompt)
    for _ in range(steps):
        tokens.append(int(hf_logits(model, torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt):]


@pytest.mark.parametrize("model_type, overrides", [
    ("llama", {}),
    ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    ("llama", {"rope_scaling": LLAMA3_SCALING}),
    ("llama", {"num_key_value_heads": 4, "tie_word_embeddings": True}),
    ("qwen2", {}),
    ("qwen2", {"tie_word_embeddings": False, "num_key_value_heads": 1}),
])
def test_load_gives_transformers_logits_and_greedy_tokens(tmp_path, token_ids, model_type,
                                                          overrides):
    reference = hf_model(model_type, **overrides)
    reference.save_pretrained(tmp_path)
    model, config = load(tmp_path)
    assert config.num_kv_heads == reference.config.num_key_value_heads
    assert config.qkv_bias == (model_type == "qwen2")
    torch.testing.assert_close(our_logits(model, token_ids), hf_logits(reference, token_ids),
                               atol=1e-4, rtol=1e-4)
    prompt = token_ids[0, :5].tolist()
    ours = generate(model, None, prompt, max_new_tokens=10, temperature=0)
    assert ours == hf_greedy(reference, prompt, 10)


def test_sharded_checkpoint_loads(tmp_path, token_ids):
    reference = hf_model("llama")
    reference.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model, _ = load(tmp_path)
    torch.testing.assert_close(our_logits(model, token_ids), hf_logits(reference, token_ids),
                               atol=1e-4, rtol=1e-4)


def tiny_model(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB, context_length=64, d_model=32, num_layers=2,
                         num_heads=4, d_ff=64, rope_theta=50000.0, norm_eps=1e-6,
                         attention_backend="torch", **overrides)
    return randomize(TransformerLM(config))


@pytest.mark.parametrize("overrides, architecture", [
    ({}, "LlamaForCausalLM"),
    ({"num_kv_heads": 2, "tie_embeddings": True}, "LlamaForCausalLM"),
    ({"rope_scaling": "llama3", "rope_scaling_factor": 4.0, "rope_original_context_length": 16},
     "LlamaForCausalLM"),
    ({"qkv_bias": True, "num_kv_heads": 1}, "Qwen2ForCausalLM"),
])
def test_exported_model_gives_our_logits_in_transformers(tmp_path, token_ids, overrides,
                                                         architecture):
    model = tiny_model(**overrides)
    export(model, None, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [architecture]
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reference).__name__ == architecture
    expected = our_logits(model, token_ids)
    torch.testing.assert_close(hf_logits(reference, token_ids), expected, atol=1e-4, rtol=1e-4)
    reloaded, _ = load(tmp_path)  # and back: our loader reads what our exporter wrote
    torch.testing.assert_close(our_logits(reloaded, token_ids), expected, atol=1e-5, rtol=1e-5)


def test_export_from_saved_model_directory_in_bfloat16(tmp_path, token_ids):
    from lmlib.model import save_model

    model = tiny_model()
    save_model(model, tmp_path / "ours")
    export(tmp_path / "ours", None, tmp_path / "hf", dtype=torch.bfloat16)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf", dtype=torch.float32).eval()
    # bf16 weights: about 3 significant digits per weight
    torch.testing.assert_close(hf_logits(reference, token_ids), our_logits(model, token_ids),
                               atol=0.1, rtol=0.05)


@pytest.mark.parametrize("switch", ["post_norm", "no_rmsnorm", "no_rope", "silu_ffn", "qk_norm"])
def test_export_refuses_switches_llama_cannot_express(tmp_path, switch):
    model = tiny_model(**{switch: True})
    with pytest.raises(ValueError, match=f"{switch}=True"):
        export(model, None, tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("change, message", [
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"attention_bias": True}, "attention_bias"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "'yarn'"),
    ({"model_type": "mistral"}, "mistral"),
])
def test_load_refuses_configs_we_cannot_run(change, message):
    config = {"model_type": "llama", "vocab_size": VOCAB, "hidden_size": 32,
              "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "max_position_embeddings": 64, **change}
    with pytest.raises(ValueError, match=message):
        model_config_from_hf(config)
