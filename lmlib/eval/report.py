"""The report card: every evaluated checkpoint in one markdown file with PNG plots beside it.

Notable:
- the shape follows nanochat's report.md (environment, then one section per stage, then a
  summary table of all stages side by side), but it is rendered from data in one call, not
  assembled from markdown fragments each stage wrote;
- one comparison table, rows = metrics, columns = checkpoints; a task cell reads
  "0.406 [0.352, 0.462] (n=300)": value, interval, examples, so a difference can be judged
  against the noise;
- deterministic: the same inputs give byte-identical report.md. The only timings in it are the
  evaluation times, taken from `CheckpointReport.evaluation_seconds` and the tasks' `seconds`
  (absent from evaluation.json, which `without_timings` strips): absent, they read
  "not recorded";
- images are referenced by relative file name, so the markdown renders next to its PNGs;
  matplotlib is imported lazily through lmlib.plots.pyplot, and a plot it cannot draw is left
  out of the report rather than failing it;
- table cells escape "|" and fold newlines; code blocks pick a fence longer than any backtick
  run inside, so model output cannot break the layout;
- no torch: rendering a report needs only the evaluation records (load_checkpoint_report reads
  them from disk).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from lmlib.formats import (
    BITS_PER_BYTE_PLOT_FILE,
    REPORT_FILE,
    TASK_SCORES_PLOT_FILE,
    TRAIN_LOG_FILE,
    TRAINING_CURVES_PLOT_FILE,
)
from lmlib.plots import pyplot
from lmlib.stage import StageResult
from lmlib.train.report import read_log

NOT_RECORDED = "not recorded"
MISSING = "—"  # a metric a checkpoint was not evaluated on
SHOWN_SUBJECTS = 5  # MMLU subjects shown at each end of the per-subject ranking
PROMPT_CHARACTERS = 600  # a prompt excerpt keeps its end: the question, not the few shots
OUTPUT_CHARACTERS = 1_000


@dataclass
class CheckpointReport:
    """What the report knows about one checkpoint: its evaluation record (evaluation.json:
    asdict(EvaluationResult) plus "config"), its training log and a free-form training summary."""

    name: str
    evaluation: dict
    evaluation_seconds: float | None = None
    training_log: list[dict] = field(default_factory=list)  # log.jsonl records
    training_summary: dict = field(default_factory=dict)  # e.g. steps, tokens, final loss


@dataclass
class ReportContext:
    """What is common to all checkpoints: the data they were trained on and where it came from.

    `funnel` lists (stage, count) from crawl records to shards, in order; an optional third
    element names the unit ("documents", "tokens"): "kept %" compares a stage only with a
    previous stage of the same unit."""

    title: str = "Report card"
    funnel: list[tuple[str, int] | tuple[str, int, str]] = field(default_factory=list)
    data_summary: dict[str, object] = field(default_factory=dict)
    provenance: str = ""  # one line: crawl files -> ... -> checkpoints
    generated_by: str = ""  # e.g. "lmpipe 0.3, commit abc1234"


@dataclass
class ReportResult(StageResult):
    path: str  # report.md
    plots: list[str]  # PNG file names beside report.md
    comparison: list[dict]  # one row per checkpoint: {"checkpoint": name, metric: value, ...}
    checkpoints: list[str]


@dataclass(frozen=True)
class _Measurement:
    """One cell of the comparison: a number, how to print it, and how far to trust it."""

    value: float
    digits: int = 3  # decimals; 0: an integer with thousands separators
    low: float | None = None
    high: float | None = None
    examples: int | None = None

    def text(self) -> str:
        text = _number(self.value, self.digits)
        if self.low is not None and self.high is not None:
            text += f" [{_number(self.low, self.digits)}, {_number(self.high, self.digits)}]"
        if self.examples is not None:
            text += f" (n={self.examples:,})"
        return text


def load_checkpoint_report(name: str, evaluation_dir: Path, run_dir: Path | None = None,
                           training_summary: dict | None = None,
                           evaluation_seconds: float | None = None) -> CheckpointReport:
    """A checkpoint's report from disk: evaluation.json in evaluation_dir and, when given, the
    training run's log.jsonl in run_dir."""
    # imported here: the battery module brings torch, which rendering a report does not need
    from lmlib.eval.battery import EVALUATION_FILE

    path = Path(evaluation_dir) / EVALUATION_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: evaluate checkpoint {name!r} first")
    log = read_log(Path(run_dir) / TRAIN_LOG_FILE) if run_dir is not None else []
    return CheckpointReport(name=name, evaluation=json.loads(path.read_text()),
                            evaluation_seconds=evaluation_seconds, training_log=log,
                            training_summary=dict(training_summary or {}))


