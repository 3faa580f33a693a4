"""The Transformer language model, written on plain tensors (no torch.nn layers or functional).

Notable: RoPE, pre-norm RMSNorm, SwiGLU, no biases, untied embeddings; ablation switches in
ModelConfig; attention through our own kernel or lmlib.kernels' FlashAttention; generation
with a KV cache.
"""

from lmlib.model.attention import (
    KVCache,
    MultiHeadSelfAttention,
    scaled_dot_product_attention,
    softmax,
)
from lmlib.model.generate import generate, sample_next_token
from lmlib.model.layers import (
    Embedding,
    Linear,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFeedForward,
    SwiGLU,
    silu,
)
from lmlib.model.loss import cross_entropy
from lmlib.model.saved_model import load_model, save_model
from lmlib.model.transformer import ModelConfig, TransformerBlock, TransformerLM

__all__ = [
    "Embedding",
    "KVCache",
    "Linear",
    "ModelConfig",
    "MultiHeadSelfAttention",
    "RMSNorm",
    "RotaryPositionalEmbedding",
    "SiLUFeedForward",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "cross_entropy",
    "generate",
    "load_model",
    "sample_next_token",
    "save_model",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
]
