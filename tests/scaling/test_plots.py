"""The four PNG charts, written from the fits on both public data sets."""

import pytest

from lmlib.scaling import (
    Run,
    pareto_frontier,
    plot_compute_optimal,
    plot_isoflop_curves,
    plot_loss_frontier,
    plot_parametric_residuals,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"


def test_isoflop_plots(isoflop_fit, isoflop_runs, tmp_path):
    paths = [
        plot_isoflop_curves(isoflop_fit, tmp_path / "isoflop_curves.png"),
        plot_compute_optimal(isoflop_fit, tmp_path / "compute_optimal.png", extrapolate_to=1e24),
        plot_compute_optimal(isoflop_fit, tmp_path / "nested" / "parabola.png",
                             estimator="parabola"),
        plot_loss_frontier(isoflop_runs, tmp_path / "frontier.png"),
    ]
    for path in paths:
        assert_png(path)


def test_parametric_plots(chinchilla_fit, chinchilla_runs, tmp_path):
    assert_png(plot_parametric_residuals(chinchilla_fit, tmp_path / "residuals.png"))
    assert_png(plot_loss_frontier(chinchilla_runs, tmp_path / "frontier.png",
                                  parametric=chinchilla_fit, extrapolate_to=1e24))


def test_pareto_frontier_keeps_only_runs_no_cheaper_run_beats():
    runs = [Run(1e8, 1e9, flops, loss) for flops, loss in
            [(1e18, 4.0), (2e18, 4.5), (3e18, 3.5), (3e18, 3.6), (5e18, 3.0)]]
    assert [run.loss for run in pareto_frontier(runs)] == [4.0, 3.5, 3.0]


def test_loss_frontier_needs_runs(tmp_path):
    with pytest.raises(ValueError, match="no included runs"):
        plot_loss_frontier([], tmp_path / "empty.png")
