"""One point of a scaling sweep: its plan (tokens, steps, schedule), a real tiny training run,
a diverged run kept with its reason, and the sweep's settings checked."""

import json

import pytest

from lmlib.scaling import model_shape
from lmlib.train.scaling_runs import (
    SCALING_RUN_FILE,
    SWEEPS,
    ScalingSweepConfig,
    budget_key,
    load_sweep,
    parse_size,
    plan_run,
    read_scaling_run,
    train_scaling_run,
)
from tests.train.conftest import VOCAB

SWEEP = ScalingSweepConfig(sizes=("32x1", "64x2"), budgets=(1e9, 3e9), target_budget=1e10,
                           head_dim=32, context_length=32, batch_size=4, eval_batches=2,
                           device="cpu")


def test_a_run_trains_d_equals_c_over_6n_tokens_with_its_schedule_fitted_to_its_length():
    config = plan_run(SWEEP, "64x2", 3e9, VOCAB)
    n = model_shape(64, 2, VOCAB, 32, 32).non_embedding_params
    assert config.max_steps == round(3e9 / (6 * n) / (4 * 32))
    assert config.cosine_steps == config.max_steps == config.eval_interval
    assert config.warmup_steps == max(1, round(0.05 * config.max_steps))
    assert (config.model.d_model, config.model.num_layers, config.model.num_heads) == (64, 2, 2)
    assert config.min_lr == pytest.approx(SWEEP.max_lr / 10)


def test_keys_and_settings():
    assert [budget_key(b) for b in (3e15, 1e11, 2.5e12, 2e9)] == ["3e15", "1e11", "2.5e12", "2e9"]
    assert parse_size("256x4") == (256, 4)
    with pytest.raises(ValueError, match="expected '<d_model>x<num_layers>'"):
        parse_size("256-4")
    with pytest.raises(ValueError, match="must exceed every budget"):
        ScalingSweepConfig(budgets=(1e11, 1e12), target_budget=1e12)
    assert load_sweep("h200").device == "cuda" and set(SWEEPS) >= {"cpu-demo", "h200"}
    with pytest.raises(ValueError, match="neither a named sweep"):
        load_sweep("no-such-sweep")


def test_a_run_records_its_sizes_flops_curve_and_loss(shard_dir, tmp_path):
    result = train_scaling_run(SWEEP, "32x1", 1e9, shard_dir, tmp_path / "runs", tmp_path / "out")
    assert result.status == "ok" and result.final_val_loss > 0
    assert result.flops_6nd == pytest.approx(6 * result.non_embedding_params * result.tokens)
    assert result.flops_with_attention > result.flops_6nd  # attention and the output projection
    record = json.loads((tmp_path / "out" / SCALING_RUN_FILE).read_text())
    assert record["curve"][-1]["step"] == result.steps
    run = read_scaling_run(tmp_path / "out")
    assert (run.params, run.tokens, run.flops, run.loss) == (
        result.non_embedding_params, result.tokens, 1e9, result.final_val_loss)


def test_a_diverged_run_is_recorded_with_its_reason(shard_dir, tmp_path, monkeypatch):
    def diverge(*args, **kwargs):
        raise FloatingPointError("training loss became nan at step 7 (lr 3e-3)")

    monkeypatch.setattr("lmlib.train.trainer.train", diverge)
    result = train_scaling_run(SWEEP, "32x1", 1e9, shard_dir, tmp_path / "runs", tmp_path / "out")
    assert result.status == "diverged" and result.final_val_loss is None
    run = read_scaling_run(tmp_path / "out")
    assert not run.included and "loss became nan at step 7" in run.reason


def test_a_point_outside_the_tokens_per_parameter_window_is_skipped_not_trained(shard_dir,
                                                                                tmp_path):
    sweep = ScalingSweepConfig(**{**SWEEP.to_dict(), "min_tokens_per_param": 10})
    result = train_scaling_run(sweep, "32x1", 1e9, shard_dir, tmp_path / "runs", tmp_path / "out")
    assert result.status == "skipped" and result.final_val_loss is None
    assert "outside the sweep's window [10, inf]" in result.reason
    assert not (tmp_path / "runs").exists()


def test_a_device_override_resumes_the_same_run(shard_dir, tmp_path):
    train_scaling_run(SWEEP, "32x1", 1e9, shard_dir, tmp_path / "runs", tmp_path / "a")
    again = train_scaling_run(SWEEP, "32x1", 1e9, shard_dir, tmp_path / "runs", tmp_path / "b",
                              device="cpu")
    assert len(list((tmp_path / "runs").iterdir())) == 1  # one run directory, resumed
    assert again.final_val_loss == read_scaling_run(tmp_path / "a").loss
