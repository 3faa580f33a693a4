"""Chinchilla approach 3: the parametric law L(N, D) = E + A / N^alpha + B / D^beta.

Fitted the way the replication fits it (Besiroglu et al. 2024, "Chinchilla Scaling: A
replication attempt", arXiv:2404.10102, and their analyzing-chinchilla notebook):
- parameters a = log A, b = log B, e = log E, alpha, beta, so the prediction in log space is
  LSE(a - alpha log N, b - beta log D, e), a log-sum-exp that stays finite for any start;
- objective: the *sum* (not the mean: the replication traces Hoffmann et al.'s early stop to a
  mean's tiny loss scale) of Huber losses with delta = 1e-3 on log L - LSE(...);
- L-BFGS-B from every point of a grid of initialisations (theirs: alpha, beta in 0..2 by 0.5,
  e in -1..1 by 0.5, a, b in 0..25 by 5: 4,500 starts), keeping the lowest objective among the
  starts that converged. We pass the analytic gradient, so each start takes milliseconds,
  and hand L-BFGS-B the objective divided by delta (same minimiser): on the raw sum, about
  1e-3, its absolute tolerances stop a refit started at the optimum before it moves;
- intervals: refits on runs resampled with replacement (the replication's 4,000 resamples each
  started from one point; ours start from the full-data optimum), standard errors as the
  standard deviation of the resampled A, B, E, alpha, beta.
The compute-optimal allocation under C = 6 N D follows in closed form (Hoffmann et al. eq. 4):
N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6)^(alpha/(alpha+beta)) / G,
G = (alpha A / (beta B))^(1/(alpha+beta)).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from lmlib.scaling.prediction import (
    ComputeOptimal,
    check_confidence,
    check_flops,
    interval_as_list,
    percentile_interval,
)
from lmlib.scaling.runs import Run, split_runs

PARAMETER_NAMES = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class InitialGrid:
    """Starting points for L-BFGS-B, in the optimiser's coordinates (a = log A, b = log B,
    e = log E): every combination is one start."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]

    def points(self) -> np.ndarray:
        """(starts, 5) in the order a, b, e, alpha, beta."""
        return np.array(list(itertools.product(self.a, self.b, self.e, self.alpha, self.beta)),
                        dtype=float)

    def __len__(self) -> int:
        return len(self.a) * len(self.b) * len(self.e) * len(self.alpha) * len(self.beta)


# The replication's grid (4,500 starts).
REPLICATION_GRID = InitialGrid(
    a=(0.0, 5.0, 10.0, 15.0, 20.0, 25.0), b=(0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    e=(-1.0, -0.5, 0.0, 0.5, 1.0), alpha=(0.0, 0.5, 1.0, 1.5, 2.0), beta=(0.0, 0.5, 1.0, 1.5, 2.0),
)
# Every other value of it (3 x 3 x 3 x 3 x 3 = 243 starts): the same span, a twentieth the time.
COARSE_GRID = InitialGrid(
    a=(0.0, 10.0, 20.0), b=(0.0, 10.0, 20.0), e=(-1.0, 0.0, 1.0), alpha=(0.0, 1.0, 2.0),
    beta=(0.0, 1.0, 2.0),
)


def huber_objective(theta: np.ndarray, log_params: np.ndarray, log_tokens: np.ndarray,
                    log_loss: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Sum of Huber(log L - LSE(a - alpha log N, b - beta log D, e)) and its gradient in
    theta = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_params, b - beta * log_tokens,
                      np.full_like(log_params, e)])  # (3, runs)
    # log-sum-exp by hand: scipy's logsumexp costs three quarters of a fit in array-API checks
    largest = terms.max(axis=0)
    shifted = np.exp(terms - largest)
    total = shifted.sum(axis=0)
    predicted = largest + np.log(total)
    weights = shifted / total  # d predicted / d term: the softmax of the terms
    residual = log_loss - predicted
    quadratic = np.abs(residual) <= delta
    value = np.where(quadratic, 0.5 * residual**2, delta * (np.abs(residual) - 0.5 * delta)).sum()
    slope = np.where(quadratic, residual, delta * np.sign(residual))  # d Huber / d residual
    pulled = slope * weights  # d value / d term = -slope * weight
    gradient = np.array([
        -pulled[0].sum(), -pulled[1].sum(), -pulled[2].sum(),
        (pulled[0] * log_params).sum(), (pulled[1] * log_tokens).sum(),
    ])
    return float(value), gradient


def _scaled_objective(theta: np.ndarray, *arrays_and_delta) -> tuple[float, np.ndarray]:
    """The objective divided by delta: about the sum of |log residuals|, of order 1. L-BFGS-B's
    stopping tolerances are absolute for values below 1, so on the raw sum (~1e-3 here) it stops
    at once when started near an optimum, and bootstrap refits would never move (the
    replication's diagnosis of Hoffmann et al.'s fit, one scale further)."""
    value, gradient = huber_objective(theta, *arrays_and_delta)
    delta = arrays_and_delta[-1]
    return value / delta, gradient / delta


