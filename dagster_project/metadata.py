"""Turning lmlib stage results into metadata a person wants to read in the UI.

`result_metadata(result)` renders any `lmlib.stage.StageResult` by the type of each field, so a
stage's result needs no code here: numbers stay numbers (the UI plots them across
materializations), mappings of counts and lists of rows become tables, a mapping of row lists
becomes titled tables, a PNG path an inline image, another path a path. A field's
`metadata={"key": ..., "value": ...}` names a counts table's columns; `{"show": False}` keeps a
field out of the UI.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import MetadataValue

from lmlib.stage import StageResult


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


def partitions_metadata(inputs) -> dict[str, MetadataValue]:
    """Which crawl partitions a global asset read and which it left out, with the reasons
    (`inputs`: a dagster_project.stage.PartitionInputs)."""
    return {
        "partitions_used": MetadataValue.int(len(inputs.dirs)),
        "partitions_left_out": MetadataValue.int(len(inputs.left_out)),
        "left_out": MetadataValue.md(markdown_table(
            [{"partition": key, "reason": reason} for key, reason in inputs.left_out.items()])),
    }


def _number(value: float | int) -> MetadataValue:
    if isinstance(value, float):
        return MetadataValue.float(float(f"{value:.6g}"))  # readable, still a number
    return MetadataValue.int(int(value))


def _is_rows(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(row, Mapping) for row in value)


def inline_images(markdown: str, directory: Path) -> str:
    """A markdown file's relative PNG links as data URIs, so the UI shows the images."""

    def encode(match: re.Match) -> str:
        path = Path(directory) / match.group(2)
        if not path.is_file():
            return match.group(0)
        return f"![{match.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)", encode, markdown)


def _render(value: Any, field_metadata: Mapping[str, Any], title: str) -> MetadataValue | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) and value and all(
            dataclasses.is_dataclass(row) for row in value):
        value = [dataclasses.asdict(row) for row in value]  # typed rows: a table like dicts
    if isinstance(value, bool):
        return MetadataValue.bool(value)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return MetadataValue.text(value)
    if isinstance(value, Path):
        return image_markdown(value, title) if value.suffix == ".png" else MetadataValue.path(
            str(value))
    if _is_rows(value):
        return MetadataValue.md(markdown_table(value))
    if isinstance(value, Mapping):
        if value and all(_is_rows(rows) for rows in value.values()):
            sections = [f"**{name}**\n\n{markdown_table(rows)}" for name, rows in value.items()
                        if rows]
            return MetadataValue.md("\n\n".join(sections) or "_(none)_")
        return MetadataValue.md(counts_table(value, field_metadata.get("key", "name"),
                                             field_metadata.get("value", "count")))
    if isinstance(value, list | tuple):
        return MetadataValue.md(markdown_table([{title: item} for item in value]))
    return MetadataValue.text(str(value))


def result_metadata(result: StageResult) -> dict[str, MetadataValue]:
    """Every shown field of a stage result, rendered by its type (see the module docstring)."""
    metadata = {}
    for field in dataclasses.fields(result):
        if field.metadata.get("show", True) is False:
            continue
        rendered = _render(getattr(result, field.name), field.metadata, field.name)
        if rendered is not None:
            metadata[field.name] = rendered
    return metadata


def provenance_metadata(provenance, limit: int = 50) -> dict[str, MetadataValue]:
    """The walk back to the crawl files (`provenance`: a dagster_project.provenance.Provenance):
    each artifact's asset, partition, code version, config and manifest hashes, then the crawl
    files with their sha256; long walks are cut at `limit` rows (the CLI prints them all)."""

    def table(rows: list[dict]) -> str:
        more = f"\n\n_... and {len(rows) - limit} more_" if len(rows) > limit else ""
        return markdown_table(rows[:limit]) + more

    text = f"{table(provenance.rows())}\n\n**crawl files**\n\n{table(provenance.crawl_rows())}"
    if provenance.superseded:
        text += f"\n\n{len(provenance.superseded)} input(s) re-materialized since this run"
    return {"provenance": MetadataValue.md(text),
            "crawl_files": MetadataValue.int(len(provenance.crawl_files))}
