"""The report card from hand-written evaluation records: the comparison table, the funnel, the
provenance, timings that may be missing, the plots, determinism and table-safe cells."""

import json
import re

import pytest

from lmlib.eval.report import (
    BITS_PER_BYTE_PLOT_FILE,
    REPORT_FILE,
    TASK_SCORES_PLOT_FILE,
    TRAINING_CURVES_PLOT_FILE,
    CheckpointReport,
    ReportContext,
    load_checkpoint_report,
    write_report,
)

CONFIG = {"lm_tokens": 4096, "arithmetic_digits": 3, "samples": 8, "seed": 0}


def base_evaluation() -> dict:
    """asdict(EvaluationResult) plus "config", as evaluation_checkpoint returns it (seconds
    included: the caller passed the result, not the stripped evaluation.json)."""
    return {
        "checkpoint": "base_model", "parameters": 12_345_678, "device": "cuda",
        "validation_loss": 3.21, "validation_perplexity": 24.78,
        "validation_bits_per_byte": 1.1234, "validation_tokens": 4096,
        "texts": {"wiki.txt": {"loss": 3.5, "perplexity": 33.1, "bits_per_byte": 1.25,
                               "tokens": 2000, "bytes": 8000}},
        "tasks": [
            {"task": "arithmetic (3 digits)", "metric": "accuracy", "value": 0.40625,
             "low": 0.29, "high": 0.53, "examples": 64, "settings": "0-shot, greedy",
             "seconds": 2.0},
            {"task": "arithmetic (3 digits)", "metric": "pass@8", "value": 0.75,
             "low": 0.63, "high": 0.84, "examples": 64, "settings": "0-shot, n=8, T=1",
             "seconds": 2.5},
            {"task": "mmlu", "metric": "accuracy", "value": 0.26, "low": 0.24, "high": 0.28,
             "examples": 1200, "settings": "5-shot, log-likelihood of the letter",
             "seconds": 30.0},
        ],
        "skipped": {"gsm8k": "no data configured"},
        "samples": [
            {"task": "arithmetic (3 digits)", "prompt": "123 + 456 =", "output": " 579 | 580",
             "correct": True},
            {"task": "arithmetic (3 digits)", "prompt": "Q: ```x```\n1 + 1 =",
             "output": " 3```", "correct": False},
            *[{"task": "mmlu", "subject": f"subject_{index:02d}", "accuracy": index / 20,
               "examples": 10} for index in range(12)],
        ],
        "seconds": 40.0,
        "config": CONFIG,
    }


def sft_evaluation() -> dict:
    """As read back from evaluation.json: no "seconds" anywhere; a task with a "|" in its name."""
    return {
        "checkpoint": "sft_model", "parameters": 12_345_678, "device": "cpu",
        "validation_loss": 3.05, "validation_perplexity": 21.1,
        "validation_bits_per_byte": 1.0712, "validation_tokens": 4096, "texts": {},
        "tasks": [
            {"task": "arithmetic (3 digits)", "metric": "accuracy", "value": 0.5,
             "low": 0.38, "high": 0.62, "examples": 64, "settings": "0-shot, greedy"},
            {"task": "gsm8k | strict", "metric": "accuracy", "value": 0.02, "low": None,
             "high": None, "examples": 50, "settings": "5-shot, greedy"},
        ],
        "skipped": {"mmlu": "no data configured"},
        "samples": [{"task": "gsm8k | strict", "prompt": "Question: ...", "output": "a|b",
                     "correct": False}],
        "config": CONFIG,
    }


def training_log() -> list[dict]:
    records = [{"kind": "train", "step": step, "loss": 10.0 / step, "lr": 1e-3,
                "tokens_seen": step * 1024} for step in range(1, 21)]
    records += [{"kind": "eval", "step": step, "val_loss": 11.0 / step, "tokens_seen": step * 1024}
                for step in (10, 20)]
    return records


