"""Tiny random-weight Llama / Qwen2 models built by `transformers` itself: no downloads."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="tests/hf compare against transformers")

VOCAB = 128
SHAPE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=64)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights large enough that logits differ clearly (HF's init zeroes biases, ones norms),
    so a wrong bias, permutation or norm shows in the comparison."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name or "ln" in name.split(".")[-2]:
                parameter.copy_(1.0 + 0.2 * noise)
            else:
                parameter.copy_(0.2 * noise)
    return model.eval()


def hf_model(model_type: str, seed: int = 0, **overrides):
    if model_type == "llama":
        config = transformers.LlamaConfig(**{**SHAPE, "num_key_value_heads": 2,
                                             "rope_theta": 500000.0, **overrides})
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(**{**SHAPE, "num_key_value_heads": 2,
                                             "tie_word_embeddings": True, **overrides})
        model = transformers.Qwen2ForCausalLM(config)
    model.config._attn_implementation = "eager"
    return randomize(model, seed)


@pytest.fixture
def token_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
