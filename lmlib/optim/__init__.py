"""Optimizers and their helpers, written by us: AdamW, the cosine LR schedule, gradient clipping."""

from lmlib.optim.adamw import AdamW
from lmlib.optim.clipping import gradient_clipping
from lmlib.optim.schedule import get_lr_cosine_schedule

__all__ = ["AdamW", "get_lr_cosine_schedule", "gradient_clipping"]