def write_report(checkpoints: list[CheckpointReport], context: ReportContext,
                 output_dir: Path) -> ReportResult:
    """Writes report.md and its PNG plots into output_dir (the caller publishes it)."""
    names = [checkpoint.name for checkpoint in checkpoints]
    if not names:
        raise ValueError("write_report needs at least one checkpoint; none were given")
    if len(set(names)) != len(names):
        raise ValueError(f"checkpoint names must be unique (they are the table's columns), "
                         f"got {names}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = {checkpoint.name: _metrics(checkpoint.evaluation) for checkpoint in checkpoints}
    labels = list(dict.fromkeys(label for table in metrics.values() for label in table))
    plots = _write_plots(checkpoints, output_dir)
    lines = [f"# {context.title}", ""]
    if context.generated_by:
        lines += [f"Generated by {context.generated_by}.", ""]
    lines += [f"Checkpoints: {', '.join(names)}.", ""]
    lines += _summary_section(names, labels, metrics, plots)
    lines += _data_section(context)
    if context.provenance:
        lines += ["## Provenance", "", context.provenance, ""]
    for checkpoint in checkpoints:
        lines += _checkpoint_section(checkpoint, plots)
    path = output_dir / REPORT_FILE
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    comparison = [{"checkpoint": name, **{label: (metrics[name][label].value
                                                   if label in metrics[name] else None)
                                          for label in labels}}
                  for name in names]
    return ReportResult(path=str(path), plots=sorted(plots.values()), comparison=comparison,
                        checkpoints=names)


# --- what is measured -------------------------------------------------------------------------


def _metrics(evaluation: dict) -> dict[str, _Measurement]:
    """Comparison label -> measurement, in the order the table shows them."""
    metrics: dict[str, _Measurement] = {}
    if evaluation.get("parameters") is not None:
        metrics["parameters"] = _Measurement(evaluation["parameters"], digits=0)
    for key, label, digits in (("validation_loss", "validation loss (nats/token)", 4),
                               ("validation_perplexity", "validation perplexity", 2),
                               ("validation_bits_per_byte", "validation bits per byte", 4)):
        if evaluation.get(key) is not None:
            metrics[label] = _Measurement(evaluation[key], digits)
    for file_name, text in evaluation.get("texts", {}).items():
        metrics[f"bits per byte: {file_name}"] = _Measurement(text["bits_per_byte"], 4)
    for task in evaluation.get("tasks", []):
        metrics[_task_label(task)] = _Measurement(task["value"], 3, task.get("low"),
                                                  task.get("high"), task.get("examples"))
    return metrics


def _task_label(task: dict) -> str:
    return f"{task['task']} {task['metric']}"


def _language_modelling(evaluation: dict) -> list[tuple[str, dict]]:
    """(data name, {loss, perplexity, bits_per_byte, tokens}) for the validation shards and
    each text file."""
    rows = []
    if evaluation.get("validation_bits_per_byte") is not None:
        rows.append(("validation shards", {
            "loss": evaluation.get("validation_loss"),
            "perplexity": evaluation.get("validation_perplexity"),
            "bits_per_byte": evaluation["validation_bits_per_byte"],
            "tokens": evaluation.get("validation_tokens")}))
    rows += list(evaluation.get("texts", {}).items())
    return rows


# --- markdown ---------------------------------------------------------------------------------


def _summary_section(names: list[str], labels: list[str],
                     metrics: dict[str, dict[str, _Measurement]],
                     plots: dict[str, str]) -> list[str]:
    rows = [[label] + [metrics[name][label].text() if label in metrics[name] else MISSING
                       for name in names]
            for label in labels]
    lines = ["## Summary", "",
             "Every checkpoint side by side; a task reads value [interval] (n=examples).", ""]
    lines += _table(["metric", *names], rows) + [""]
    for key, alt in (("training", "training curves"), ("bits_per_byte", "bits per byte"),
                     ("tasks", "task scores")):
        if key in plots:
            lines += [f"![{alt}]({plots[key]})", ""]
    return lines


def _data_section(context: ReportContext) -> list[str]:
    if not context.data_summary and not context.funnel:
        return []
    lines = ["## Data", ""]
    if context.data_summary:
        lines += _table(["", "value"], [[key, _value(value)]
                                        for key, value in context.data_summary.items()]) + [""]
    if context.funnel:
        rows, previous = [], None
        for stage in context.funnel:
            name, count = stage[0], stage[1]
            unit = stage[2] if len(stage) > 2 else ""
            kept = MISSING
            # a percentage across units (documents -> tokens) would mean nothing
            if previous is not None and previous[1] == unit and previous[0]:
                kept = f"{100 * count / previous[0]:.1f}%"
            rows.append([name, f"{count:,} {unit}".rstrip(), kept])
            previous = (count, unit)
        lines += ["From crawl to shards; kept % is relative to the previous stage.", ""]
        lines += _table(["stage", "count", "kept %"], rows) + [""]
    return lines


def _checkpoint_section(checkpoint: CheckpointReport, plots: dict[str, str]) -> list[str]:
    evaluation = checkpoint.evaluation
    lines = [f"## Checkpoint: {checkpoint.name}", "", "### Model", ""]
    parameters = evaluation.get("parameters")
    lines += [f"- parameters: {_value(parameters) if parameters is not None else MISSING}",
              f"- evaluated on: {evaluation.get('device', MISSING)}", ""]
    lines += _training_section(checkpoint, plots)
    language_modelling = _language_modelling(evaluation)
    if language_modelling:
        lines += ["### Language modelling", ""]
        lines += _table(["data", "loss (nats/token)", "perplexity", "bits per byte", "tokens"],
                        [[name, _number(row.get("loss"), 4), _number(row.get("perplexity"), 2),
                          _number(row.get("bits_per_byte"), 4), _number(row.get("tokens"), 0)]
                         for name, row in language_modelling]) + [""]
    tasks = evaluation.get("tasks", [])
    if tasks:
        lines += ["### Tasks", ""]
        lines += _table(["task", "metric", "value", "interval", "examples", "settings"],
                        [[task["task"], task["metric"], _number(task["value"], 3),
                          _interval(task.get("low"), task.get("high")),
                          _number(task.get("examples"), 0), task.get("settings", "")]
                         for task in tasks]) + [""]
    skipped = evaluation.get("skipped", {})
    if skipped:
        lines += ["Skipped:", ""] + [f"- {task}: {why}" for task, why in skipped.items()] + [""]
    lines += _samples_section(evaluation.get("samples", []) + evaluation.get("subjects", []))
    lines += _time_section(checkpoint)
    if "config" in evaluation:
        lines += ["<details><summary>Evaluation configuration</summary>", "",
                  *_code_block(json.dumps(evaluation["config"], indent=2), "json"),
                  "", "</details>", ""]
    return lines


def _training_section(checkpoint: CheckpointReport, plots: dict[str, str]) -> list[str]:
    lines = ["### Training", ""]
    if checkpoint.training_summary:
        lines += _table(["", "value"], [[key, _value(value)] for key, value
                                        in checkpoint.training_summary.items()]) + [""]
    log = _log_summary(checkpoint.training_log)
    if log:
        lines += [log, ""]
        if "training" in plots:
            lines += [f"Curve: [training curves]({plots['training']}).", ""]
    elif not checkpoint.training_summary:
        lines += ["No training log.", ""]
    return lines


def _log_summary(records: list[dict]) -> str:
    """One sentence from log.jsonl: the steps, and where train and validation loss went."""
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in records if r.get("kind") == "eval" and r.get("val_loss") is not None]
    if not train and not evals:
        return ""
    parts = []
    if train:
        parts.append(f"{len(train)} training records, steps {train[0]['step']:,} to "
                     f"{train[-1]['step']:,}; train loss {train[0]['loss']:.4f} to "
                     f"{train[-1]['loss']:.4f}")
        if train[-1].get("tokens_seen") is not None:
            parts.append(f"{train[-1]['tokens_seen']:,} tokens seen")
    if evals:
        parts.append(f"validation loss {evals[-1]['val_loss']:.4f} at step "
                     f"{evals[-1]['step']:,} ({len(evals)} evaluations)")
    return "Log: " + "; ".join(parts) + "."


