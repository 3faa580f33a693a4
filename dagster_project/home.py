"""Where everything lives: LMPIPE_HOME (default ./.lmpipe) and the Dagster instance inside it.

The Dagster instance sits in $LMPIPE_HOME/dagster so that `make ui` shows the runs `make demo` made.
Its dagster.yaml and its gpu pool limit follow dagster_project.policies (run retries, run
monitoring, one GPU step at a time by default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from lmlib.home import lmpipe_home  # the one resolution of LMPIPE_HOME

REPO_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_CRAWL = REPO_ROOT / "assets" / "crawl"

MANAGED_BEGIN = ("# >>> lmpipe: dagster_project/home.py rewrites this block from the LMPIPE_* "
                 "variables; edit outside it (your top-level keys win)\n")
MANAGED_END = "# <<< lmpipe\n"
# What versions before the managed block wrote; such a file is the project's own.
EARLIER_DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""


def crawl_dir() -> Path:
    """The directory whose crawl files become partitions (LMPIPE_CRAWL_DIR, else the embedded one)."""
    return Path(os.environ.get("LMPIPE_CRAWL_DIR", EMBEDDED_CRAWL)).resolve()


def dagster_home() -> Path:
    """$DAGSTER_HOME, else $LMPIPE_HOME/dagster (an empty DAGSTER_HOME counts as unset)."""
    return Path(os.environ.get("DAGSTER_HOME") or lmpipe_home() / "dagster").resolve()


def write_dagster_yaml(path: Path, settings: Mapping[str, object]) -> bool:
    """Bring `path` up to date with the project's `settings`; True when the file changed.

    The file is shared: the block between the lmpipe markers is the project's and is rewritten
    every time (so a changed LMPIPE_RUN_RETRIES takes effect); everything outside it is the
    user's and kept byte for byte. A top-level key the user sets outside the block wins: the block
    leaves that key out rather than repeat it. A file without the block is regenerated when it
    is exactly what earlier versions wrote (telemetry and nux, nothing else), and otherwise kept
    with the block appended, so an older instance gains run retries without losing its settings.
    """
    import yaml

    text = path.read_text() if path.exists() else ""
    if text == EARLIER_DAGSTER_YAML:
        text = ""
    before, has_block, rest = text.partition(MANAGED_BEGIN)
    if has_block and MANAGED_END not in rest:
        raise ValueError(f"{path}: the line {MANAGED_END.strip()!r} that ends the block lmpipe "
                         "manages is missing; put it back after the block, or remove the block")
    after = rest.partition(MANAGED_END)[2] if has_block else ""
    try:
        user = yaml.safe_load(before + after) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML ({error}); fix or remove it") from None
    if not isinstance(user, dict):
        raise ValueError(f"{path} must hold a YAML mapping of instance settings")
    managed = {key: value for key, value in settings.items() if key not in user}
    block = MANAGED_BEGIN + (yaml.safe_dump(managed, sort_keys=False) if managed else "") + MANAGED_END
    if has_block:
        updated = before + block + after
    else:
        updated = before + ("\n" if before and not before.endswith("\n") else "") + block
    if path.exists() and updated == path.read_text():
        return False
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(updated)
    os.replace(temporary, path)
    return True


def ensure_dagster_home() -> Path:
    """Create or update $DAGSTER_HOME (default $LMPIPE_HOME/dagster) and point DAGSTER_HOME at it.

    Writes the managed settings of dagster.yaml (write_dagster_yaml), then opens the instance
    and gives the gpu concurrency pool its limit (policies.apply_gpu_pool_limit): Dagster keeps
    per-pool limits in the instance's storage, where dagster.yaml cannot set them.
    """
    from dagster import DagsterInstance

    from dagster_project.policies import apply_gpu_pool_limit, instance_settings

    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    write_dagster_yaml(home / "dagster.yaml", instance_settings())
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.from_config(str(home)) as instance:
        apply_gpu_pool_limit(instance)
    return home


if __name__ == "__main__":
    print(ensure_dagster_home())
