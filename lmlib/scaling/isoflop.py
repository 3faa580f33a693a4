"""Chinchilla approach 2: isoFLOP curves, their minima, and power laws in C through them.

Notable:
- runs are grouped by their budget C (`Run.flops`, to 6 significant digits); at each budget the
  run with the lowest final loss gives N_opt(C), and D_opt(C) = C / (6 N_opt) (the 6ND
  convention of the data, whatever the runs' own token counts);
- N_opt = k_N C^a and D_opt = k_D C^b are least-squares lines in (log C, log N_opt) and
  (log C, log D_opt); since log D_opt = log C - log 6 - log N_opt, b = 1 - a exactly;
- a second estimator, as in Hoffmann et al. (2022) section 3.2: a parabola in log N fitted to
  each budget's losses, whose vertex is that budget's N_opt. Its known bias: a parabola is a
  second-order Taylor expansion of the isoFLOP curve, which is not symmetric in log N (under
  L = E + A/N^alpha + B/D^beta the two sides rise at different rates unless alpha = beta and
  the terms balance), so the vertex moves towards the flatter side; and when the sampled sizes
  are not centred on the optimum, the far side of the grid weights the fit and pulls the vertex
  further. Where the offset is the same at every budget the bias shifts k_N, not a; where it
  drifts with C (a fixed grid of sizes while the optimum moves), it biases the exponent too.
  The lowest-loss run has no shape bias but is quantised to the grid's spacing;
- intervals: pairs bootstrap over budgets (resample the (C, N_opt) points with replacement and
  refit the line). The runs inside a budget are a designed grid of sizes, not a sample, so
  resampling them would change the design rather than mimic a repeat of the experiment.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike

from lmlib.scaling.prediction import (
    ComputeOptimal,
    check_confidence,
    check_flops,
    interval_as_list,
    percentile_interval,
)
from lmlib.scaling.runs import Run, split_runs

ESTIMATORS = ("minimum", "parabola")


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient * C^exponent, a least-squares line in (log C, log y)."""

    coefficient: float
    exponent: float
    exponent_interval: tuple[float, float] | None = None

    def __call__(self, flops: ArrayLike) -> np.ndarray:
        return self.coefficient * np.asarray(flops, dtype=float) ** self.exponent

    def to_dict(self) -> dict:
        return {"coefficient": self.coefficient, "exponent": self.exponent,
                "exponent_interval": interval_as_list(self.exponent_interval)}


@dataclass(frozen=True)
class Parabola:
    """loss = c2 (ln N)^2 + c1 ln N + c0 over one budget's runs; the vertex is its N_opt."""

    coefficients: tuple[float, float, float]
    params: float  # the vertex, exp(-c1 / (2 c2))
    loss: float  # the loss at the vertex
    inside_sampled_range: bool

    def __call__(self, params: ArrayLike) -> np.ndarray:
        return np.polyval(self.coefficients, np.log(np.asarray(params, dtype=float)))

    def to_dict(self) -> dict:
        return {"coefficients": list(self.coefficients), "params": self.params,
                "loss": self.loss, "inside_sampled_range": self.inside_sampled_range}


@dataclass(frozen=True)
class IsoFlopBudget:
    """One budget's runs (by size) and its two estimates of N_opt."""

    flops: float
    runs: tuple[Run, ...]
    best: Run
    parabola: Parabola | None
    parabola_issue: str = ""  # why there is no parabola (not convex), else empty

    @property
    def params(self) -> float:
        """N_opt: the size of the lowest-loss run."""
        return self.best.params

    @property
    def tokens(self) -> float:
        """D_opt = C / (6 N_opt)."""
        return self.flops / (6.0 * self.best.params)

    @property
    def minimum_at_edge(self) -> bool:
        """The lowest loss is at the smallest or largest size: the optimum may lie outside."""
        return self.best is self.runs[0] or self.best is self.runs[-1]

    def to_dict(self) -> dict:
        return {
            "flops": self.flops, "runs": len(self.runs), "params": self.params,
            "tokens": self.tokens, "loss": self.best.loss,
            "minimum_at_edge": self.minimum_at_edge,
            "parabola": None if self.parabola is None else self.parabola.to_dict(),
            "parabola_issue": self.parabola_issue,
        }


