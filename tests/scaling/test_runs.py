"""Runs, their exclusion, and the readers of the two public data sets."""

import json
import math

import pytest

from lmlib.scaling import (
    Run,
    exclude_highest_losses,
    load_chinchilla_extraction,
    load_isoflop_curves,
    split_runs,
)


def test_isoflop_curves_are_72_runs_over_9_budgets(isoflop_runs):
    assert len(isoflop_runs) == 72
    assert len({run.flops for run in isoflop_runs}) == 9
    first = isoflop_runs[0]
    assert first.tokens == pytest.approx(first.flops / (6 * first.params))
    assert first.name == "isoflops_curves[0]"


def test_chinchilla_extraction_is_245_runs_and_the_replication_drops_5(chinchilla_runs):
    assert len(chinchilla_runs) == 245
    excluded = [run for run in chinchilla_runs if not run.included]
    included = [run for run in chinchilla_runs if run.included]
    assert len(excluded) == 5
    assert min(run.loss for run in excluded) > max(run.loss for run in included)
    assert all("highest losses" in run.reason for run in excluded)
    run = included[0]
    assert run.tokens == pytest.approx(run.flops / (6 * run.params))


def test_exclusion_keeps_the_reason_and_order():
    runs = [Run(1e8, 1e9, 6e17, loss) for loss in (3.0, 5.0, 4.0)]
    marked = exclude_highest_losses(runs, 1, reason="spiked")
    assert [run.status for run in marked] == ["ok", "excluded", "ok"]
    assert marked[1].reason == "spiked" and marked[1].loss == 5.0
    included, excluded = split_runs(marked, "test")
    assert excluded == [marked[1]] and len(included) == 2
    with pytest.raises(ValueError, match="count must be >= 0"):
        exclude_highest_losses(runs, -1)


def test_a_diverged_run_serialises_without_nan():
    run = Run(1e8, 1e9, 6e17, math.nan, status="diverged", reason="NaN loss")
    assert json.loads(json.dumps(run.to_dict()))["loss"] is None
    assert not run.included


def test_readers_name_what_is_wrong(tmp_path):
    bad_json = tmp_path / "runs.json"
    bad_json.write_text(json.dumps([{"parameters": 1e8, "compute_budget": 1e18}]))
    with pytest.raises(ValueError, match="record 0 needs parameters, compute_budget and final_loss"):
        load_isoflop_curves(bad_json)
    bad_json.write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match="expected a JSON list"):
        load_isoflop_curves(bad_json)
    bad_csv = tmp_path / "runs.csv"
    bad_csv.write_text("Model Size,loss\n1e8,3.0\n")
    with pytest.raises(ValueError, match=r"missing columns \['Training FLOP'\]"):
        load_chinchilla_extraction(bad_csv)
