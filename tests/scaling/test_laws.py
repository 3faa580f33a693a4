"""The scaling_laws stage: both fits over a sweep's runs, a diverged run left out by name, the
recommendation at the target, and what it does when the runs cannot support a fit."""

import pytest

from lmlib.scaling import (
    SCALING_LAWS_FILE,
    Run,
    ScalingLawsConfig,
    compute_optimal_allocation,
    fit_scaling_laws,
    predicted_loss,
)
from tests.scaling.conftest import KNOWN_LAW, isoflop_grid_runs

BUDGETS = (1e18, 1e19, 1e20, 1e21)


def test_fits_recommend_near_the_known_law_and_leave_out_a_diverged_run(tmp_path):
    runs = isoflop_grid_runs(BUDGETS, sizes_per_budget=5, noise=0.003, seed=1)
    runs.append(Run(params=1e8, tokens=1e9, flops=1e18, loss=float("nan"), status="diverged",
                    reason="training loss became nan at step 40"))
    result = fit_scaling_laws(runs, tmp_path, ScalingLawsConfig(target_budget=1e23,
                                                               bootstrap=50))
    assert result.runs_fitted == len(runs) - 1 and result.runs_excluded == 1
    true_params, _, true_loss = compute_optimal_allocation(1e23, *KNOWN_LAW.values())
    assert result.recommended_params == pytest.approx(true_params, rel=0.5)
    assert result.predicted_loss == pytest.approx(true_loss, rel=0.02)
    assert result.predicted_loss_low <= result.predicted_loss <= result.predicted_loss_high
    for plot in (result.isoflop_plot, result.compute_optimal_plot, result.frontier_plot,
                 result.residuals_plot):
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "loss became nan" in (tmp_path / SCALING_LAWS_FILE).read_text()
    loss, interval = predicted_loss(tmp_path, 1e9, 2e10)
    assert interval[0] <= loss <= interval[1]


def test_too_few_runs_for_approach_3_recommend_from_approach_2_and_say_why(tmp_path):
    runs = isoflop_grid_runs(BUDGETS[:2], sizes_per_budget=2)  # a 2 x 2 grid
    result = fit_scaling_laws(runs, tmp_path, ScalingLawsConfig(target_budget=1e22,
                                                               bootstrap=10))
    assert "needs at least 6 included runs" in result.approach3_skipped
    assert result.recommended_by == "isoFLOP minimum (approach 2)"
    assert result.predicted_loss is None and result.residuals_plot is None
    with pytest.raises(ValueError, match="no parametric fit"):
        predicted_loss(tmp_path, 1e9, 1e10)


def test_the_target_must_lie_beyond_the_sweep(tmp_path):
    with pytest.raises(ValueError, match="must exceed every budget"):
        fit_scaling_laws(isoflop_grid_runs(BUDGETS), tmp_path, ScalingLawsConfig(1e20))
