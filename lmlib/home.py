"""Where the factory keeps everything: LMPIPE_HOME, default ./.lmpipe (resolved here only).

Artifacts, training runs, downloaded models and the Dagster instance all live under it.
"""

from __future__ import annotations

import os
from pathlib import Path


def lmpipe_home() -> Path:
    return Path(os.environ.get("LMPIPE_HOME") or ".lmpipe").resolve()
