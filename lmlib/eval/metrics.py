"""Scores over many problems, and how far to trust them: pass@k, intervals, standard errors.

Notable:
- `pass_at_k` is the unbiased estimator of Chen et al. 2021 (Codex, section 2.1): with n samples
  of which c are correct, 1 - C(n-c, k) / C(n, k), computed as the product
  1 - prod_{i=n-c+1..n} (1 - k/i), never through binomials that overflow;
- `wilson_interval` is the Wilson score interval for a binomial rate: unlike the normal
  approximation it stays inside [0, 1] and is not zero-width at 0 or n successes;
- `mean_and_stderr` uses the sample standard deviation (n - 1), as lm-evaluation-harness's
  mean_stderr does; one value has no standard error (NaN);
- `bootstrap_interval` is the percentile bootstrap with a seeded numpy Generator, one resample
  at a time (memory stays O(len(values))): the same seed gives the same interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np


class Interval(NamedTuple):
    low: float
    high: float


class MeanAndStderr(NamedTuple):
    mean: float
    stderr: float


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n, c of them
    correct, is correct."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n (k samples out of the n drawn), "
                         f"got n={n}, k={k}: draw at least k samples per problem")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(per_problem: Sequence[tuple[int, int]], k: int) -> float:
    """Mean of pass_at_k over problems given as (n samples, c correct)."""
    if not per_problem:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, c, k) for n, c in per_problem) / len(per_problem)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _two_sided_z(confidence: float) -> float:
    _check_confidence(confidence)
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for the rate successes / total."""
    if total <= 0 or not 0 <= successes <= total:
        raise ValueError(f"wilson_interval needs 0 <= successes <= total and total > 0, "
                         f"got {successes} / {total}")
    z = _two_sided_z(confidence)
    rate = successes / total
    denominator = 1 + z * z / total
    center = (rate + z * z / (2 * total)) / denominator
    half_width = z / denominator * math.sqrt(rate * (1 - rate) / total
                                             + z * z / (4 * total * total))
    return Interval(max(0.0, center - half_width), min(1.0, center + half_width))


def mean_and_stderr(values: Sequence[float]) -> MeanAndStderr:
    """(mean, standard error of the mean); the error is NaN for a single value."""
    if len(values) == 0:
        raise ValueError("mean_and_stderr needs at least one value")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return MeanAndStderr(mean, math.nan)
    return MeanAndStderr(mean, statistics.stdev(values) / math.sqrt(len(values)))


def bootstrap_interval(values: Sequence[float], statistic: Callable[[np.ndarray], float],
                       samples: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> Interval:
    """Percentile bootstrap interval of `statistic` (called on a numpy array of resampled
    values) from `samples` resamples with replacement."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    if samples < 1:
        raise ValueError(f"bootstrap_interval needs samples >= 1, got {samples}")
    _check_confidence(confidence)
    generator = np.random.default_rng(seed)
    replicates = np.array([statistic(data[generator.integers(0, data.size, data.size)])
                           for _ in range(samples)], dtype=float)
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(low), float(high))
