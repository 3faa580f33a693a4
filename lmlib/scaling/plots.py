"""PNG charts of the scaling fits: isoFLOP curves, N_opt and D_opt against C, the loss
frontier, and the parametric fit's residuals. Each writes one file and returns its path;
matplotlib comes from lmlib.plots.pyplot (lazy import, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmlib.plots import pyplot
from lmlib.scaling.isoflop import IsoFlopFit
from lmlib.scaling.parametric import ParametricFit
from lmlib.scaling.runs import Run


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path)
    pyplot().close(figure)
    return path


def plot_isoflop_curves(fit: IsoFlopFit, path: str | Path) -> Path:
    """Loss against N at each budget: the runs, each budget's parabola, the lowest-loss run
    (filled) and the parabola's vertex (cross)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 5), dpi=110)
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, len(fit.budgets)))
    for budget, colour in zip(fit.budgets, colours):
        params = np.array([run.params for run in budget.runs])
        axis.plot(params, [run.loss for run in budget.runs], "o", color=colour, alpha=0.55,
                  markersize=4, label=f"C = {budget.flops:.0e}")
        if budget.parabola is not None:
            grid = np.geomspace(params.min(), params.max(), 100)
            axis.plot(grid, budget.parabola(grid), "-", color=colour, linewidth=1)
            axis.plot(budget.parabola.params, budget.parabola.loss, "x", color=colour,
                      markersize=8)
        axis.plot(budget.params, budget.best.loss, "o", color=colour, markersize=8,
                  markeredgecolor="black")
    axis.set_xscale("log")
    axis.set_xlabel("parameters N")
    axis.set_ylabel("final loss")
    axis.set_title("isoFLOP curves: lowest-loss run (filled), parabola vertex (x)")
    axis.legend(fontsize=7, ncol=2)
    return _save(figure, path)


def plot_compute_optimal(fit: IsoFlopFit, path: str | Path, extrapolate_to: float = 1e24,
                         estimator: str = "minimum") -> Path:
    """N_opt and D_opt against C: the budgets' minima, the power laws extended to
    `extrapolate_to`, and the bootstrap band of the predictions."""
    params_law, tokens_law = fit.law(estimator)
    budgets = np.array([budget.flops for budget in fit.budgets])
    grid = np.geomspace(budgets.min(), max(extrapolate_to, budgets.max()), 80)
    predictions = [fit.predict(flops, estimator) for flops in grid]
    if estimator == "parabola":
        shown = [b for b in fit.budgets if b.parabola is not None]
        points = {"params": [b.parabola.params for b in shown],
                  "tokens": [b.flops / (6.0 * b.parabola.params) for b in shown]}
        budgets = np.array([b.flops for b in shown])
    else:
        points = {"params": [b.params for b in fit.budgets],
                  "tokens": [b.tokens for b in fit.budgets]}
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    panels = (("params", params_law, "N_opt (parameters)", "#4c72b0"),
              ("tokens", tokens_law, "D_opt (tokens)", "#dd8452"))
    for axis, (key, law, label, colour) in zip(axes, panels):
        axis.plot(budgets, points[key], "o", color=colour, label="budget minima")
        axis.plot(grid, law(grid), "-", color=colour,
                  label=f"{law.coefficient:.3g} C^{law.exponent:.3f}")
        band = [getattr(p, f"{key}_interval") for p in predictions]
        if all(interval is not None for interval in band):
            axis.fill_between(grid, [b[0] for b in band], [b[1] for b in band], color=colour,
                              alpha=0.2, label=f"{fit.confidence:.0%} bootstrap band")
        axis.axvline(budgets.max(), color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("compute C (FLOPs)")
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    figure.suptitle(f"compute-optimal allocation, isoFLOP {estimator} estimator "
                    f"(dotted: largest budget run)")
    return _save(figure, path)


def pareto_frontier(runs: Sequence[Run]) -> list[Run]:
    """The runs no cheaper run beats: sorted by C, each with a loss below every cheaper one's."""
    frontier: list[Run] = []
    for run in sorted(runs, key=lambda run: (run.flops, run.loss)):
        if not frontier or run.loss < frontier[-1].loss:
            frontier.append(run)
    return frontier


def plot_loss_frontier(runs: Sequence[Run], path: str | Path,
                       parametric: ParametricFit | None = None,
                       extrapolate_to: float | None = None) -> Path:
    """Final loss against C for every included run (excluded ones with a finite loss as
    crosses), the empirical frontier of the included (lowest loss at or below each C) and, given a parametric fit, its compute-optimal loss L(N_opt(C), D_opt(C))
    with its bootstrap band."""
    included = [run for run in runs if run.included]
    if not included:
        raise ValueError("plot_loss_frontier: no included runs to plot")
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 5), dpi=110)
    flops = np.array([run.flops for run in included])
    axis.scatter(flops, [run.loss for run in included], s=10, color="#999999", alpha=0.6,
                 label="runs")
    dropped = [run for run in runs if not run.included and np.isfinite(run.loss)
               and run.loss > 0 and run.flops > 0]
    if dropped:
        axis.scatter([run.flops for run in dropped], [run.loss for run in dropped], s=16,
                     marker="x", color="#c44e52", alpha=0.7, label="excluded runs")
    frontier = pareto_frontier(included)
    axis.step([run.flops for run in frontier], [run.loss for run in frontier], where="post",
              color="black", linewidth=1.2, label="empirical frontier")
    if parametric is not None:
        grid = np.geomspace(flops.min(), max(extrapolate_to or 0.0, flops.max()), 80)
        optimal = [parametric.compute_optimal(c) for c in grid]
        axis.plot(grid, [o.loss for o in optimal], color="#c44e52",
                  label=f"parametric L_opt(C), E = {parametric.E:.3f}")
        if all(o.loss_interval is not None for o in optimal):
            axis.fill_between(grid, [o.loss_interval[0] for o in optimal],
                              [o.loss_interval[1] for o in optimal], color="#c44e52", alpha=0.2)
    axis.set_xscale("log")
    axis.set_xlabel("compute C (FLOPs)")
    axis.set_ylabel("final loss")
    axis.set_title("loss frontier")
    axis.legend(fontsize=8)
    return _save(figure, path)


