"""Shared pytest setup.

Triton kernels run on the CPU under the interpreter, which must be switched on before any
module that defines kernels is imported.
"""

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# GPU tests take each attention kernel's first tiles: autotuning every tested shape cost minutes
# (one backward test spent 163 s). test_gpu_every_tile_configuration_is_correct checks the rest.
os.environ.setdefault("LMLIB_ATTENTION_AUTOTUNE", "0")
# A retried training step waits 0.1 s (then 0.3, 0.7) in tests, not 30 s; read when
# dagster_project.policies is first imported, which is after this file.
os.environ.setdefault("LMPIPE_TRAINING_RETRY_DELAY", "0.1")

from benchmarks.common import REPO_ROOT, SHARED  # noqa: E402, F401  (one place that finds ../shared)


def shared_path(relative: str) -> Path:
    """Path to a file in ../shared; skips the calling test with a clear reason when absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real-data test: ../shared/{relative} not present (set LMPIPE_SHARED_DIR)")
    return path


def pytest_collection_modifyitems(config, items):
    if _has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@contextmanager
def lmpipe_environment(home: Path):
    """LMPIPE_HOME and DAGSTER_HOME pointed at `home` (Storage reads them at run time)."""
    saved = {k: os.environ.get(k) for k in ("LMPIPE_HOME", "DAGSTER_HOME")}
    os.environ["LMPIPE_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def materialize_pipeline(home: Path) -> None:
    """Every asset, all partitions, on the embedded default, into a fresh LMPIPE_HOME."""
    from dagster import DagsterInstance

    from dagster_project.definitions import defs
    from dagster_project.demo import run_everything
    from dagster_project.home import ensure_dagster_home

    with lmpipe_environment(home):
        ensure_dagster_home()
        with DagsterInstance.get() as instance:
            outcome = run_everything(defs, instance, log=lambda message: None)
    assert outcome.succeeded and not outcome.failures, outcome.summary()


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory):
    """The whole graph materialized once, on the embedded default, in a temporary LMPIPE_HOME.

    Shared by the end-to-end and UI tests; returns (lmpipe_home, dagster_home).
    """
    home = tmp_path_factory.mktemp("lmpipe")
    with lmpipe_environment(home):
        materialize_pipeline(home)
        yield home, home / "dagster"
