"""pass@k against enumeration, Wilson intervals against published values, the bootstrap's
determinism, and the standard error."""

import itertools
import math

import numpy as np
import pytest

from lmlib.eval import (
    bootstrap_interval,
    mean_and_stderr,
    mean_pass_at_k,
    pass_at_k,
    wilson_interval,
)


def pass_at_k_by_enumeration(n, c, k):
    """The fraction of k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(sample < c for sample in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration_over_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(pass_at_k_by_enumeration(n, c, k),
                                                       abs=1e-12), (n, c, k)


def test_pass_at_k_edge_cases():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # n - c < k: every 5 samples hold a correct one
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the fraction correct
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    # large n stays finite where C(n, k) in floats would overflow
    assert 0 < pass_at_k(100_000, 10, 1000) < 1


@pytest.mark.parametrize("n, c, k", [(5, 2, 6), (5, 2, 0), (5, 6, 1), (5, -1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k_averages_problems():
    problems = [(10, 0), (10, 10), (10, 3)]
    assert mean_pass_at_k(problems, 1) == pytest.approx((0 + 1 + 0.3) / 3)
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)


@pytest.mark.parametrize("successes, total, low, high", [
    (8, 10, 0.4902, 0.9433),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
])
def test_wilson_interval_known_values(successes, total, low, high):
    interval = wilson_interval(successes, total)
    assert interval.low == pytest.approx(low, abs=1e-4)
    assert interval.high == pytest.approx(high, abs=1e-4)


def test_wilson_interval_widens_with_confidence_and_rejects_bad_counts():
    narrow, wide = wilson_interval(8, 10, 0.8), wilson_interval(8, 10, 0.99)
    assert wide.low < narrow.low and narrow.high < wide.high
    for successes, total in [(11, 10), (-1, 10), (0, 0)]:
        with pytest.raises(ValueError):
            wilson_interval(successes, total)


def test_mean_and_stderr_uses_the_sample_deviation():
    mean, stderr = mean_and_stderr([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert stderr == pytest.approx(1 / math.sqrt(3))
    assert math.isnan(mean_and_stderr([4.0]).stderr)
    with pytest.raises(ValueError):
        mean_and_stderr([])


def test_bootstrap_interval_is_deterministic_per_seed():
    values = np.random.default_rng(7).random(200)
    first = bootstrap_interval(values, np.mean, samples=500, seed=3)
    assert bootstrap_interval(values, np.mean, samples=500, seed=3) == first
    assert bootstrap_interval(values, np.mean, samples=500, seed=4) != first


def test_bootstrap_interval_of_the_mean_agrees_with_the_normal_approximation():
    values = (np.random.default_rng(0).random(1000) < 0.5).astype(float)
    mean, stderr = mean_and_stderr(values.tolist())
    low, high = bootstrap_interval(values, np.mean, samples=2000, seed=0)
    assert low == pytest.approx(mean - 1.96 * stderr, abs=0.005)
    assert high == pytest.approx(mean + 1.96 * stderr, abs=0.005)
    assert bootstrap_interval([2.0, 2.0, 2.0], np.median) == (2.0, 2.0)