def plot_parametric_residuals(fit: ParametricFit, path: str | Path) -> Path:
    """log L - log L_hat against N (coloured by D), and their histogram with the Huber delta."""
    residuals = fit.residuals()
    params = np.array([run.params for run in fit.runs])
    tokens = np.array([run.tokens for run in fit.runs])
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110,
                                         gridspec_kw={"width_ratios": [2, 1]})
    points = left.scatter(params, residuals, c=np.log10(tokens), s=12, cmap="viridis")
    figure.colorbar(points, ax=left, label="log10 D (tokens)")
    left.axhline(0.0, color="black", linewidth=0.8)
    left.set_xscale("log")
    left.set_xlabel("parameters N")
    left.set_ylabel("log L - log L_hat")
    left.set_title(f"residuals of the parametric fit ({len(residuals)} runs)")
    right.hist(residuals, bins=30, color="#4c72b0")
    for sign in (-1, 1):
        right.axvline(sign * fit.delta, color="#c44e52", linestyle=":", linewidth=1)
    right.set_xlabel("log residual (dotted: +-Huber delta)")
    right.set_ylabel("runs")
    return _save(figure, path)



def plot_prediction_check(runs: Sequence[Run], flops: float, predicted: float,
                          interval: tuple[float, float] | None, achieved: float | None,
                          path: str | Path) -> Path:
    """The held-out test at a glance: the sweep's losses against C, the loss predicted at the
    target budget with its interval, and the loss the run achieved there."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 5), dpi=110)
    included = [run for run in runs if run.included]
    axis.scatter([run.flops for run in included], [run.loss for run in included], s=10,
                 color="#999999", alpha=0.7, label="sweep runs (fitted)")
    frontier = pareto_frontier(included) if included else []
    axis.step([run.flops for run in frontier], [run.loss for run in frontier], where="post",
              color="black", linewidth=1.0, label="empirical frontier")
    error = None if interval is None else [[predicted - interval[0]], [interval[1] - predicted]]
    axis.errorbar([flops], [predicted], yerr=error, fmt="o", color="#c44e52", capsize=6,
                  label=f"predicted {predicted:.4f}")
    if achieved is not None:
        axis.scatter([flops], [achieved], marker="*", s=160, color="#4c72b0", zorder=3,
                     label=f"achieved {achieved:.4f} ({(achieved - predicted) / predicted:+.2%})")
    axis.set_xscale("log")
    axis.set_xlabel("compute C (FLOPs)")
    axis.set_ylabel("final validation loss")
    axis.set_title("held-out prediction against the run")
    axis.legend(fontsize=8)
    return _save(figure, path)