def _samples_section(samples: list[dict]) -> list[str]:
    generations = [s for s in samples if "prompt" in s]
    subjects = [s for s in samples if "subject" in s]  # MMLU's per-subject rows
    if not generations and not subjects:
        return []
    lines = ["### Sample generations", ""]
    for sample in generations:
        mark = {True: "✓", False: "✗"}.get(sample.get("correct"), "?")
        lines += [f"**{sample.get('task', '')}** {mark}", "",
                  *_code_block(_excerpt(sample["prompt"], PROMPT_CHARACTERS, keep_end=True)),
                  "", "Output:", "",
                  *_code_block(_excerpt(sample.get("output", ""), OUTPUT_CHARACTERS)), ""]
    for task in dict.fromkeys(s.get("task", "") for s in subjects):
        rows = [s for s in subjects if s.get("task", "") == task]
        # best first; name breaks ties so equal accuracies keep one order across runs
        ranked = sorted(rows, key=lambda s: (-s["accuracy"], s["subject"]))
        if len(ranked) > 2 * SHOWN_SUBJECTS:
            ranked = ranked[:SHOWN_SUBJECTS] + ranked[-SHOWN_SUBJECTS:]
            caption = (f"{task} by subject: the {SHOWN_SUBJECTS} best and {SHOWN_SUBJECTS} "
                       f"worst of {len(rows)}")
        else:
            caption = f"{task} by subject"
        lines += [f"{caption}:", ""]
        lines += _table(["subject", "accuracy", "examples"],
                        [[s["subject"], _number(s["accuracy"], 3), _number(s.get("examples"), 0)]
                         for s in ranked]) + [""]
    return lines


