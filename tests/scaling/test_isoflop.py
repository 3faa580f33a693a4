"""Approach 2 (isoFLOP minima and power laws): the CS336 data, runs from a known law, the
parabola's stated bias, excluded runs and bad input."""

import json

import numpy as np
import pytest

from lmlib.scaling import Run, compute_optimal_allocation, fit_isoflop, snap_to_budgets
from tests.scaling.conftest import CHINCHILLA_BUDGETS, CS336_LAW, KNOWN_LAW, isoflop_grid_runs

BUDGETS = np.geomspace(1e18, 1e22, 9)
TRUE_EXPONENT = KNOWN_LAW["beta"] / (KNOWN_LAW["alpha"] + KNOWN_LAW["beta"])  # 0.4516


def true_params_opt(flops):
    return float(compute_optimal_allocation(flops, *KNOWN_LAW.values())[0])


# --- the CS336 scaling assignment's 72 runs over 9 budgets ----------------------------------
# Recorded (lowest-loss estimator, 1,000 bootstrap resamples over budgets, seed 0):
#   N_opt = 1.163 C^0.4687 (95% interval of a: 0.429 .. 0.543), D_opt = 0.1433 C^0.5313;
#   C = 1e23: N_opt = 7.01e10 (5.4e10 .. 1.3e11), D_opt = 2.38e11 (1.3e11 .. 3.1e11)
#   C = 1e24: N_opt = 2.06e11 (1.5e11 .. 4.4e11), D_opt = 8.09e11 (3.8e11 .. 1.1e12)
# Parabola estimator: a = 0.515; N_opt(1e23) = 9.1e10, N_opt(1e24) = 2.98e11.


def test_cs336_budgets_and_minima(isoflop_fit):
    assert len(isoflop_fit.budgets) == 9
    assert all(len(budget.runs) == 8 for budget in isoflop_fit.budgets)
    smallest = isoflop_fit.budgets[0]
    assert smallest.flops == 6e18
    assert smallest.best.loss == min(run.loss for run in smallest.runs)
    assert smallest.tokens == pytest.approx(6e18 / (6 * smallest.params))
    assert not any(budget.minimum_at_edge for budget in isoflop_fit.budgets)


def test_cs336_exponents_are_sensible_and_sum_to_one(isoflop_fit):
    a, b = isoflop_fit.params_law.exponent, isoflop_fit.tokens_law.exponent
    assert 0.4 < a < 0.6
    assert a + b == pytest.approx(1.0, abs=1e-9)  # D_opt = C / (6 N_opt)
    low, high = isoflop_fit.params_law.exponent_interval
    assert low < a < high
    assert isoflop_fit.tokens_law.exponent_interval == pytest.approx((1 - high, 1 - low))
    parabola_a = isoflop_fit.parabola_params_law.exponent
    assert 0.4 < parabola_a < 0.6
    assert parabola_a + isoflop_fit.parabola_tokens_law.exponent == pytest.approx(1.0)


@pytest.mark.parametrize("flops, params_range, tokens_range", [
    (1e23, (5e10, 1e11), (1.5e11, 3.5e11)),
    (1e24, (1.5e11, 3e11), (5e11, 1.1e12)),
])
def test_cs336_predictions_at_large_budgets(isoflop_fit, flops, params_range, tokens_range):
    prediction = isoflop_fit.predict(flops)
    assert params_range[0] < prediction.params < params_range[1]
    assert tokens_range[0] < prediction.tokens < tokens_range[1]
    assert 6 * prediction.params * prediction.tokens == pytest.approx(flops)
    low, high = prediction.params_interval
    assert low < prediction.params < high
    low, high = prediction.tokens_interval
    assert low < prediction.tokens < high


def test_cs336_estimators_against_the_law_behind_the_data(isoflop_fit):
    """The file's losses follow CS336_LAW without noise, so the truth is known: the parabola
    vertex lands within 1% of it at 1e24 FLOPs; the lowest-loss run, quantised to a grid of
    sizes 1.6x apart, is 31% low, but its bootstrap interval holds the truth."""
    truth = float(compute_optimal_allocation(1e24, *CS336_LAW.values())[0])
    assert isoflop_fit.parabola_params_law.exponent == pytest.approx(
        CS336_LAW["beta"] / (CS336_LAW["alpha"] + CS336_LAW["beta"]), abs=0.002)
    assert isoflop_fit.predict(1e24, "parabola").params == pytest.approx(truth, rel=0.01)
    minimum = isoflop_fit.predict(1e24)
    assert minimum.params < 0.8 * truth
    assert minimum.params_interval[0] < truth < minimum.params_interval[1]


