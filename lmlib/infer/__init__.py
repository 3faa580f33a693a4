"""Batched inference for lmlib.model.TransformerLM: many prompts x n samples over a static KV
cache, per-row stop tokens, length limits and sampling settings, reproducible seeds, the sampled
tokens' log-probabilities, and CUDA-graph decode steps on the GPU.

    engine = Engine(model, max_batch_size=256, max_seq_len=512)
    completions = engine.generate([Request(prompt_ids, n=16, max_new_tokens=256, seed=1)])

lmlib.model.generate remains the one-prompt loop; this package does not change lmlib.model.
"""

from lmlib.infer.cuda_graphs import CapturedStep, batch_buckets
from lmlib.infer.decode import DecodeStep, StaticKVCache, decode_attention, prefill
from lmlib.infer.engine import Engine
from lmlib.infer.loop import DecodeLoop
from lmlib.infer.requests import Completion, Request
from lmlib.infer.sampling import row_uniforms, sample_tokens

__all__ = [
    "CapturedStep",
    "Completion",
    "DecodeLoop",
    "DecodeStep",
    "Engine",
    "Request",
    "StaticKVCache",
    "batch_buckets",
    "decode_attention",
    "prefill",
    "row_uniforms",
    "sample_tokens",
]