def checkpoints() -> list[CheckpointReport]:
    return [
        CheckpointReport("base_model", base_evaluation(), evaluation_seconds=40.0,
                         training_log=training_log(),
                         training_summary={"steps": 20, "tokens trained": 20_480}),
        CheckpointReport("sft_model", sft_evaluation(), evaluation_seconds=None),
    ]


def context() -> ReportContext:
    return ReportContext(
        title="Report card: test",
        funnel=[("crawl records", 1000, "documents"), ("extracted", 800, "documents"),
                ("filtered", 600, "documents"), ("deduplicated", 450, "documents"),
                ("shards", 300_000, "tokens")],
        data_summary={"crawl files": ["a.warc.gz", "b.warc.gz"], "train tokens": 270_000,
                      "vocab size": 4096},
        provenance="crawl files: a.warc.gz, b.warc.gz -> web_documents -> token_shards -> "
                   "base_model -> sft_model",
        generated_by="lmpipe test")


@pytest.fixture
def report(tmp_path):
    result = write_report(checkpoints(), context(), tmp_path)
    return result, (tmp_path / REPORT_FILE).read_text(encoding="utf-8")


def table_rows(markdown: str, header_start: str) -> list[str]:
    """The lines of the table whose header line starts with header_start."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def columns(row: str) -> int:
    """Cells in a table row: unescaped "|" separators, less one."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_comparison_table_has_a_column_per_checkpoint_and_a_row_per_metric(report):
    result, markdown = report
    rows = table_rows(markdown, "| metric |")
    assert rows[0] == "| metric | base_model | sft_model |"
    labels = [row.split(" | ")[0].removeprefix("| ") for row in rows[2:]]
    assert labels == ["parameters", "validation loss (nats/token)", "validation perplexity",
                      "validation bits per byte", "bits per byte: wiki.txt",
                      "arithmetic (3 digits) accuracy", "arithmetic (3 digits) pass@8",
                      "mmlu accuracy", "gsm8k \\| strict accuracy"]
    assert "| arithmetic (3 digits) accuracy | 0.406 [0.290, 0.530] (n=64) | " \
           "0.500 [0.380, 0.620] (n=64) |" in rows
    assert "| mmlu accuracy | 0.260 [0.240, 0.280] (n=1,200) | — |" in rows
    assert "| parameters | 12,345,678 | 12,345,678 |" in rows
    assert result.checkpoints == ["base_model", "sft_model"]
    assert result.comparison[0]["checkpoint"] == "base_model"
    assert result.comparison[0]["mmlu accuracy"] == 0.26
    assert result.comparison[1]["mmlu accuracy"] is None
    assert result.comparison[1]["validation bits per byte"] == 1.0712


def test_funnel_shows_kept_percent_within_a_unit(report):
    _, markdown = report
    rows = table_rows(markdown, "| stage |")
    assert "| crawl records | 1,000 documents | — |" in rows
    assert "| extracted | 800 documents | 80.0% |" in rows
    assert "| deduplicated | 450 documents | 75.0% |" in rows
    # documents -> tokens: no percentage
    assert "| shards | 300,000 tokens | — |" in rows
    assert "| crawl files | a.warc.gz, b.warc.gz |" in markdown


def test_report_has_provenance_tasks_samples_and_missing_timings(report):
    _, markdown = report
    assert context().provenance in markdown
    assert "Generated by lmpipe test." in markdown
    assert "## Checkpoint: base_model" in markdown and "## Checkpoint: sft_model" in markdown
    assert ("| arithmetic (3 digits) | pass@8 | 0.750 | [0.630, 0.840] | 64 | "
            "0-shot, n=8, T=1 |") in markdown
    assert "| gsm8k \\| strict | accuracy | 0.020 | — | 50 | 5-shot, greedy |" in markdown
    assert "- gsm8k: no data configured" in markdown
    assert "- total: 40.0 s" in markdown
    assert "| arithmetic (3 digits) | 4.5 s |" in markdown  # the task's rows added up
    assert "- total: not recorded" in markdown
    assert "| gsm8k \\| strict | not recorded |" in markdown
    assert "**arithmetic (3 digits)** ✓" in markdown and "**gsm8k | strict** ✗" in markdown
    # an output holding ``` gets a longer fence, so it cannot close its block early
    assert "````text\n 3```\n````" in markdown
    assert "Log: 20 training records, steps 1 to 20" in markdown
    assert "No training log." in markdown
    assert '"lm_tokens": 4096' in markdown