def _time_section(checkpoint: CheckpointReport) -> list[str]:
    total = checkpoint.evaluation_seconds
    lines = ["### Evaluation time", "",
             f"- total: {_seconds(total) if total is not None else NOT_RECORDED}", ""]
    by_task: dict[str, float | None] = {}
    for task in checkpoint.evaluation.get("tasks", []):
        # rows of one task share its time (the battery splits it evenly): add them back up
        seconds = task.get("seconds")
        known = by_task.get(task["task"], 0.0)
        by_task[task["task"]] = None if seconds is None or known is None else known + seconds
    if by_task:
        lines += _table(["task", "time"], [[task, _seconds(seconds) if seconds is not None
                                                  else NOT_RECORDED]
                                           for task, seconds in by_task.items()]) + [""]
    return lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(text) for text in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(text) for text in row) + " |" for row in rows]
    return lines


def _cell(text: object) -> str:
    # an unescaped "|" starts a new column; a newline ends the row
    return re.sub(r"\s*\n\s*", " ", str(text)).replace("|", "\\|")


def _code_block(text: str, language: str = "text") -> list[str]:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", text.rstrip("\n"), fence]


def _excerpt(text: str, limit: int, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if keep_end else text[:limit] + "…"


def _number(value: object, digits: int) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if digits == 0:
        return f"{round(value):,}"
    return f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None) -> str:
    return MISSING if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _value(value: object) -> str:
    """A data or training summary value: integers with separators, floats to 4 significant
    digits, lists joined."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_value(item) for item in value)
    return str(value)


# --- plots ------------------------------------------------------------------------------------


def _write_plots(checkpoints: list[CheckpointReport], output_dir: Path) -> dict[str, str]:
    """Plot kind -> PNG file name, for the plots drawn. A stale PNG from an earlier report in
    the same directory is removed, so the directory holds only what report.md shows."""
    plots = (("training", TRAINING_CURVES_PLOT_FILE, _plot_training),
             ("bits_per_byte", BITS_PER_BYTE_PLOT_FILE, _plot_bits_per_byte),
             ("tasks", TASK_SCORES_PLOT_FILE, _plot_task_scores))
    for _, file_name, _ in plots:
        (output_dir / file_name).unlink(missing_ok=True)
    try:
        plt = pyplot()
    except ImportError:  # the GPU machines may lack matplotlib: a report without plots
        return {}
    return {key: file_name for key, file_name, plot in plots
            if plot(plt, checkpoints, output_dir / file_name)}


def _save(plt, figure, axis, path: Path) -> bool:
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def _plot_training(plt, checkpoints: list[CheckpointReport], path: Path) -> bool:
    """Train loss against step, one colour per checkpoint, validation loss as markers."""
    logged = [c for c in checkpoints
              if any(r.get("kind") in ("train", "eval") for r in c.training_log)]
    if not logged:
        return False
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for number, checkpoint in enumerate(logged):
        colour = f"C{number % 10}"
        train = [(r["step"], r["loss"]) for r in checkpoint.training_log
                 if r.get("kind") == "train" and "loss" in r]
        evals = [(r["step"], r["val_loss"]) for r in checkpoint.training_log
                 if r.get("kind") == "eval" and r.get("val_loss") is not None]
        if train:
            axis.plot(*zip(*train), color=colour, label=f"{checkpoint.name} train")
        if evals:
            axis.plot(*zip(*evals), "o", color=colour, markeredgecolor="black",
                      label=f"{checkpoint.name} validation")
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy (nats/token)")
    axis.set_title("training curves")
    axis.legend(fontsize=8)
    return _save(plt, figure, axis, path)


def _grouped_bars(plt, groups: list[str], series: dict[str, list[tuple[float, float, float]]],
                  title: str, ylabel: str):
    """Bars per group, one per series (checkpoint); each value (value, below, above), the error
    bar's extent below and above the value."""
    figure, axis = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4), dpi=100)
    width = 0.8 / max(len(series), 1)
    for number, (name, values) in enumerate(series.items()):
        offsets = [index + (number - (len(series) - 1) / 2) * width
                   for index in range(len(groups))]
        heights = [value for value, _, _ in values]
        errors = [[below for _, below, _ in values], [above for _, _, above in values]]
        axis.bar(offsets, heights, width, color=f"C{number % 10}", label=name,
                 yerr=errors if any(map(any, errors)) else None, capsize=3)
    axis.set_xticks(range(len(groups)))
    axis.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=8)
    return figure, axis


