"""Post-training in the embedded default (the session's `pipeline_home`): SFT, GRPO, the
equal-compute control, expert iteration and DPO materialize, and the report compares them."""

import json

from dagster import AssetKey, DagsterInstance

POST_TRAINED = ["sft_model", "sft_control_model", "grpo_model", "expert_iteration_model",
                "dpo_model"]


def accuracy(artifacts, name) -> float:
    evaluation = json.loads((artifacts / f"{name}_eval" / "evaluation.json").read_text())
    return next(row["value"] for row in evaluation["tasks"] if row["metric"] == "accuracy")


def test_post_training_lifts_the_base_model_and_the_report_compares_every_checkpoint(
        pipeline_home):
    home, dagster_home = pipeline_home
    artifacts = home / "artifacts"
    for name in POST_TRAINED:
        assert (artifacts / name / "model" / "model.pt").exists(), name
    # SFT teaches the task the base model has never seen
    assert accuracy(artifacts, "base_model") < 0.05 < accuracy(artifacts, "sft_model")
    control = json.loads((artifacts / "sft_control_model" / "manifest.json").read_text())
    grpo = json.loads((artifacts / "grpo_model" / "manifest.json").read_text())
    assert control["counts"]["steps"] > 0 and grpo["counts"]["trained_tokens"] > 0
    report = (artifacts / "eval_report" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| metric |"))
    assert header.split(" | ")[1:] == ["base_model", *POST_TRAINED[:1], "sft_control_model",
                                       "grpo_model", "expert_iteration_model", "dpo_model |"]
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        metadata = instance.fetch_materializations(AssetKey("grpo_model"), limit=1) \
            .records[0].asset_materialization.metadata
    assert metadata["generation_seconds"].value > 0 and "sample_rollouts" in metadata
