"""The training loop: checkpoints, exact resume, SIGTERM, NaN detection, outputs and the CLI."""

import io
import json
import os
import signal
from pathlib import Path

import pytest
import torch

import lmlib.train.trainer as trainer_module
from lmlib.model import ModelConfig, TransformerLM, cross_entropy, load_model
from lmlib.optim import AdamW
from lmlib.train import (
    TrainConfig,
    TrainingInterrupted,
    get_preset,
    latest_checkpoint,
    load_checkpoint,
    load_config,
    save_checkpoint,
    train,
)
from lmlib.train.__main__ import main as cli_main
from lmlib.train.checkpoint import read_checkpoint, read_training_state, restore_rng_states


def micro_config(**overrides) -> TrainConfig:
    values = dict(
        model=ModelConfig(context_length=16, d_model=32, num_layers=2, num_heads=2, d_ff=64),
        batch_size=4, max_steps=12, max_lr=1e-2, min_lr=1e-3, warmup_steps=2, eval_interval=4,
        eval_batches=2, checkpoint_interval=4, log_interval=2, seed=0, device="cpu",
        sample_prompts=("ab",), sample_max_new_tokens=5,
    )
    values.update(overrides)
    return TrainConfig(**values)


def weights(run_dir):
    return torch.load(run_dir / "model" / "model.pt", weights_only=True)