def _line(log_flops: np.ndarray, log_values: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line."""
    slope, intercept = np.polyfit(log_flops, log_values, 1)
    return float(intercept), float(slope)


def _bootstrap_lines(log_flops: np.ndarray, log_params: np.ndarray, resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(resamples, 2) rows of (intercept, slope) on budgets drawn with replacement; a draw with
    a single distinct budget (no slope) is drawn again."""
    lines = np.empty((resamples, 2))
    filled = 0
    while filled < resamples:
        pick = rng.integers(0, len(log_flops), size=len(log_flops))
        if np.ptp(log_flops[pick]) == 0:
            continue
        lines[filled] = _line(log_flops[pick], log_params[pick])
        filled += 1
    return lines


def _fit_parabola(runs: tuple[Run, ...]) -> tuple[Parabola | None, str]:
    log_params = np.log([run.params for run in runs])
    losses = np.array([run.loss for run in runs])
    c2, c1, c0 = (float(value) for value in np.polyfit(log_params, losses, 2))
    if c2 <= 0:
        return None, (f"losses are not convex in log N (curvature {c2:.3g}): the sizes do not "
                      f"bracket the optimum")
    vertex = -c1 / (2 * c2)
    return Parabola(
        coefficients=(c2, c1, c0), params=float(np.exp(vertex)),
        loss=float(np.polyval((c2, c1, c0), vertex)),
        inside_sampled_range=bool(log_params.min() <= vertex <= log_params.max()),
    ), ""


def group_by_budget(runs: Iterable[Run]) -> dict[float, list[Run]]:
    """Runs by budget, sorted by C: budgets equal to 6 significant digits are one, keyed by
    the first such run's `flops`."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[f"{run.flops:.6g}"].append(run)
    return {group[0].flops: group for group in sorted(groups.values(), key=lambda g: g[0].flops)}


def snap_to_budgets(runs: Iterable[Run], budgets: Iterable[float],
                    tolerance: float = 0.03) -> list[Run]:
    """Runs whose C lies within `tolerance` decades of a planned budget, with C set to that
    budget; the other included runs marked excluded, with the reason. For data whose C was
    measured or read off a plot rather than planned (the Chinchilla extraction); N and D are
    kept as they are."""
    values = sorted(float(budget) for budget in budgets)
    if not values or not all(np.isfinite(value) and value > 0 for value in values):
        raise ValueError(f"snap_to_budgets: budgets must be positive, finite and not empty, "
                         f"got {values}")
    planned = np.log10(values)
    if tolerance <= 0:
        raise ValueError(f"snap_to_budgets: tolerance must be positive, got {tolerance}")
    snapped = []
    for run in runs:
        if not run.included or not (np.isfinite(run.flops) and run.flops > 0):
            snapped.append(run)  # a bad C is left for the fit's own check to name
            continue
        distance = np.abs(np.log10(run.flops) - planned)
        nearest = int(np.argmin(distance))
        if distance[nearest] <= tolerance:
            snapped.append(replace(run, flops=values[nearest]))
        else:
            snapped.append(run.excluded_because(
                f"C={run.flops:.3g} is not within {tolerance} decades of a planned budget"))
    return snapped


@dataclass(frozen=True)
class IsoFlopFit:
    """Approach 2's result: per-budget minima and the power laws through them (two estimators:
    "minimum", the lowest-loss run, and "parabola", the vertex of a parabola in log N)."""

    budgets: tuple[IsoFlopBudget, ...]
    params_law: PowerLaw  # N_opt = k_N C^a from the lowest-loss runs
    tokens_law: PowerLaw  # D_opt = k_D C^b
    parabola_params_law: PowerLaw | None
    parabola_tokens_law: PowerLaw | None
    excluded: tuple[Run, ...]
    bootstrap: int
    confidence: float
    seed: int
    seconds: float
    # (resamples, 2) rows of (log k_N, a) per estimator
    bootstrap_lines: dict[str, np.ndarray] = field(default_factory=dict, repr=False,
                                                   compare=False)

    @property
    def runs(self) -> tuple[Run, ...]:
        return tuple(run for budget in self.budgets for run in budget.runs)

    def law(self, estimator: str = "minimum") -> tuple[PowerLaw, PowerLaw]:
        """(N_opt law, D_opt law) of one estimator."""
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if estimator == "parabola":
            if self.parabola_params_law is None or self.parabola_tokens_law is None:
                raise ValueError("this fit has no parabola estimator (fit_isoflop(parabola=False)"
                                 " or fewer than 2 budgets with a convex parabola)")
            return self.parabola_params_law, self.parabola_tokens_law
        return self.params_law, self.tokens_law

    def predict(self, flops: float, estimator: str = "minimum") -> ComputeOptimal:
        """N_opt and D_opt at C FLOPs from one estimator's power laws, with the percentile
        interval of the bootstrap refits (C = 6 N D, so D's interval mirrors N's)."""
        flops = check_flops(flops)
        params_law, tokens_law = self.law(estimator)
        params_interval = tokens_interval = None
        lines = self.bootstrap_lines.get(estimator)
        if lines is not None and len(lines) >= 2:
            params_samples = np.exp(lines[:, 0] + lines[:, 1] * np.log(flops))
            params_interval = percentile_interval(params_samples, self.confidence)
            tokens_interval = percentile_interval(flops / (6.0 * params_samples),
                                                  self.confidence)
        return ComputeOptimal(
            flops=flops, params=float(params_law(flops)), tokens=float(tokens_law(flops)),
            method=f"isoFLOP {estimator} (approach 2)", params_interval=params_interval,
            tokens_interval=tokens_interval, confidence=self.confidence,
        )

    def to_dict(self) -> dict:
        return {
            "method": "isoFLOP (Chinchilla approach 2)",
            "params_law": self.params_law.to_dict(), "tokens_law": self.tokens_law.to_dict(),
            "parabola_params_law": None if self.parabola_params_law is None
            else self.parabola_params_law.to_dict(),
            "parabola_tokens_law": None if self.parabola_tokens_law is None
            else self.parabola_tokens_law.to_dict(),
            "budgets": [budget.to_dict() for budget in self.budgets],
            "runs": len(self.runs), "bootstrap": self.bootstrap,
            "confidence": self.confidence, "seed": self.seed, "seconds": self.seconds,
            "excluded": [run.to_dict() for run in self.excluded],
        }


def _laws(flops: np.ndarray, params: np.ndarray, bootstrap: int, confidence: float,
          rng: np.random.Generator) -> tuple[PowerLaw, PowerLaw, np.ndarray]:
    log_flops, log_params = np.log(flops), np.log(params)
    intercept, slope = _line(log_flops, log_params)
    tokens_intercept, tokens_slope = _line(log_flops, np.log(flops / (6.0 * params)))
    lines = _bootstrap_lines(log_flops, log_params, bootstrap, rng)
    params_interval = percentile_interval(lines[:, 1], confidence) if bootstrap else None
    # b = 1 - a for every refit, so b's interval is a's reflected
    tokens_interval = (None if params_interval is None
                       else (1.0 - params_interval[1], 1.0 - params_interval[0]))
    return (PowerLaw(float(np.exp(intercept)), slope, params_interval),
            PowerLaw(float(np.exp(tokens_intercept)), tokens_slope, tokens_interval), lines)


def fit_isoflop(
    runs: Iterable[Run],
    *,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    parabola: bool = True,
) -> IsoFlopFit:
    """Approach 2 on the included runs (module docstring). Needs at least 2 budgets, and with
    `parabola` at least 3 runs in every budget."""
    started = time.perf_counter()
    included, excluded = split_runs(runs, "fit_isoflop")
    if bootstrap < 0:
        raise ValueError(f"fit_isoflop: bootstrap must be >= 0, got {bootstrap}")
    check_confidence(confidence)
    groups = group_by_budget(included)
    if len(groups) < 2:
        raise ValueError(f"fit_isoflop: needs runs at 2 or more compute budgets to fit a power "
                         f"law, got {len(groups)} ({len(included)} included runs, "
                         f"{len(excluded)} excluded)")
    budgets = []
    for flops, group in groups.items():
        ordered = tuple(sorted(group, key=lambda run: run.params))
        fitted, issue = None, ""
        if parabola:
            if len(ordered) < 3:
                raise ValueError(f"fit_isoflop: the budget C={flops:.3g} has {len(ordered)} "
                                 f"included run(s); a parabola in log N needs 3 (add runs, or "
                                 f"pass parabola=False)")
            fitted, issue = _fit_parabola(ordered)
        budgets.append(IsoFlopBudget(flops=flops, runs=ordered,
                                     best=min(ordered, key=lambda run: run.loss),
                                     parabola=fitted, parabola_issue=issue))

    rng = np.random.default_rng(seed)
    flops = np.array([budget.flops for budget in budgets])
    params_law, tokens_law, lines = _laws(flops, np.array([b.params for b in budgets]),
                                          bootstrap, confidence, rng)
    bootstrap_lines = {"minimum": lines}
    parabola_params_law = parabola_tokens_law = None
    convex = [budget for budget in budgets if budget.parabola is not None]
    if len(convex) >= 2:
        parabola_params_law, parabola_tokens_law, bootstrap_lines["parabola"] = _laws(
            np.array([budget.flops for budget in convex]),
            np.array([budget.parabola.params for budget in convex]), bootstrap, confidence, rng)
    return IsoFlopFit(
        budgets=tuple(budgets), params_law=params_law, tokens_law=tokens_law,
        parabola_params_law=parabola_params_law, parabola_tokens_law=parabola_tokens_law,
        excluded=tuple(excluded), bootstrap=bootstrap, confidence=confidence, seed=seed,
        seconds=time.perf_counter() - started, bootstrap_lines=bootstrap_lines,
    )
