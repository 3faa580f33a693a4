"""Small PNG plots for stage metadata (matplotlib, imported lazily, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(labels: Sequence[str], values: Sequence[float], path: Path, title: str,
              ylabel: str = "", horizontal: bool = False) -> Path:
    plt = _pyplot()
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


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str,
               xlabel: str, ylabel: str) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.6), dpi=100)
    for name, (xs, ys) in series.items():
        axis.plot(list(xs), list(ys), marker="o", markersize=3, label=name)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if len(series) > 1:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