def _plot_bits_per_byte(plt, checkpoints: list[CheckpointReport], path: Path) -> bool:
    groups = list(dict.fromkeys(name for c in checkpoints
                                for name, _ in _language_modelling(c.evaluation)))
    if not groups:
        return False
    series = {}
    for checkpoint in checkpoints:
        values = {name: row.get("bits_per_byte")
                  for name, row in _language_modelling(checkpoint.evaluation)}
        # a missing value draws no bar (NaN), not a misleading zero
        series[checkpoint.name] = [(values.get(g) if values.get(g) is not None else math.nan,
                                    0.0, 0.0) for g in groups]
    figure, axis = _grouped_bars(plt, groups, series, "bits per byte (lower is better)",
                                 "bits per byte")
    return _save(plt, figure, axis, path)


def _plot_task_scores(plt, checkpoints: list[CheckpointReport], path: Path) -> bool:
    groups = list(dict.fromkeys(_task_label(t) for c in checkpoints
                                for t in c.evaluation.get("tasks", [])))
    if not groups:
        return False
    series = {}
    for checkpoint in checkpoints:
        tasks = {_task_label(t): t for t in checkpoint.evaluation.get("tasks", [])}
        values = []
        for group in groups:
            task = tasks.get(group)
            if task is None:
                values.append((math.nan, 0.0, 0.0))
                continue
            value, low, high = task["value"], task.get("low"), task.get("high")
            values.append((value, max(value - low, 0.0) if low is not None else 0.0,
                           max(high - value, 0.0) if high is not None else 0.0))
        series[checkpoint.name] = values
    figure, axis = _grouped_bars(plt, groups, series, "task scores with intervals", "score")
    return _save(plt, figure, axis, path)
