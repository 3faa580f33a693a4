"""What both fits predict at a compute budget, and the bootstrap interval they share.

Notable: intervals are percentile intervals of bootstrap refits (no normal approximation), so
they stay asymmetric where the estimate is (a power law extrapolated in log space is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """The central `confidence` interval of bootstrap samples (NaN samples ignored), or None."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size < 2:
        return None
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def check_flops(flops: float) -> float:
    flops = float(flops)
    if not (np.isfinite(flops) and flops > 0):
        raise ValueError(f"the compute budget must be positive and finite, got {flops!r} FLOPs")
    return flops


@dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal model size N, token count D (and, for the parametric fit, loss) at
    one budget C, each with its bootstrap interval (None when the fit ran no bootstrap)."""

    flops: float
    params: float
    tokens: float
    method: str
    loss: float | None = None
    params_interval: tuple[float, float] | None = None
    tokens_interval: tuple[float, float] | None = None
    loss_interval: tuple[float, float] | None = None
    confidence: float = 0.95

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def to_dict(self) -> dict:
        return {
            "flops": self.flops, "params": self.params, "tokens": self.tokens,
            "tokens_per_param": self.tokens_per_param, "loss": self.loss, "method": self.method,
            "params_interval": interval_as_list(self.params_interval),
            "tokens_interval": interval_as_list(self.tokens_interval),
            "loss_interval": interval_as_list(self.loss_interval), "confidence": self.confidence,
        }


def interval_as_list(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [float(interval[0]), float(interval[1])]
