"""lmlib: the algorithms of the language-model factory, written from first principles.

One subpackage per stage (web, dedup, tokenizer, model, kernels, optim, train, distributed, ...).
lmlib never imports dagster; the GPU-side subpackages import with torch, numpy and triton alone.
"""

__version__ = "0.1.0"