def _minimize_from(start: np.ndarray, arrays: tuple, delta: float):
    """One L-BFGS-B run; the result's `fun` is the unscaled objective."""
    with np.errstate(over="ignore", invalid="ignore"):
        result = minimize(_scaled_objective, start, args=(*arrays, delta), jac=True,
                          method="L-BFGS-B")
    result.fun = result.fun * delta
    return result


def _best_of(starts: np.ndarray, arrays: tuple, delta: float) -> tuple[np.ndarray, float, int]:
    """(theta, objective, starts that converged) of the best converged start; the best finite
    one if none reported convergence."""
    best, best_value, best_any, best_any_value, converged = None, np.inf, None, np.inf, 0
    for start in starts:
        result = _minimize_from(start, arrays, delta)
        if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
            continue
        if result.fun < best_any_value:
            best_any, best_any_value = result.x, float(result.fun)
        if result.success:
            converged += 1
            if result.fun < best_value:
                best, best_value = result.x, float(result.fun)
    if best is None:
        best, best_value = best_any, best_any_value
    if best is None:
        raise RuntimeError("fit_parametric: no start of L-BFGS-B reached a finite objective")
    return np.asarray(best, dtype=float), best_value, converged


def _natural(theta: np.ndarray) -> np.ndarray:
    """(a, b, e, alpha, beta) -> (E, A, B, alpha, beta); works on (..., 5) arrays."""
    theta = np.asarray(theta, dtype=float)
    return np.stack([np.exp(theta[..., 2]), np.exp(theta[..., 0]), np.exp(theta[..., 1]),
                     theta[..., 3], theta[..., 4]], axis=-1)


def compute_optimal_allocation(flops: ArrayLike, E: ArrayLike, A: ArrayLike, B: ArrayLike,
                               alpha: ArrayLike, beta: ArrayLike
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N_opt, D_opt, L_opt) at C = 6 N D: the closed form of Hoffmann et al. (2022) eq. 4.
    Accepts arrays of C (or arrays of parameters, broadcast against C)."""
    flops = np.asarray(flops, dtype=float)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    params = G * (flops / 6.0) ** (beta / (alpha + beta))
    tokens = (flops / 6.0) ** (alpha / (alpha + beta)) / G
    return params, tokens, E + A / params**alpha + B / tokens**beta


@dataclass(frozen=True)
class ParametricFit:
    """L(N, D) = E + A / N^alpha + B / D^beta fitted by Huber loss in log space.

    `bootstrap_parameters` holds one row (E, A, B, alpha, beta) per resampled refit; standard
    errors and intervals come from it and are None without a bootstrap."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    delta: float
    runs: tuple[Run, ...]
    excluded: tuple[Run, ...]
    starts: int
    converged_starts: int
    seconds: float  # the whole fit, bootstrap included
    bootstrap_seconds: float = 0.0
    confidence: float = 0.95
    bootstrap_parameters: np.ndarray = field(default_factory=lambda: np.empty((0, 5)),
                                             repr=False, compare=False)

    @property
    def parameters(self) -> dict[str, float]:
        return dict(zip(PARAMETER_NAMES, (self.E, self.A, self.B, self.alpha, self.beta)))

    @property
    def standard_errors(self) -> dict[str, float] | None:
        if len(self.bootstrap_parameters) < 2:
            return None
        deviations = np.std(self.bootstrap_parameters, axis=0, ddof=1)
        return dict(zip(PARAMETER_NAMES, (float(value) for value in deviations)))

    @property
    def intervals(self) -> dict[str, tuple[float, float]] | None:
        if len(self.bootstrap_parameters) < 2:
            return None
        return {name: percentile_interval(self.bootstrap_parameters[:, column], self.confidence)
                for column, name in enumerate(PARAMETER_NAMES)}

    @property
    def params_exponent(self) -> float:
        """a in N_opt proportional to C^a: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def tokens_exponent(self) -> float:
        """b in D_opt proportional to C^b: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    def loss(self, params: ArrayLike, tokens: ArrayLike) -> np.ndarray:
        """Predicted loss at N parameters and D tokens (scalars or arrays)."""
        params, tokens = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta

    def predict_loss(self, params: float, tokens: float) -> tuple[float, tuple[float, float] | None]:
        """The loss at N parameters and D tokens, with the bootstrap refits' percentile interval
        (None without a bootstrap): what a held-out run is tested against."""
        interval = None
        if len(self.bootstrap_parameters) >= 2:
            E, A, B, alpha, beta = self.bootstrap_parameters.T
            samples = E + A / params**alpha + B / tokens**beta
            interval = percentile_interval(samples, self.confidence)
        return float(self.loss(params, tokens)), interval

    def residuals(self) -> np.ndarray:
        """log L - log L_hat for each run in the fit, the quantity the Huber loss saw."""
        params = np.array([run.params for run in self.runs])
        tokens = np.array([run.tokens for run in self.runs])
        losses = np.array([run.loss for run in self.runs])
        return np.log(losses) - np.log(self.loss(params, tokens))

    def compute_optimal(self, flops: float) -> ComputeOptimal:
        """N_opt, D_opt and the loss they reach at C FLOPs (C = 6 N D), with bootstrap intervals."""
        flops = check_flops(flops)
        params, tokens, loss = compute_optimal_allocation(flops, *self.parameters.values())
        intervals: list[tuple[float, float] | None] = [None, None, None]
        if len(self.bootstrap_parameters) >= 2:
            samples = compute_optimal_allocation(flops, *self.bootstrap_parameters.T)
            intervals = [percentile_interval(sample, self.confidence) for sample in samples]
        return ComputeOptimal(
            flops=flops, params=float(params), tokens=float(tokens), loss=float(loss),
            method="parametric (approach 3)", params_interval=intervals[0],
            tokens_interval=intervals[1], loss_interval=intervals[2], confidence=self.confidence,
        )

    def to_dict(self) -> dict:
        errors, intervals = self.standard_errors, self.intervals
        residuals = self.residuals()
        return {
            "method": "parametric (Chinchilla approach 3)",
            "law": "L(N, D) = E + A / N^alpha + B / D^beta",
            "parameters": self.parameters,
            "standard_errors": errors,
            "intervals": None if intervals is None else
            {name: interval_as_list(value) for name, value in intervals.items()},
            "confidence": self.confidence,
            "params_exponent": self.params_exponent,
            "tokens_exponent": self.tokens_exponent,
            "objective": self.objective, "huber_delta": self.delta,
            "residual_rms_log_loss": float(np.sqrt(np.mean(residuals**2))),
            "runs": len(self.runs), "starts": self.starts,
            "converged_starts": self.converged_starts,
            "bootstrap": len(self.bootstrap_parameters), "seconds": self.seconds,
            "bootstrap_seconds": self.bootstrap_seconds,
            "excluded": [run.to_dict() for run in self.excluded],
        }


