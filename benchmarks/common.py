"""Shared bits of the benchmark scripts: where the shared data is, and the machine's description."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared_dir() -> Path:
    """The `shared/` folder of real data: $LMPIPE_SHARED_DIR, else beside this checkout, else
    beside the checkout this one was cloned from (CI tests a fresh clone made elsewhere)."""
    candidates = [os.environ.get("LMPIPE_SHARED_DIR"), REPO_ROOT.parent / "shared"]
    try:
        origin = subprocess.run(["git", "-C", str(REPO_ROOT), "remote", "get-url", "origin"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
        if origin and Path(origin).is_dir():
            candidates.append(Path(origin).resolve().parent / "shared")
    except (OSError, subprocess.SubprocessError):
        pass
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return REPO_ROOT.parent / "shared"


SHARED = find_shared_dir()


def shared_file(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        raise SystemExit(f"benchmark input ../shared/{relative} is not present")
    return path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return f"{platform.node() or 'host'}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}{gpu}"


def header(title: str) -> str:
    return f"## {title}\n\n{datetime.date.today().isoformat()}, {machine()}\n"
