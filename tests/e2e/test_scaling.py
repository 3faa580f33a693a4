"""The scaling lineage on the embedded default (the session's `pipeline_home`): every run of the
sweep, both fits with plots, the held-out check against its interval, and provenance from the
check back to the crawl files."""

import json

import pytest
from dagster import AssetKey, DagsterInstance

from dagster_project.partitions import SCALING_SWEEP
from dagster_project.provenance import walk
from tests.e2e.test_provenance import EMBEDDED


def _metadata(instance, asset):
    return instance.fetch_materializations(AssetKey(asset), limit=1).records[0] \
        .asset_materialization.metadata


def test_the_sweep_fits_and_its_held_out_check_are_in_the_ui(pipeline_home):
    home, dagster_home = pipeline_home
    runs = list((home / "artifacts" / "scaling_runs").glob("budget=*/size=*/scaling_run.json"))
    assert len(runs) == len(SCALING_SWEEP.sizes) * len(SCALING_SWEEP.budgets)
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        laws = _metadata(instance, "scaling_laws")
        check = _metadata(instance, "scaling_check")
    assert laws["runs_fitted"].value == len(runs)
    for plot in ("isoflop_plot", "compute_optimal_plot", "frontier_plot", "residuals_plot"):
        assert laws[plot].value.startswith("![")  # an inline PNG
    assert laws["target_budget"].value == SCALING_SWEEP.target_budget
    record = json.loads((home / "artifacts" / "scaling_check" / "scaling_check.json").read_text())
    assert record["target_budget"] == SCALING_SWEEP.target_budget > max(SCALING_SWEEP.budgets)
    assert check["predicted_loss"].value == pytest.approx(record["predicted_loss"], rel=1e-5)
    assert record["predicted_low"] <= record["achieved_loss"] <= record["predicted_high"]
    assert check["prediction_plot"].value.startswith("![")  # predicted against achieved


def test_provenance_from_the_check_reaches_the_crawl_files(pipeline_home):
    home, _ = pipeline_home
    provenance = walk(home / "artifacts" / "scaling_check", home / "artifacts")
    assert {f.name: f.sha256 for f in provenance.crawl_files} == EMBEDDED
    steps = {s.asset for s in provenance.steps}
    assert {"scaling_check", "scaling_laws", "scaling_runs", "token_shards"} <= steps
    assert provenance.superseded == []