def assert_bitwise_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_overfits_one_batch_to_near_zero_loss():
    torch.manual_seed(0)
    model = TransformerLM(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=2,
                          d_ff=64, rope_theta=10000.0)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    tokens = torch.randint(0, 50, (4, 17))
    for _ in range(40):
        loss = cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_checkpoint_round_trip_restores_model_optimizer_and_iteration(tmp_path):
    torch.manual_seed(0)
    config = dict(vocab_size=40, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                  rope_theta=10000.0)
    model = TransformerLM(**config)
    optimizer = AdamW(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, 40, (2, 9))

    def step(m, opt):
        loss = cross_entropy(m(tokens[:, :-1]), tokens[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(model, optimizer)
    for target in (tmp_path / "ckpt.pt", io.BytesIO()):
        save_checkpoint(model, optimizer, 7, target)
        if isinstance(target, io.BytesIO):
            target.seek(0)
        torch.manual_seed(1)
        restored = TransformerLM(**config)
        restored_optimizer = AdamW(restored.parameters(), lr=1e-2)
        assert load_checkpoint(target, restored, restored_optimizer) == 7
        assert_bitwise_equal(restored.state_dict(), model.state_dict())
        step(restored, restored_optimizer)
        reference = TransformerLM(**config)
        reference.load_state_dict(model.state_dict())
        reference_optimizer = AdamW(reference.parameters(), lr=1e-2)
        reference_optimizer.load_state_dict(
            torch.load(tmp_path / "ckpt.pt", weights_only=True)["optimizer"])
        step(reference, reference_optimizer)
        assert_bitwise_equal(restored.state_dict(), reference.state_dict())


def test_train_lowers_the_loss_and_writes_its_outputs(shard_dir, tmp_path):
    records = []
    stats = train(micro_config(max_steps=40, checkpoint_interval=20, eval_interval=20),
                  shard_dir, tmp_path / "run", progress=records.append, quiet=True)
    assert stats.steps == 40
    assert stats.tokens_trained == 40 * 4 * 16
    assert stats.final_train_loss < stats.first_train_loss - 0.5
    assert stats.final_val_loss < 3.5  # ln(64) = 4.16 at the start
    assert stats.parameters == TransformerLM(
        micro_config().model, vocab_size=64).num_parameters()
    assert stats.tokens_per_second > 0 and stats.mfu is None  # no MFU on CPU
    run = tmp_path / "run"
    assert (run / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert stats.loss_curve == run / "loss_curve.png"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(2, 41, 2))
    assert [r["step"] for r in log if r["kind"] == "eval"] == [20, 40]
    assert [r for r in records if r["kind"] != "status"] == log
    statuses = [r["message"] for r in records if r["kind"] == "status"]
    assert statuses[0].startswith(f"token shards {shard_dir}")
    assert any(m.startswith("first step done in") for m in statuses)
    assert 0 < stats.seconds_to_first_step < stats.train_seconds + 60
    checkpoint = latest_checkpoint(run / "checkpoints")
    assert checkpoint.name == "step_00000040"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["tokens_seen"] == 2560
    model = load_model(run / "model")
    assert model.config.vocab_size == 64
    assert_bitwise_equal(model.state_dict(), load_model(checkpoint).state_dict())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_then_resume_is_bitwise_identical_to_an_uninterrupted_run(
        shard_dir, tmp_path, stop_signal):
    """SIGTERM (preemption) and SIGINT (Ctrl-C, a cancelled Dagster run) both checkpoint."""
    config = micro_config()
    train(config, shard_dir, tmp_path / "straight", quiet=True)

    def kill_at_step_7(record):
        if record["kind"] == "train" and record["step"] == 6:
            os.kill(os.getpid(), stop_signal)  # arrives mid-run, handled before step 7

    dispositions_before = {number: signal.getsignal(number)
                           for number in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(TrainingInterrupted) as interrupted:
        train(config, shard_dir, tmp_path / "resumed", progress=kill_at_step_7, quiet=True)
    assert interrupted.value.step == 6
    assert interrupted.value.checkpoint.name == "step_00000006"
    assert interrupted.value.signal_name == stop_signal.name
    assert interrupted.value.exit_status == 128 + stop_signal
    for number, before in dispositions_before.items():  # the trainer restores what it found
        assert signal.getsignal(number) is before
    stats = train(config, shard_dir, tmp_path / "resumed", quiet=True)
    assert stats.resumed_from_step == 6 and stats.steps == 12
    assert_bitwise_equal(weights(tmp_path / "resumed"), weights(tmp_path / "straight"))
    straight_state = torch.load(latest_checkpoint(tmp_path / "straight" / "checkpoints")
                                / "checkpoint.pt", weights_only=True)
    resumed_state = torch.load(latest_checkpoint(tmp_path / "resumed" / "checkpoints")
                               / "checkpoint.pt", weights_only=True)
    for a, b in zip(straight_state["optimizer"]["state"].values(),
                    resumed_state["optimizer"]["state"].values()):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    log_steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "log.jsonl").open()]
    assert log_steps == [json.loads(x)["step"] for x in (tmp_path / "straight" / "log.jsonl").open()]


def test_checkpoint_state_lands_where_it_belongs_with_a_non_cpu_map_location(shard_dir,
                                                                               tmp_path):
    """Resuming on a GPU read the RNG state onto the GPU (torch.set_rng_state then refuses it).

    "meta" is a non-CPU device every machine has: model and optimizer tensors must follow the
    training device, RNG states must stay CPU byte tensors that the generators accept."""
    train(micro_config(max_steps=4), shard_dir, tmp_path / "run", quiet=True)
    path = latest_checkpoint(tmp_path / "run" / "checkpoints") / "checkpoint.pt"
    naive = read_checkpoint(path, map_location="meta")  # the old code path
    with pytest.raises((TypeError, RuntimeError, NotImplementedError)):
        restore_rng_states(naive["extra"]["rng"])

    state = read_training_state(path, torch.device("meta"))
    assert {t.device.type for t in state["model"].values()} == {"meta"}
    optimizer_tensors = [value for per_parameter in state["optimizer"]["state"].values()
                         for value in per_parameter.values() if torch.is_tensor(value)]
    assert optimizer_tensors and {t.device.type for t in optimizer_tensors} == {"meta"}
    rng = state["extra"]["rng"]["torch"]
    assert rng.device.type == "cpu" and rng.dtype == torch.uint8
    before = torch.get_rng_state()
    restore_rng_states(state["extra"]["rng"])
    torch.set_rng_state(before)


def test_crash_after_a_periodic_checkpoint_resumes_exactly(shard_dir, tmp_path):
    config = micro_config(max_steps=10)
    train(config, shard_dir, tmp_path / "straight", quiet=True)

    def crash(record):
        if record["kind"] == "train" and record["step"] == 6:
            raise KeyboardInterrupt  # a hard kill: the last checkpoint is step 4

    with pytest.raises(KeyboardInterrupt):
        train(config, shard_dir, tmp_path / "crashed", progress=crash, quiet=True)
    assert latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step_00000004"
    stats = train(config, shard_dir, tmp_path / "crashed", quiet=True)
    assert stats.resumed_from_step == 4
    assert_bitwise_equal(weights(tmp_path / "crashed"), weights(tmp_path / "straight"))
    # a finished run called again trains nothing and reports the same
    again = train(config, shard_dir, tmp_path / "crashed", quiet=True)
    assert again.steps == 10 and again.final_val_loss == stats.final_val_loss


def test_resume_with_a_different_model_is_refused(shard_dir, tmp_path):
    train(micro_config(max_steps=4), shard_dir, tmp_path / "run", quiet=True)
    changed = micro_config(max_steps=8, max_lr=5e-2)
    with pytest.raises(ValueError, match="max_lr"):
        train(changed, shard_dir, tmp_path / "run", quiet=True)


def test_a_checkpoint_from_before_a_new_config_field_still_resumes(shard_dir, tmp_path):
    """A field added to the config since the checkpoint was written compares as its default."""
    train(micro_config(max_steps=4), shard_dir, tmp_path / "run", quiet=True)
    saved = latest_checkpoint(tmp_path / "run" / "checkpoints") / "config.json"
    older = json.loads(saved.read_text())
    del older["model"]["batch_invariant_gradients"]
    saved.write_text(json.dumps(older))
    stats = train(micro_config(max_steps=6), shard_dir, tmp_path / "run", quiet=True)
    assert stats.resumed_from_step == 4


def test_nan_loss_stops_with_an_error_naming_the_step(shard_dir, tmp_path, monkeypatch):
    calls = {"n": 0}

    def poisoned(logits, targets):
        calls["n"] += torch.is_grad_enabled()  # count training steps, not evaluation
        loss = cross_entropy(logits, targets)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(trainer_module, "cross_entropy", poisoned)
    with pytest.raises(FloatingPointError, match="at step 5"):
        train(micro_config(), shard_dir, tmp_path / "run", quiet=True)


def test_samples_use_the_tokenizer_when_given(shard_dir, tmp_path, monkeypatch):
    class LetterTokenizer:  # duck-typed: ids 1..63 <-> characters
        def encode(self, text):
            return [ord(c) % 63 + 1 for c in text]

        def decode(self, ids):
            return "".join(chr(48 + i) for i in ids)

    seen = {}

    def fake_loader(directory):
        seen["dir"] = directory
        return LetterTokenizer()

    monkeypatch.setattr(trainer_module, "load_tokenizer", fake_loader)
    stats = train(micro_config(max_steps=2), shard_dir, tmp_path / "run", quiet=True,
                  tokenizer_dir=tmp_path / "tok")
    assert seen["dir"] == tmp_path / "tok"
    assert [s["prompt"] for s in stats.samples] == ["ab"]
    assert isinstance(stats.samples[0]["completion"], str)
    assert len(stats.samples[0]["completion"]) <= 5


def test_presets_and_json_configs(tmp_path):
    tiny = get_preset("tiny")
    assert tiny.model.d_model == 128 and tiny.device == "auto"
    assert get_preset("gpt2-small").model.num_layers == 12
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "tiny", "max_steps": 7, "model": {"d_model": 64}}))
    loaded = load_config(path)
    assert loaded.max_steps == 7 and loaded.model.d_model == 64 and loaded.model.num_layers == 4
    path.write_text(json.dumps(micro_config().to_dict()))
    assert load_config(path) == micro_config()
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ValueError, match="no such field"):
        tiny.with_overrides({"model.width": 3})


