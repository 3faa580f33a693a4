"""The stage contract: what every lmlib stage takes and returns.

A stage is one function `stage(inputs..., output_dir, config) -> Result`:
- `config` is one dataclass, the single source of the stage's fields, defaults and validation
  (`__post_init__` raises a ValueError naming the bad field);
- it writes its files into `output_dir` (the caller publishes the directory atomically, with a
  manifest: lmlib.artifacts);
- it returns a typed result, a dataclass subclassing `StageResult`: counts, metrics, tables as
  lists of rows, paths of images. Data, never markdown: the caller (the Dagster layer, a
  notebook, a benchmark) decides how to show it. `MANIFEST_COUNTS` names the fields recorded in
  the manifest.
"""

from __future__ import annotations

import dataclasses
import resource
from typing import Any, ClassVar


@dataclasses.dataclass
class StageResult:
    """Base of every stage's result; subclasses are dataclasses of plain values."""

    MANIFEST_COUNTS: ClassVar[tuple[str, ...]] = ()

    def manifest_counts(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.MANIFEST_COUNTS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_positive(owner: object, *names: str, allow_none: bool = False) -> None:
    """For __post_init__: each named field is an int/float > 0 (or None when allowed)."""
    for name in names:
        value = getattr(owner, name)
        if value is None and allow_none:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be > 0, got {value!r}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux reports
    KiB), for results that report what a stage cost."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def config_from_dict(config_type: type, values: dict) -> Any:
    """A config dataclass from a dict (a JSON file, a checkpoint), refusing unknown fields with
    the list of known ones, so a typo never silently falls back to a default."""
    known = {field.name for field in dataclasses.fields(config_type)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {config_type.__name__} fields {sorted(unknown)}; "
                         f"known: {sorted(known)}")
    return config_type(**values)
