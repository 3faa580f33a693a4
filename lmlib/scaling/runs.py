"""Training runs as the scaling fits see them, and readers for the two public data sets.

Notable:
- a `Run` is (N parameters, D tokens, C FLOPs, final loss) plus a status: any run whose status
  is not "ok" (diverged, failed, excluded as an outlier) is left out of every fit, and the fit
  keeps it with its reason, so a report can say what was dropped and why;
- `flops` is the compute budget the run was planned at, the key that groups an isoFLOP curve
  (two runs of one budget must carry the same value, to 6 significant digits);
- the readers follow their sources' conventions: the CS336 isoFLOP file gives N and C, the
  Chinchilla extraction gives N and C; both take D = C / (6 N).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

OK = "ok"


@dataclass(frozen=True)
class Run:
    """One finished (or abandoned) training run; `status` other than "ok" excludes it from fits."""

    params: float
    tokens: float
    flops: float
    loss: float
    status: str = OK
    reason: str = ""
    name: str = ""

    @classmethod
    def from_flops(cls, params: float, flops: float, loss: float, **fields) -> Run:
        """A run described by its budget: D = C / (6 N), the convention of both data sets."""
        return cls(params=params, tokens=flops / (6.0 * params), flops=flops, loss=loss, **fields)

    @property
    def included(self) -> bool:
        return self.status == OK

    def excluded_because(self, reason: str, status: str = "excluded") -> Run:
        """This run marked as left out of fits, with the reason kept."""
        return replace(self, status=status, reason=reason)

    def to_dict(self) -> dict:
        values = asdict(self)
        # NaN and inf (a diverged run's loss) are not JSON: written as null
        return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in values.items()}


def split_runs(runs: Iterable[Run], fit: str) -> tuple[list[Run], list[Run]]:
    """(included, excluded); checks that every included run has positive finite N, D, C and loss,
    naming the first run that does not (a fit on such a run would take a log of it)."""
    included, excluded = [], []
    for index, run in enumerate(runs):
        if not isinstance(run, Run):
            raise TypeError(f"{fit}: runs[{index}] is a {type(run).__name__}, expected a Run")
        if not run.included:
            excluded.append(run)
            continue
        for field in ("params", "tokens", "flops", "loss"):
            value = getattr(run, field)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                label = f" ({run.name})" if run.name else ""
                raise ValueError(
                    f"{fit}: runs[{index}]{label} has {field}={value!r}; N, D, C and loss must be "
                    f"positive and finite (mark a diverged run with status='diverged' instead)"
                )
        included.append(run)
    return included, excluded


def exclude_highest_losses(runs: Sequence[Run], count: int, reason: str | None = None) -> list[Run]:
    """The runs with the `count` highest losses among the included ones marked excluded.

    Besiroglu et al. (2024) drop the five highest-loss points of the Chinchilla extraction
    (small models trained on few tokens, which the law fits worst) before their fit."""
    if count < 0:
        raise ValueError(f"exclude_highest_losses: count must be >= 0, got {count}")
    ranked = sorted((i for i, run in enumerate(runs) if run.included),
                    key=lambda i: runs[i].loss, reverse=True)
    dropped = set(ranked[:count])
    why = reason or f"among the {count} highest losses (outlier rule of Besiroglu et al. 2024)"
    return [run.excluded_because(why) if i in dropped else run for i, run in enumerate(runs)]


def load_isoflop_curves(path: str | Path) -> list[Run]:
    """The CS336 scaling assignment's isoFLOP runs: a JSON list of
    {"parameters", "compute_budget", "final_loss"}."""
    path = Path(path)
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of runs, got {type(records).__name__}")
    runs = []
    for index, record in enumerate(records):
        try:
            runs.append(Run.from_flops(float(record["parameters"]),
                                       float(record["compute_budget"]),
                                       float(record["final_loss"]), name=f"{path.stem}[{index}]"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: record {index} needs parameters, compute_budget and "
                             f"final_loss ({error!r})") from error
    return runs


def load_chinchilla_extraction(path: str | Path) -> list[Run]:
    """Epoch AI's points read off the Chinchilla paper's figure (svg_extracted_data.csv):
    columns "Model Size", "Training FLOP", "loss"; rows missing one of them are skipped."""
    path = Path(path)
    runs = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"Model Size", "Training FLOP", "loss"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for index, row in enumerate(reader):
            values = [row["Model Size"], row["Training FLOP"], row["loss"]]
            if any(value in ("", None) for value in values):
                continue
            params, flops, loss = (float(value) for value in values)
            runs.append(Run.from_flops(params, flops, loss, name=f"{path.stem}[{index}]"))
    return runs
