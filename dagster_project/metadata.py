"""Turning lmlib stage statistics into metadata a person wants to read in the UI."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import MetadataValue


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(none)_"
    columns = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def counts_table(counts: Mapping[str, Any], key: str = "name", value: str = "count") -> str:
    return markdown_table([{key: k, value: v} for k, v in counts.items()])


def image_markdown(path: Path, title: str) -> MetadataValue:
    """A PNG shown inline in the UI (as a data URI inside markdown)."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def numbers(stats: Mapping[str, Any], names: Sequence[str]) -> dict[str, MetadataValue]:
    """Selected stats as typed numbers, so the UI can plot them across materializations; a stat
    that was not measured (None: e.g. tokens/s of a run that had no step left to train) is left
    out rather than shown as a made-up number."""
    out = {}
    for name in names:
        value = stats[name]
        if value is None:
            continue
        if isinstance(value, float):
            out[name] = MetadataValue.float(float(f"{value:.6g}"))  # readable, still a number
        else:
            out[name] = MetadataValue.int(int(value))
    return out


def partitions_metadata(inputs) -> dict[str, MetadataValue]:
    """Which crawl partitions a global asset read and which it left out, with the reasons
    (`inputs`: a dagster_project.stage.PartitionInputs)."""
    return {
        "partitions_used": MetadataValue.int(len(inputs.dirs)),
        "partitions_left_out": MetadataValue.int(len(inputs.left_out)),
        "left_out": MetadataValue.md(markdown_table(
            [{"partition": key, "reason": reason} for key, reason in inputs.left_out.items()])),
    }