def test_cli_runs_the_same_training(shard_dir, tmp_path, capsys):
    code = cli_main(["--config", "tiny", "--data-dir", str(shard_dir), "--run-dir",
                     str(tmp_path / "run"), "--set", "max_steps=3", "--set", "model.d_model=32",
                     "--set", "model.context_length=16", "--set", "model.d_ff=64",
                     "--set", "batch_size=2", "--set", "device=cpu"])
    assert code == 0
    output = capsys.readouterr().out
    stats = json.loads(output[output.index("{\n"):])
    assert stats["steps"] == 3 and stats["tokens_trained"] == 3 * 2 * 16


def test_packages_import_with_torch_and_numpy_alone():
    import subprocess
    import sys

    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'matplotlib', 'wandb', 'regex', 'polars', 'dagster',\n"
        "                                  'scipy', 'tqdm'} or name == 'lmlib.tokenizer':\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import lmlib.model, lmlib.optim, lmlib.distributed, lmlib.train, lmlib.train.__main__\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_tracking_logs_the_config_and_input_hashes_and_says_where_the_run_is(
        shard_dir, tmp_path, monkeypatch):
    """Offline wandb (no network here): the run's config carries the inputs' manifest hashes,
    and the result names the offline directory that `wandb sync` would upload."""
    pytest.importorskip("wandb")
    (shard_dir / "manifest.json").write_text('{"stage": "token_shards"}\n')
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    seen = {}
    real_start = trainer_module.start_wandb

    def start_and_record(project, mode, run_dir, config):
        seen["config"] = config
        return real_start(project, mode, run_dir, config)

    monkeypatch.setattr(trainer_module, "start_wandb", start_and_record)
    result = train(micro_config(max_steps=2, wandb_project="lmpipe-test"), shard_dir,
                   tmp_path / "run", quiet=True)
    from lmlib.artifacts import sha256_file

    assert seen["config"]["inputs"] == {"token_shards": sha256_file(shard_dir / "manifest.json")}
    assert seen["config"]["max_steps"] == 2
    assert result.tracking is not None and (tmp_path / "run") in Path(result.tracking).parents
    assert Path(result.tracking).is_dir()


def test_no_tracking_by_default(shard_dir, tmp_path):
    assert train(micro_config(max_steps=1), shard_dir, tmp_path / "run", quiet=True).tracking is None
