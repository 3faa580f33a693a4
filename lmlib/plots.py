"""The one plotting setup: matplotlib imported lazily with the Agg backend (no display), and
the small PNG charts stages write beside their artifacts. Every module that plots calls
`pyplot()` rather than configuring matplotlib itself (the GPU machines may lack matplotlib, so
nothing imports it at module level)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(labels: Sequence[str], values: Sequence[float], path: Path, title: str,
              ylabel: str = "", horizontal: bool = False) -> Path:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6), dpi=100)
    if horizontal:
        axis.barh(list(labels)[::-1], list(values)[::-1], color="#4c72b0")
        axis.set_xlabel(ylabel)
    else:
        axis.bar(list(labels), list(values), color="#4c72b0")
        axis.set_ylabel(ylabel)
        axis.tick_params(axis="x", rotation=30)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
