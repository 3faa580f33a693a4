"""scaling group: a sweep of training runs (size x budget), both scaling-law fits, and the
held-out test of their prediction. The sweep is LMPIPE_SCALING_SWEEP (partitions.py). With the
gpu pool's limit at the GPU count (LMPIPE_GPU_POOL_LIMIT), that many runs train at once, each on
a GPU no other run holds."""

import contextlib
import dataclasses
import json

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from dagster_project.assets.tokens import token_shards
from dagster_project.metadata import result_metadata
from dagster_project.partitions import SCALING_SWEEP, scaling_partitions
from dagster_project.policies import GPU_POOL, TRAINING_RETRY_POLICY
from dagster_project.resources import Storage
from dagster_project.stage import (
    config_class,
    materialization,
    partition_path,
    publish,
    upstream,
)
from lmlib.artifacts import MANIFEST_NAME
from lmlib.scaling import ScalingLawsConfig, fit_scaling_laws
from lmlib.train.devices import claimed_device
from lmlib.train.scaling_runs import (
    SCALING_CHECK_FILE,
    check_scaling_prediction,
    read_scaling_run,
    train_scaling_run,
)

ScalingLawsSettings = config_class(ScalingLawsConfig, "ScalingLawsSettings")


@contextlib.contextmanager
def _free_gpu(storage: Storage):
    """A free GPU ("cuda:i") when this machine has several, so runs of the sweep that the gpu
    pool lets run together train on different devices; None (the sweep's device) otherwise."""
    import torch

    count = torch.cuda.device_count()
    if count < 2:
        yield None
        return
    with claimed_device(storage.home_path / "locks" / "gpu", count) as index:
        yield f"cuda:{index}"


def _progress(context):
    def log(record: dict) -> None:
        if record["kind"] in ("status", "eval"):
            context.log.info(json.dumps(record))
    return log


@asset(partitions_def=scaling_partitions, deps=[token_shards], group_name="scaling",
       kinds={"pytorch"}, pool=GPU_POOL, retry_policy=TRAINING_RETRY_POLICY,
       description="One training run of the sweep: the model of that size trained for "
                   "D = C / (6 N) tokens, with its curve, final validation loss and FLOPs; a "
                   "diverged run is recorded with its reason. Resumes after a crash.")
def scaling_runs(context: AssetExecutionContext, storage: Storage) -> MaterializeResult:
    point = context.partition_key.keys_by_dimension
    shards = storage.artifact_dir(token_shards)
    inputs = {"token_shards": upstream(shards)}
    runs_root = storage.home_path / "runs" / "scaling_runs" / partition_path(context.partition_key)
    with _free_gpu(storage) as device:
        result = publish(context, storage, lambda out: train_scaling_run(
            SCALING_SWEEP, point["size"], float(point["budget"]), shards, runs_root, out, inputs,
            progress=_progress(context), device=device), config=SCALING_SWEEP, inputs=inputs)
    return MaterializeResult(**materialization(context, storage, result_metadata(result)))


@asset_check(asset=scaling_runs, partitions_def=scaling_partitions,
             description="The run trained to the end with a finite loss (a diverged run stays "
                         "in the sweep's record and out of the fits).")
def scaling_run_converged(context, storage: Storage) -> AssetCheckResult:
    run = read_scaling_run(storage.artifact_dir(scaling_runs, context.partition_key))
    return AssetCheckResult(passed=run.included, description=run.reason or None,
                            metadata={"status": run.status})


@asset(deps=[scaling_runs], group_name="scaling", kinds={"python", "scipy"},
       description="Chinchilla approaches 2 (isoFLOP) and 3 (parametric) over every finished "
                   "run, with bootstrap intervals and plots, and the model size, tokens and "
                   "loss recommended for the target budget.")
def scaling_laws(context: AssetExecutionContext, config: ScalingLawsSettings,
                 storage: Storage) -> MaterializeResult:
    settings = config.build()
    if settings.target_budget is None:
        settings = dataclasses.replace(settings, target_budget=SCALING_SWEEP.target_budget)
    directories = {key: storage.artifact_dir(scaling_runs, key)
                   for key in scaling_partitions.get_partition_keys()}
    finished = {key: d for key, d in directories.items() if (d / MANIFEST_NAME).exists()}
    if missing := sorted(set(directories) - set(finished)):
        context.log.warning(f"fitting without {len(missing)} unfinished run(s): {missing}")
    runs = [read_scaling_run(directory) for directory in finished.values()]
    result = publish(context, storage, lambda out: fit_scaling_laws(runs, out, settings),
                     config=settings,
                     inputs={partition_path(key): upstream(d) for key, d in finished.items()})
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result),
        "runs_unfinished": MetadataValue.int(len(missing)),
        "excluded_runs": MetadataValue.md("\n".join(
            f"- {run.name}: {run.status}: {run.reason}" for run in runs if not run.included)
            or "none"),
    }))


@asset(deps=[scaling_laws, token_shards], group_name="scaling", kinds={"pytorch"},
       pool=GPU_POOL, retry_policy=TRAINING_RETRY_POLICY,
       description="The honest test: the recommended model trained at the held-out target "
                   "budget, its achieved loss against the predicted loss and interval.")
def scaling_check(context: AssetExecutionContext, storage: Storage) -> MaterializeResult:
    laws, shards = storage.artifact_dir(scaling_laws), storage.artifact_dir(token_shards)
    inputs = {"scaling_laws": upstream(laws), "token_shards": upstream(shards)}
    result = publish(context, storage, lambda out: check_scaling_prediction(
        SCALING_SWEEP, laws, shards, storage.home_path / "runs" / "scaling_check", out, inputs,
        progress=_progress(context)), config=SCALING_SWEEP, inputs=inputs)
    return MaterializeResult(**materialization(context, storage, result_metadata(result)))


@asset_check(asset=scaling_check, blocking=True,
             description="The achieved loss lies inside the prediction's interval.")
def prediction_within_interval(storage: Storage) -> AssetCheckResult:
    record = json.loads((storage.artifact_dir(scaling_check) / SCALING_CHECK_FILE).read_text())
    low, high, achieved = record["predicted_low"], record["predicted_high"], record["achieved_loss"]
    if achieved is None or low is None:
        description = f"nothing to compare ({record['status']}): {record['reason']}"
    elif low <= achieved <= high:
        description = None
    else:
        outside = achieved - high if achieved > high else achieved - low
        description = (f"achieved {achieved:.4f} is {abs(outside):.4f} "
                       f"{'above' if outside > 0 else 'below'} the interval "
                       f"[{low:.4f}, {high:.4f}] around the predicted {record['predicted_loss']:.4f}")
    return AssetCheckResult(passed=record["within_interval"], description=description,
                            metadata={"achieved_loss": achieved,
                                      "predicted_loss": record["predicted_loss"],
                                      "relative_error": record["relative_error"]})
