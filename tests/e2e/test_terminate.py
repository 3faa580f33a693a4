"""Terminating a base_model run the way the UI does, then materializing it again.

`dagster dev` (webserver, daemon, code server: what `make ui` runs) launches the run; the test
terminates it through the GraphQL API the UI's Terminate button calls. The run worker gets
SIGINT, the trainer (in process, or every torchrun worker) writes a checkpoint at the step it
reached, and the run ends CANCELED. Materializing again with the same config resumes from that
step rather than from the last periodic checkpoint (there is none: the interval is 10,000).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, materialize

from lmlib.train import latest_checkpoint
from tests.conftest import REPO_ROOT, lmpipe_environment

MAX_STEPS = 300
MICRO_MODEL = {"batch_size": 2, "model": {"d_model": 32, "num_layers": 1, "num_heads": 2,
                                          "context_length": 32},
               "checkpoint_interval": 10_000, "max_steps": MAX_STEPS,
               "device": "cpu"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def dagster_dev(pipeline_home, tmp_path_factory):
    """`dagster dev` over a fresh LMPIPE_HOME holding the demo's token shards and tokenizer
    (so this module's base_model runs never mix with the end-to-end tests' history)."""
    from dagster_graphql import DagsterGraphQLClient

    demo_home, _ = pipeline_home
    home = tmp_path_factory.mktemp("terminate")
    for name in ("token_shards", "bpe_tokenizer"):
        shutil.copytree(demo_home / "artifacts" / name, home / "artifacts" / name)
    with lmpipe_environment(home):
        from dagster_project.home import ensure_dagster_home

        ensure_dagster_home()
    port = _free_port()
    env = {**os.environ, "LMPIPE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port),
         "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            return True
        except OSError:
            assert process.poll() is None, "dagster dev exited"
            return False

    try:
        _wait_for(answers, 120, "dagster dev to answer")
        yield home, DagsterGraphQLClient("127.0.0.1", port_number=port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _run_dirs(home: Path) -> set[Path]:
    runs = home / "runs" / "base_model"
    return set(runs.iterdir()) if runs.exists() else set()


def _logged_step(run_dir: Path) -> int:
    log = run_dir / "log.jsonl"
    if not log.exists():
        return 0
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


@pytest.mark.parametrize("launcher", [{"launcher": "inprocess"},
                                      {"launcher": "torchrun", "nproc_per_node": 2}],
                         ids=["inprocess", "torchrun"])
def test_terminated_run_checkpoints_and_the_next_one_resumes_there(dagster_dev, launcher):
    from dagster_project.definitions import defs

    home, client = dagster_dev
    run_config = {"ops": {"base_model": {"config": {**MICRO_MODEL, **launcher}}}}
    before = _run_dirs(home)
    run_id = client.submit_job_execution("__ASSET_JOB", run_config=run_config,
                                         asset_selection=["base_model"])
    run_dir = _wait_for(lambda: next(iter(_run_dirs(home) - before), None), 180,
                        "the training run directory")
    _wait_for(lambda: _logged_step(run_dir) >= 20, 180, "step 20 in the training log")
    client.terminate_run(run_id)
    _wait_for(lambda: client.get_run_status(run_id) == DagsterRunStatus.CANCELED, 180,
              "the run to end CANCELED")

    stopped = latest_checkpoint(run_dir / "checkpoints")
    assert stopped is not None, "terminating wrote no checkpoint"
    stopped_step = int(stopped.name.removeprefix("step_"))
    assert 20 <= stopped_step < MAX_STEPS

    with lmpipe_environment(home), DagsterInstance.get() as instance:
        result = materialize([*defs.assets, *defs.asset_checks], selection=["base_model"],
                             instance=instance, resources=defs.resources, run_config=run_config)
        assert result.success
        record = instance.fetch_materializations(AssetKey("base_model"), limit=1).records[0]
    metadata = record.asset_materialization.metadata
    assert metadata["resumed_from_step"].value == stopped_step
    assert metadata["steps"].value == MAX_STEPS