def fit_parametric(
    runs: Iterable[Run],
    *,
    delta: float = 1e-3,
    grid: InitialGrid | Sequence[Sequence[float]] = REPLICATION_GRID,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> ParametricFit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta to the included runs (see the module docstring).

    `grid`: an InitialGrid, or explicit starts as rows (a, b, e, alpha, beta).
    `bootstrap`: number of refits on runs resampled with replacement (0: no intervals)."""
    started = time.perf_counter()
    included, excluded = split_runs(runs, "fit_parametric")
    if len(included) < 6:
        raise ValueError(f"fit_parametric: needs at least 6 included runs for 5 parameters, got "
                         f"{len(included)} ({len(excluded)} excluded)")
    if not delta > 0:
        raise ValueError(f"fit_parametric: Huber delta must be positive, got {delta}")
    if bootstrap < 0:
        raise ValueError(f"fit_parametric: bootstrap must be >= 0, got {bootstrap}")
    check_confidence(confidence)
    starts = grid.points() if isinstance(grid, InitialGrid) else np.asarray(grid, dtype=float)
    if starts.ndim != 2 or starts.shape[1] != 5 or len(starts) == 0:
        raise ValueError("fit_parametric: grid must be an InitialGrid or rows of 5 starting "
                         f"values (a, b, e, alpha, beta), got shape {starts.shape}")

    log_params = np.log([run.params for run in included])
    log_tokens = np.log([run.tokens for run in included])
    log_loss = np.log([run.loss for run in included])
    theta, objective, converged = _best_of(starts, (log_params, log_tokens, log_loss), delta)

    searched = time.perf_counter()
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(included), size=len(included))
        result = _minimize_from(theta, (log_params[pick], log_tokens[pick], log_loss[pick]), delta)
        if np.all(np.isfinite(result.x)):
            resampled.append(result.x)
    E, A, B, alpha, beta = _natural(theta)
    return ParametricFit(
        E=float(E), A=float(A), B=float(B), alpha=float(alpha), beta=float(beta),
        objective=objective, delta=delta, runs=tuple(included), excluded=tuple(excluded),
        starts=len(starts), converged_starts=converged,
        seconds=time.perf_counter() - started,
        bootstrap_seconds=time.perf_counter() - searched, confidence=confidence,
        bootstrap_parameters=_natural(np.array(resampled)) if resampled else np.empty((0, 5)),
    )