def test_cs336_fit_is_json_serialisable(isoflop_fit):
    values = json.loads(json.dumps(isoflop_fit.to_dict()))
    assert values["runs"] == 72 and len(values["budgets"]) == 9
    assert values["params_law"]["exponent"] == isoflop_fit.params_law.exponent
    assert json.dumps(isoflop_fit.predict(1e23).to_dict())


def test_bootstrap_is_reproducible_with_a_seed(isoflop_runs):
    first = fit_isoflop(isoflop_runs, bootstrap=200, seed=3).predict(1e24)
    second = fit_isoflop(isoflop_runs, bootstrap=200, seed=3).predict(1e24)
    assert first.params_interval == second.params_interval


# --- the Chinchilla extraction, snapped to its nine budgets ---------------------------------


def test_chinchilla_extraction_snapped_to_its_budgets(chinchilla_runs):
    """C read off a plot: runs within 0.03 decades of a figure-3 budget join it, the rest are
    excluded with the reason. Hoffmann et al.'s approach 2 found a = 0.49 (0.462 .. 0.534)."""
    snapped = snap_to_budgets(chinchilla_runs, CHINCHILLA_BUDGETS, tolerance=0.03)
    fit = fit_isoflop(snapped, bootstrap=300, seed=0)
    assert len(fit.budgets) == 9 and len(fit.runs) == 84
    assert any("not within 0.03 decades" in run.reason for run in fit.excluded)
    assert any("highest losses" in run.reason for run in fit.excluded)
    for estimator in ("minimum", "parabola"):
        params_law, _ = fit.law(estimator)
        assert 0.4 < params_law.exponent < 0.55
        low, high = params_law.exponent_interval
        assert low < 0.49 < high
    # Chinchilla itself: 70B parameters for 5.76e23 FLOPs
    assert 3e10 < fit.predict(5.76e23, "parabola").params < 1.2e11


def test_snap_to_budgets_keeps_n_and_d_and_names_the_misses():
    runs = [Run(1e8, 1e10, 6.2e18, 3.0), Run(1e8, 1e10, 9e18, 3.0),
            Run(1e8, 1e10, 2e18, 3.0, status="failed", reason="oom")]
    snapped = snap_to_budgets(runs, [6e18, 1e19], tolerance=0.03)
    assert snapped[0].flops == 6e18 and snapped[0].tokens == 1e10 and snapped[0].included
    assert not snapped[1].included and "C=9e+18 is not within 0.03 decades" in snapped[1].reason
    assert snapped[2].reason == "oom"
    with pytest.raises(ValueError, match="tolerance must be positive"):
        snap_to_budgets(runs, [1e19], tolerance=0)
    with pytest.raises(ValueError, match="budgets must be positive"):
        snap_to_budgets(runs, [])


# --- runs from a known law ------------------------------------------------------------------


def test_noise_free_grid_through_the_optimum_recovers_the_law_exactly():
    fit = fit_isoflop(isoflop_grid_runs(BUDGETS), bootstrap=0)
    assert fit.params_law.exponent == pytest.approx(TRUE_EXPONENT, abs=1e-9)
    assert fit.predict(1e24).params == pytest.approx(true_params_opt(1e24), rel=1e-5)
    assert fit.predict(1e24).params_interval is None  # no bootstrap, no interval


def test_noisy_runs_recover_the_exponent():
    runs = isoflop_grid_runs(BUDGETS, sizes_per_budget=15, noise=0.002, seed=1)
    fit = fit_isoflop(runs, bootstrap=300, seed=0)
    assert fit.params_law.exponent == pytest.approx(TRUE_EXPONENT, abs=0.05)
    assert fit.parabola_params_law.exponent == pytest.approx(TRUE_EXPONENT, abs=0.01)
    low, high = fit.predict(1e24, "parabola").params_interval
    assert low < true_params_opt(1e24) * 1.05 and high > true_params_opt(1e24) * 0.95


