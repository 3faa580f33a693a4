"""The evaluation group on the demo's base model (in the session's `pipeline_home`): the
battery's artifact, the blocking check on the checkpoint, and the report card."""

import json

from dagster import AssetKey, DagsterInstance


def test_the_base_model_is_evaluated_and_checked_and_the_report_compares_it(pipeline_home):
    home, dagster_home = pipeline_home
    artifacts = home / "artifacts"
    evaluation = json.loads((artifacts / "base_model_eval" / "evaluation.json").read_text())
    assert evaluation["checkpoint"] == "base_model"
    assert 0 < evaluation["validation_bits_per_byte"] < 8
    tasks = {(row["task"], row["metric"]) for row in evaluation["tasks"]}
    assert ("arithmetic (2 digits)", "accuracy") in tasks and ("arithmetic (2 digits)",
                                                                "pass@8") in tasks
    report = (artifacts / "eval_report" / "report.md").read_text()
    assert "base_model" in report and "arithmetic (2 digits)" in report
    assert "crawl files" in report
    pngs = list((artifacts / "eval_report").glob("*.png"))
    assert pngs and all(png.stat().st_size > 1000 for png in pngs)
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [_check_key()])[_check_key()]
        assert check.status.value == "SUCCEEDED"
        metadata = instance.fetch_materializations(AssetKey("eval_report"), limit=1) \
            .records[0].asset_materialization.metadata
    assert "data:image/png;base64," in metadata["report"].value  # the plots show in the UI


def _check_key():
    from dagster import AssetCheckKey

    return AssetCheckKey(AssetKey("base_model"), "base_model_beats_its_bound")
