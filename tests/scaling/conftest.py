"""The two public scaling data sets, loaded and fitted once per session (skipped if absent),
and a generator of runs from a known law."""

import numpy as np
import pytest

from lmlib.scaling import (
    COARSE_GRID,
    Run,
    compute_optimal_allocation,
    exclude_highest_losses,
    fit_isoflop,
    fit_parametric,
    load_chinchilla_extraction,
    load_isoflop_curves,
)
from tests.conftest import shared_path

# Hoffmann et al. (2022)'s rounded law: the synthetic runs' ground truth
KNOWN_LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# The law the CS336 isoFLOP file's losses follow without noise: approach 3 recovers these round
# values to 8 digits with bootstrap errors of 1e-10 (test_parametric)
CS336_LAW = {"E": 2.69, "A": 1606.4, "B": 3210.7, "alpha": 0.34, "beta": 0.36}
# Hoffmann et al. (2022) figure 3: the nine isoFLOP budgets of the Chinchilla extraction
CHINCHILLA_BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)


def known_loss(params, tokens, law=KNOWN_LAW):
    return law["E"] + law["A"] / np.asarray(params) ** law["alpha"] \
        + law["B"] / np.asarray(tokens) ** law["beta"]


def isoflop_grid_runs(budgets, sizes_per_budget=9, span=2.0, offset=0.0, noise=0.0, seed=0,
                      law=KNOWN_LAW):
    """Runs at each budget on a grid of sizes evenly spaced in log N, from e^(offset - span)
    to e^(offset + span) times the law's true N_opt; loss times exp(noise * normal)."""
    rng = np.random.default_rng(seed)
    runs = []
    for flops in budgets:
        optimum = compute_optimal_allocation(flops, *law.values())[0]
        for step in np.linspace(-span, span, sizes_per_budget) + offset:
            params = float(optimum * np.exp(step))
            tokens = flops / (6.0 * params)
            loss = float(known_loss(params, tokens, law) * np.exp(noise * rng.standard_normal()))
            runs.append(Run(params=params, tokens=tokens, flops=float(flops), loss=loss))
    return runs


@pytest.fixture(scope="session")
def isoflop_runs():
    return load_isoflop_curves(shared_path("data/scaling/isoflops_curves.json"))


@pytest.fixture(scope="session")
def isoflop_fit(isoflop_runs):
    return fit_isoflop(isoflop_runs, bootstrap=1000, seed=0)


@pytest.fixture(scope="session")
def chinchilla_runs():
    runs = load_chinchilla_extraction(shared_path("data/scaling/chinchilla_svg_extracted_data.csv"))
    # the replication's rule: the five highest losses are left out
    return exclude_highest_losses(runs, 5)


@pytest.fixture(scope="session")
def chinchilla_fit(chinchilla_runs):
    # every other start of the replication's grid (243 of 4,500): the same optimum to 4 digits
    # in a twentieth of the time; benchmarks/bench_scaling_fits.py runs the full grid
    return fit_parametric(chinchilla_runs, grid=COARSE_GRID, bootstrap=60, seed=0)
