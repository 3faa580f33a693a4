"""Where everything lives: LMPIPE_HOME (default ./.lmpipe) and the Dagster instance inside it.

The Dagster instance sits in $LMPIPE_HOME/dagster so that `make ui` shows the runs `make demo` made.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_CRAWL = REPO_ROOT / "assets" / "crawl"

_DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""


def lmpipe_home() -> Path:
    return Path(os.environ.get("LMPIPE_HOME", REPO_ROOT / ".lmpipe")).resolve()


def crawl_dir() -> Path:
    """The directory whose crawl files become partitions (LMPIPE_CRAWL_DIR, else the embedded one)."""
    return Path(os.environ.get("LMPIPE_CRAWL_DIR", EMBEDDED_CRAWL)).resolve()


def ensure_dagster_home() -> Path:
    """Create $LMPIPE_HOME/dagster with a quiet dagster.yaml and point DAGSTER_HOME at it."""
    home = Path(os.environ.get("DAGSTER_HOME", lmpipe_home() / "dagster")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


if __name__ == "__main__":
    print(ensure_dagster_home())
