"""The evaluate_checkpoint stage on a tiny model: every part of the battery, reproducibly."""

import json
import math

import pytest

from lmlib.eval.battery import EVALUATION_FILE, SAMPLES_FILE, EvalConfig, evaluate_checkpoint
from lmlib.model import save_model
from tests.conftest import shared_path
from tests.eval.test_likelihood import byte_tokenizer, tiny
from tests.train.conftest import write_shards


@pytest.fixture
def checkpoint(tmp_path):
    save_model(tiny(vocab=300, context=64), tmp_path / "model")
    byte_tokenizer().save(tmp_path / "tokenizer")
    write_shards(tmp_path / "shards", {"train": [200], "val": [300]})
    return tmp_path


def small_config(**overrides) -> EvalConfig:
    return EvalConfig(**{"lm_tokens": 256, "arithmetic_problems": 6, "samples": 4,
                         "pass_ks": (1, 4), "batch_size": 8, "device": "cpu", **overrides})


def run(checkpoint, out, config):
    return evaluate_checkpoint(checkpoint / "model", checkpoint / "tokenizer",
                               checkpoint / "shards", checkpoint / out, config, name="tiny")


def test_the_default_battery_scores_shards_and_arithmetic_and_reruns_byte_identically(
        checkpoint):
    result = run(checkpoint, "a", small_config())
    assert result.validation_tokens == 256 and result.validation_bits_per_byte > 0
    rows = {(row.task, row.metric): row for row in result.tasks}
    assert set(rows) == {("arithmetic (2 digits)", "accuracy"), ("arithmetic (2 digits)", "pass@1"),
                         ("arithmetic (2 digits)", "pass@4")}
    for row in rows.values():
        assert row.examples == 6 and 0 <= row.low <= row.value <= row.high <= 1
    assert set(result.skipped) == {"mmlu", "gsm8k", "math"}
    assert [s["task"] for s in result.samples] == ["arithmetic (2 digits)"] * 3
    again = run(checkpoint, "b", small_config())
    for name in (EVALUATION_FILE, SAMPLES_FILE):
        assert (checkpoint / "a" / name).read_bytes() == (checkpoint / "b" / name).read_bytes()
    record = json.loads((checkpoint / "a" / EVALUATION_FILE).read_text())
    assert "seconds" not in record and record["config"]["samples"] == 4
    assert again.tasks[0].value == result.tasks[0].value


def test_benchmarks_run_from_their_published_files(checkpoint):
    config = small_config(
        arithmetic_problems=0, mmlu_dir=str(shared_path("data/mmlu")), mmlu_per_subject=1,
        mmlu_shots=1, gsm8k_dir=str(shared_path("data/math/gsm8k")), gsm8k_problems=2,
        math_file=str(shared_path("data/math/math500/test.jsonl")), math_problems=2,
        max_new_tokens=6, text_files=(str(shared_path("data/text/enwiki-excerpt.jsonl.gz")),),
        text_documents=2)
    result = run(checkpoint, "out", config)
    rows = {(row.task, row.metric): row for row in result.tasks}
    assert rows["mmlu", "accuracy"].examples == 57  # one question per subject
    for task in ("gsm8k strict", "gsm8k flexible", "math500"):
        assert rows[task, "accuracy"].examples == 2 and (task, "pass@4") in rows
    assert result.skipped == {"arithmetic": "arithmetic_problems = 0"}
    assert result.texts["enwiki-excerpt.jsonl.gz"]["bits_per_byte"] > 0
    subjects = [s for s in result.subjects if s["task"] == "mmlu"]
    assert len(subjects) == 57 and all(s["examples"] == 1 for s in subjects)


def test_bad_config_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match="pass_ks"):
        EvalConfig(samples=4, pass_ks=(1, 8))
    with pytest.raises(ValueError, match="temperature"):
        EvalConfig(temperature=0)
    with pytest.raises(ValueError, match="mmlu_shots"):
        EvalConfig(mmlu_shots=-1)


def test_the_checkpoint_check_passes_a_sane_model_and_names_the_bound_it_failed(checkpoint):
    from lmlib.eval.battery import check_checkpoint

    paths = checkpoint / "model", checkpoint / "tokenizer", checkpoint / "shards"
    random_model = check_checkpoint(*paths, max_tokens=256, device="cpu")
    # an untrained model with sharpened weights does worse than uniform: the default bound fails it
    assert not random_model.passed and "is not below" in random_model.reason
    assert random_model.bound == pytest.approx(math.log2(300) * 256 / 256)
    lenient = check_checkpoint(*paths, max_tokens=256, max_bits_per_byte=100.0, device="cpu")
    assert lenient.passed and lenient.bound == 100.0
