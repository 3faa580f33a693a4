"""The scaling sweep as assets on the CPU: a 2 x 2 grid (LMPIPE_SCALING_SWEEP, read when the
definitions load, so it runs in a fresh interpreter) of real training runs, one of them made to
diverge; scaling_laws fits the rest and names the diverged run with its reason."""

import json
import os
import subprocess
import sys

from dagster import AssetKey, DagsterInstance

from dagster_project.home import REPO_ROOT, ensure_dagster_home

SWEEP = {"sizes": ["32x1", "64x1"], "budgets": [2e9, 6e9], "target_budget": 2.4e10,
         "head_dim": 32, "context_length": 32, "batch_size": 8, "eval_batches": 2,
         "device": "cpu"}

MATERIALIZE = """
import lmlib.train.trainer as trainer
from dagster import DagsterInstance, materialize
from dagster_project.definitions import defs
from dagster_project.partitions import scaling_partitions

real_train = trainer.train

def train(config, *args, **kwargs):  # the larger model at the larger budget diverges
    if config.model.d_model == 64 and config.max_steps > 50:
        raise FloatingPointError("training loss became nan at step 3 (injected)")
    return real_train(config, *args, **kwargs)

trainer.train = train
with DagsterInstance.get() as instance:
    for key in scaling_partitions.get_partition_keys():
        assert materialize([*defs.assets, *defs.asset_checks], selection=["scaling_runs"],
                           partition_key=key, instance=instance, resources=defs.resources,
                           raise_on_error=False).success
    assert materialize([*defs.assets, *defs.asset_checks], selection=["scaling_laws"],
                       instance=instance, resources=defs.resources).success
"""


def test_a_two_by_two_sweep_materializes_and_leaves_out_its_diverged_run(training_home,
                                                                       tmp_path):
    ensure_dagster_home()
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(SWEEP))
    subprocess.run([sys.executable, "-c", MATERIALIZE], cwd=REPO_ROOT, check=True, env={
        **os.environ, "LMPIPE_SCALING_SWEEP": str(sweep)})
    runs = sorted((training_home / "artifacts" / "scaling_runs").glob("budget=*/size=*"))
    assert [f"{p.parent.name}/{p.name}" for p in runs] == [
        f"budget={b}/size={s}" for b in ("2e9", "6e9") for s in ("32x1", "64x1")]
    laws = json.loads((training_home / "artifacts" / "scaling_laws" / "scaling_laws.json")
                      .read_text())
    assert laws["approach2"]["runs"] == 3  # fitted without the diverged run
    (diverged,) = [run for run in laws["runs"] if run["status"] != "ok"]
    assert diverged["name"] == "64x1@6e9" and "injected" in diverged["reason"]
    assert "needs at least 6 included runs" in laws["approach3"]["skipped"]
    with DagsterInstance.get() as instance:
        record = instance.fetch_materializations(AssetKey("scaling_laws"), limit=1).records[0]
        metadata = record.asset_materialization.metadata
    assert "64x1@6e9: diverged: training loss became nan" in metadata["excluded_runs"].value
    assert metadata["recommended_params"].value > 0
