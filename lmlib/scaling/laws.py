"""The `scaling_laws` stage: both fits over a sweep's runs, the plots, and the recommendation for
a target budget (numpy and scipy only; the runs come in as `Run`s).

Approach 2 needs runs at 2 or more budgets (its parabola estimator 3 runs in each); approach 3
needs 6 or more runs for its 5 parameters. A fit the runs cannot support is skipped with the
reason in the result, never faked. The recommendation (N, D and the loss) comes from approach 3
when it ran, else N and D from approach 2 without a loss.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmlib.artifacts import without_timings
from lmlib.scaling.isoflop import fit_isoflop, group_by_budget
from lmlib.scaling.parametric import COARSE_GRID, REPLICATION_GRID, fit_parametric
from lmlib.scaling.plots import (
    plot_compute_optimal,
    plot_isoflop_curves,
    plot_loss_frontier,
    plot_parametric_residuals,
)
from lmlib.scaling.prediction import percentile_interval
from lmlib.scaling.runs import Run, split_runs
from lmlib.stage import StageResult, check_positive

SCALING_LAWS_FILE = "scaling_laws.json"  # scaling_laws: both fits, the recommendation, the runs


@dataclass
class ScalingLawsConfig:
    """The target budget to recommend for, the bootstrap size and the approach-3 start grid."""

    target_budget: float | None = None  # None: the sweep's own target
    bootstrap: int = 200
    confidence: float = 0.95
    grid: str = "coarse"  # coarse: 243 starts; replication: 4,500 (same optimum, 20x the time)
    seed: int = 0
    plots: bool = True  # False where matplotlib is missing (the GPU machines)

    def __post_init__(self) -> None:
        check_positive(self, "target_budget", allow_none=True)
        if self.bootstrap < 0:
            raise ValueError(f"ScalingLawsConfig.bootstrap must be >= 0, got {self.bootstrap}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"ScalingLawsConfig.confidence must be in (0, 1), got "
                             f"{self.confidence}")
        if self.grid not in ("coarse", "replication"):
            raise ValueError(f"ScalingLawsConfig.grid must be coarse or replication, got "
                             f"{self.grid!r}")


@dataclass
class ScalingLawsResult(StageResult):
    """How many runs each fit used, the exponents, and the recommendation at the target."""

    MANIFEST_COUNTS = ("runs_fitted", "runs_excluded")

    runs_fitted: int
    runs_excluded: int
    target_budget: float
    recommended_params: float
    recommended_tokens: float
    recommended_by: str
    predicted_loss: float | None = None
    predicted_loss_low: float | None = None
    predicted_loss_high: float | None = None
    params_exponent: float | None = None  # a in N_opt ~ C^a (approach 2, lowest-loss runs)
    parabola_params_exponent: float | None = None
    parametric_E: float | None = None
    parametric_alpha: float | None = None
    parametric_beta: float | None = None
    approach2_skipped: str = ""
    approach3_skipped: str = ""
    isoflop_plot: Path | None = None
    compute_optimal_plot: Path | None = None
    frontier_plot: Path | None = None
    residuals_plot: Path | None = None


def fit_scaling_laws(runs: Sequence[Run], output_dir: Path,
                     config: ScalingLawsConfig) -> ScalingLawsResult:
    """Fit both approaches to `runs`, write the plots and scaling_laws.json to output_dir."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    included, excluded = split_runs(runs, "fit_scaling_laws")
    if config.target_budget is None:
        raise ValueError("ScalingLawsConfig.target_budget is not set: name the budget to "
                         "recommend a model for")
    if config.target_budget <= max((run.flops for run in included), default=0):
        raise ValueError(f"target_budget={config.target_budget:g} must exceed every budget of "
                         "the runs: the recommendation is an extrapolation, tested by "
                         "scaling_check")
    isoflop = parametric = None
    skipped = {"approach2": "", "approach3": ""}
    try:
        groups = group_by_budget(included)
        isoflop = fit_isoflop(runs, bootstrap=config.bootstrap, confidence=config.confidence,
                              seed=config.seed,
                              parabola=all(len(group) >= 3 for group in groups.values()))
    except ValueError as error:
        skipped["approach2"] = str(error)
    try:
        grid = COARSE_GRID if config.grid == "coarse" else REPLICATION_GRID
        parametric = fit_parametric(runs, grid=grid, bootstrap=config.bootstrap,
                                    confidence=config.confidence, seed=config.seed)
    except ValueError as error:
        skipped["approach3"] = str(error)

    recommendation = None
    if parametric is not None:
        recommendation = parametric.compute_optimal(config.target_budget)
        if not (np.isfinite(recommendation.params) and np.isfinite(recommendation.tokens)
                and recommendation.params > 0 and recommendation.tokens > 0):
            skipped["approach3"] = (
                f"the fit is degenerate for recommending (E={parametric.E:.3g}, "
                f"alpha={parametric.alpha:.3g}, beta={parametric.beta:.3g} give N_opt="
                f"{recommendation.params:.3g}): the runs do not constrain both exponents")
            recommendation = None
    if recommendation is None:
        if isoflop is None:
            raise ValueError(f"no usable scaling law: approach 2: {skipped['approach2']}; "
                             f"approach 3: {skipped['approach3']}")
        recommendation = isoflop.predict(config.target_budget)
    result = ScalingLawsResult(
        runs_fitted=len(included), runs_excluded=len(excluded),
        target_budget=config.target_budget, recommended_params=recommendation.params,
        recommended_tokens=recommendation.tokens, recommended_by=recommendation.method,
        predicted_loss=recommendation.loss,
        predicted_loss_low=recommendation.loss_interval[0] if recommendation.loss_interval
        else None,
        predicted_loss_high=recommendation.loss_interval[1] if recommendation.loss_interval
        else None,
        approach2_skipped=skipped["approach2"], approach3_skipped=skipped["approach3"],
    )
    if config.plots:
        result.frontier_plot = plot_loss_frontier(list(runs), output_dir / "loss_frontier.png",
                                                  parametric=parametric,
                                                  extrapolate_to=config.target_budget)
    if isoflop is not None:
        result.params_exponent = isoflop.params_law.exponent
        if isoflop.parabola_params_law is not None:
            result.parabola_params_exponent = isoflop.parabola_params_law.exponent
        if config.plots:
            result.isoflop_plot = plot_isoflop_curves(isoflop,
                                                      output_dir / "isoflop_curves.png")
            result.compute_optimal_plot = plot_compute_optimal(
                isoflop, output_dir / "compute_optimal.png", extrapolate_to=config.target_budget)
    if parametric is not None:
        result.parametric_E, result.parametric_alpha = parametric.E, parametric.alpha
        result.parametric_beta = parametric.beta
        if config.plots:
            result.residuals_plot = plot_parametric_residuals(
                parametric, output_dir / "parametric_residuals.png")
    record = {
        "config": config.__dict__, "recommendation": recommendation.to_dict(),
        "approach2": isoflop.to_dict() if isoflop else {"skipped": skipped["approach2"]},
        "approach2_prediction": isoflop.predict(config.target_budget).to_dict() if isoflop
        else None,
        "approach3": parametric.to_dict() if parametric else {"skipped": skipped["approach3"]},
        "approach3_bootstrap": parametric.bootstrap_parameters.tolist() if parametric else [],
        "approach3_skipped": skipped["approach3"],
        "runs": [run.to_dict() for run in runs],
    }
    (output_dir / SCALING_LAWS_FILE).write_text(
        json.dumps(without_timings(record), indent=2, default=str) + "\n")
    return result


def predicted_loss(directory: Path, params: float, tokens: float
                   ) -> tuple[float, tuple[float, float] | None]:
    """The loss scaling_laws' approach-3 fit predicts at (N, D), with the percentile interval of
    its bootstrap refits (both recorded in scaling_laws.json)."""
    record = json.loads((Path(directory) / SCALING_LAWS_FILE).read_text())
    if record["approach3_skipped"]:
        raise ValueError(f"scaling_laws has no parametric fit to predict a loss with: "
                         f"{record['approach3_skipped']}")
    params, tokens = np.float64(params), np.float64(tokens)

    def loss(E, A, B, alpha, beta):
        return E + A / params**alpha + B / tokens**beta

    samples = np.array(record["approach3_bootstrap"], dtype=float).reshape(-1, 5)
    interval = (percentile_interval(loss(*samples.T), record["config"]["confidence"])
                if len(samples) >= 2 else None)
    return float(loss(**record["approach3"]["parameters"])), interval