def test_mmlu_subjects_show_best_and_worst_five(report):
    _, markdown = report
    rows = table_rows(markdown, "| subject |")
    assert "the 5 best and 5 worst of 12" in markdown
    subjects = [row.split(" | ")[0].removeprefix("| ") for row in rows[2:]]
    assert subjects == ["subject_11", "subject_10", "subject_09", "subject_08", "subject_07",
                        "subject_04", "subject_03", "subject_02", "subject_01", "subject_00"]


def test_pipes_in_cells_keep_every_table_row_aligned(report):
    _, markdown = report
    tables = re.findall(r"(?:^\|.*\n)+", markdown, flags=re.M)
    assert len(tables) >= 8
    assert any("a\\|b" in table or "gsm8k \\| strict" in table for table in tables)
    for table in tables:
        rows = table.splitlines()
        assert {columns(row) for row in rows} == {columns(rows[0])}, rows


def test_plots_are_written_and_referenced_relatively(report, tmp_path):
    result, markdown = report
    assert result.plots == sorted([TRAINING_CURVES_PLOT_FILE, BITS_PER_BYTE_PLOT_FILE,
                                   TASK_SCORES_PLOT_FILE])
    for name in result.plots:
        assert (tmp_path / name).stat().st_size > 1000
        assert f"]({name})" in markdown


def test_same_inputs_give_byte_identical_report(tmp_path):
    first = write_report(checkpoints(), context(), tmp_path / "first")
    second = write_report(checkpoints(), context(), tmp_path / "second")
    assert (tmp_path / "first" / REPORT_FILE).read_bytes() == \
           (tmp_path / "second" / REPORT_FILE).read_bytes()
    assert first.comparison == second.comparison


def test_no_logs_and_no_tasks_leave_out_those_plots(tmp_path):
    (tmp_path / TASK_SCORES_PLOT_FILE).write_bytes(b"stale")
    evaluation = {**sft_evaluation(), "tasks": [], "samples": []}
    result = write_report([CheckpointReport("only", evaluation)], ReportContext(), tmp_path)
    assert result.plots == [BITS_PER_BYTE_PLOT_FILE]
    assert not (tmp_path / TASK_SCORES_PLOT_FILE).exists()
    assert "## Data" not in (tmp_path / REPORT_FILE).read_text(encoding="utf-8")


def test_duplicate_checkpoint_names_are_refused(tmp_path):
    twice = [CheckpointReport("same", sft_evaluation()), CheckpointReport("same", {})]
    with pytest.raises(ValueError, match="unique"):
        write_report(twice, ReportContext(), tmp_path)


def test_load_checkpoint_report_reads_evaluation_and_training_log(tmp_path):
    evaluation = sft_evaluation()
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "evaluation.json").write_text(json.dumps(evaluation))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text(
        "".join(json.dumps(record) + "\n" for record in training_log()))
    loaded = load_checkpoint_report("sft_model", tmp_path / "evaluation", tmp_path / "run",
                                    training_summary={"steps": 20})
    assert loaded.evaluation == evaluation
    assert loaded.training_log == training_log()
    assert loaded.training_summary == {"steps": 20} and loaded.evaluation_seconds is None
    with pytest.raises(FileNotFoundError, match="evaluate checkpoint 'other' first"):
        load_checkpoint_report("other", tmp_path / "missing")


def test_without_matplotlib_the_report_has_no_plots(tmp_path, monkeypatch):
    def missing():
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr("lmlib.eval.report.pyplot", missing)
    result = write_report(checkpoints(), context(), tmp_path)
    markdown = (tmp_path / REPORT_FILE).read_text(encoding="utf-8")
    assert result.plots == [] and "![" not in markdown and ".png" not in markdown
    assert "| metric | base_model | sft_model |" in markdown
