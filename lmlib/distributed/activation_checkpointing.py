"""Activation checkpointing applied from outside the model (torchtitan style).

`apply_activation_checkpointing(model, "every")` makes every Transformer block keep only its
input during the forward pass and recompute its activations in backward (non-reentrant
torch.utils.checkpoint); "every_k" does so for every k-th block only, trading less memory
saving for less recomputation. The block's `forward` is replaced on the instance, so
state-dict keys and parameter names do not change. Blocks run normally without autograd
(evaluation, generation).
"""

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

ACTIVATION_CHECKPOINTING_MODES = ("none", "every", "every_k")


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of repeated blocks: its `layers` ModuleList (TransformerLM's)."""
    blocks = getattr(model, "layers", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(
            f"{type(model).__name__} has no `layers` ModuleList: pass its blocks explicitly "
            "with apply_activation_checkpointing(model, mode, blocks=...)"
        )
    return blocks


def _checkpointed_forward(original_forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return original_forward(*args, **kwargs)
    return checkpoint(original_forward, *args, use_reentrant=False, **kwargs)


def apply_activation_checkpointing(model: nn.Module, mode: str = "every", every_k: int = 2,
                                   blocks: nn.ModuleList | None = None) -> list[int]:
    """Checkpoints blocks of `model` in place; returns the indices of the checkpointed blocks.

    mode "none" does nothing; "every" checkpoints each block; "every_k" blocks 0, k, 2k, ...
    """
    if mode not in ACTIVATION_CHECKPOINTING_MODES:
        raise ValueError(f"activation checkpointing mode must be one of "
                         f"{ACTIVATION_CHECKPOINTING_MODES}, got {mode!r}")
    if mode == "every_k" and every_k < 1:
        raise ValueError(f"every_k must be at least 1, got {every_k}")
    if mode == "none":
        return []
    blocks = blocks if blocks is not None else find_blocks(model)
    step = 1 if mode == "every" else every_k
    chosen = list(range(0, len(blocks), step))
    for index in chosen:
        block = blocks[index]
        if getattr(block, "_activation_checkpointed", False):
            continue
        block.forward = functools.partial(_checkpointed_forward, block.forward)
        block._activation_checkpointed = True
    return chosen