def test_parabola_vertex_carries_the_stated_bias():
    """Noise-free runs. Centred grids: the lowest-loss run is exact, the vertex is off by the
    curve's asymmetry, the same at every budget (the two terms keep a fixed ratio at the
    optimum), so k_N is biased and the exponent is not. Grids whose offset from the optimum
    drifts with C (here from -1 to +1 in log N) bias the exponent too."""
    centred = fit_isoflop(isoflop_grid_runs(BUDGETS), bootstrap=0)
    truth = np.array([true_params_opt(budget.flops) for budget in centred.budgets])
    vertex_error = np.log([b.parabola.params for b in centred.budgets] / truth)
    assert [b.params for b in centred.budgets] == pytest.approx(truth, rel=1e-9)
    assert vertex_error == pytest.approx(np.full(9, vertex_error[0]), abs=1e-6)
    assert vertex_error[0] > 0.02  # about 3% too large: the flatter side is large N here
    assert centred.parabola_params_law.exponent == pytest.approx(TRUE_EXPONENT, abs=1e-9)

    drifting = [run for flops, offset in zip(BUDGETS, np.linspace(-1.0, 1.0, len(BUDGETS)))
                for run in isoflop_grid_runs([flops], offset=offset)]
    drifted = fit_isoflop(drifting, bootstrap=0)
    assert abs(drifted.parabola_params_law.exponent - TRUE_EXPONENT) > 1e-3  # 0.002 here


# --- excluded runs and bad input ------------------------------------------------------------


def test_diverged_runs_are_left_out_with_their_reason(isoflop_runs):
    diverged = Run(params=4e9, tokens=1e19 / (6 * 4e9), flops=1e19, loss=float("nan"),
                   status="diverged", reason="loss NaN at step 1200", name="lr-too-high")
    # a failed run with a (misleading) low loss: it would be the minimum if it counted
    failed = Run(params=1e8, tokens=1e19 / 6e8, flops=1e19, loss=1.0, status="failed",
                 reason="node lost before the final evaluation")
    fit = fit_isoflop([*isoflop_runs, diverged, failed], bootstrap=0)
    reference = fit_isoflop(isoflop_runs, bootstrap=0)
    assert fit.params_law == reference.params_law
    assert fit.excluded == (diverged, failed)
    written = json.loads(json.dumps(fit.to_dict()))["excluded"]
    assert written[0]["reason"] == "loss NaN at step 1200" and written[0]["loss"] is None
    assert written[1]["status"] == "failed"


def test_an_included_run_with_a_bad_value_is_named():
    runs = isoflop_grid_runs(BUDGETS[:3])
    runs[4] = Run(params=1e8, tokens=1e9, flops=BUDGETS[0], loss=float("nan"), name="run-4")
    with pytest.raises(ValueError, match=r"runs\[4\] \(run-4\) has loss=nan"):
        fit_isoflop(runs)
    runs[4] = Run(params=0.0, tokens=1e9, flops=BUDGETS[0], loss=3.0)
    with pytest.raises(ValueError, match="params=0.0"):
        fit_isoflop(runs)


def test_one_budget_is_not_enough():
    with pytest.raises(ValueError, match="2 or more compute budgets"):
        fit_isoflop(isoflop_grid_runs(BUDGETS[:1]))


def test_a_parabola_needs_three_runs_per_budget():
    runs = isoflop_grid_runs(BUDGETS[:3], sizes_per_budget=2)
    with pytest.raises(ValueError, match=r"C=1e\+18 has 2 included run\(s\)"):
        fit_isoflop(runs)
    fit = fit_isoflop(runs, parabola=False, bootstrap=10)
    assert fit.parabola_params_law is None
    with pytest.raises(ValueError, match="no parabola estimator"):
        fit.predict(1e23, "parabola")


def test_bad_arguments_are_named(isoflop_fit):
    with pytest.raises(ValueError, match="compute budget must be positive"):
        isoflop_fit.predict(-1.0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        isoflop_fit.predict(1e23, "median")
    with pytest.raises(ValueError, match="confidence"):
        fit_isoflop(isoflop_grid_runs(BUDGETS[:2]), confidence=95)
    with pytest.raises(TypeError, match=r"runs\[0\] is a dict"):
        fit_isoflop([{"params": 1, "flops": 2, "loss": 3}])


def test_a_concave_budget_has_no_parabola_and_says_why():
    runs = isoflop_grid_runs(BUDGETS[:3])
    flat = [Run(params=p, tokens=1e20 / (6 * p), flops=1e20, loss=3.0 - 0.01 * (i - 2) ** 2)
            for i, p in enumerate([1e8, 2e8, 4e8, 8e8, 1.6e9])]
    fit = fit_isoflop(runs + flat, bootstrap=0)
    concave = [budget for budget in fit.budgets if budget.flops == 1e20][0]
    assert concave.parabola is None and "not convex" in concave.parabola_issue
    assert fit.parabola_params_law is not None  # the other budgets still give one
