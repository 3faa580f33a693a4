"""Shared pytest setup.

Triton kernels run on the CPU under the interpreter, which must be switched on before any
module that defines kernels is imported.
"""

import os
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

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def shared_path(relative: str) -> Path:
    """Path to a file in ../shared; skips the calling test with a clear reason when absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real-data test: ../shared/{relative} not present")
    return path


def pytest_collection_modifyitems(config, items):
    if _has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
