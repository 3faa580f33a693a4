"""The demo's walk: layers by partitioning, and a global asset that was built but failed its
check listed without stopping the rest."""

from dagster import (
    AssetCheckResult,
    DagsterInstance,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    asset_check,
)

from dagster_project.demo import LayerFailure, layers, run_everything
from dagster_project.home import ensure_dagster_home
from dagster_project.resources import Storage
from tests.conftest import lmpipe_environment

grid = StaticPartitionsDefinition(["a", "b"])


@asset
def predicted() -> int:
    return 1


@asset_check(asset=predicted, blocking=True)
def predicted_is_right() -> AssetCheckResult:
    return AssetCheckResult(passed=False, description="achieved 3.1 is 0.4 above the interval")


@asset(partitions_def=grid, deps=[predicted])
def per_point() -> None:
    pass


@asset(deps=[per_point])
def summary() -> None:
    pass


DEFS = Definitions(assets=[predicted, per_point, summary], asset_checks=[predicted_is_right],
                   resources={"storage": Storage()})


def test_layers_follow_the_partitioning():
    assert [(p, [k.to_user_string() for k in keys]) for p, keys in layers(DEFS)] == [
        (None, ["predicted"]), (grid, ["per_point"]), (None, ["summary"])]


def test_a_failed_check_on_a_built_global_asset_is_listed_and_the_demo_goes_on(tmp_path):
    with lmpipe_environment(tmp_path / "lmpipe"):
        ensure_dagster_home()
        with DagsterInstance.get() as instance:
            outcome = run_everything(DEFS, instance, log=lambda message: None)
    assert outcome.succeeded
    assert outcome.failures == [LayerFailure(
        "predicted", None, "predicted_is_right: achieved 3.1 is 0.4 above the interval")]
    assert outcome.built == ["per_point [a]", "per_point [b]", "summary"]
