"""Reporting to Dagster through Pipes, when the trainer runs as a Pipes subprocess.

The launcher (dagster_project/launcher.py) starts `torchrun ... -m lmlib.train` with
PipesSubprocessClient, which puts DAGSTER_PIPES_CONTEXT and DAGSTER_PIPES_MESSAGES in the
environment every rank inherits. Rank 0 alone opens the Pipes connection: it streams each log
record into the Dagster run and sends the final stats (loss, tokens/s, MFU, ...) as a custom
message the launcher returns. `dagster_pipes` is imported lazily: on a machine without it, or
outside Pipes, training runs as usual and nothing is reported.
"""

import contextlib
import json
import os

STATS_MESSAGE_KIND = "lmlib.train.stats"


@contextlib.contextmanager
def pipes_reporter(rank: int):
    """Yields a dagster_pipes PipesContext on rank 0 under Pipes, else None."""
    try:
        import dagster_pipes
    except ImportError:
        yield None
        return
    if rank != 0 or not os.environ.get(dagster_pipes.DAGSTER_PIPES_CONTEXT_ENV_VAR):
        yield None
        return
    with dagster_pipes.open_dagster_pipes() as pipes:
        yield pipes


def log_record_to(pipes):
    """A trainer `progress` callback that streams records into the Dagster run's log."""
    def forward(record: dict) -> None:
        pipes.log.info(f"[{record['kind']}] {json.dumps(record)}")
    return forward


def report_stats(pipes, stats: dict) -> None:
    payload = json.loads(json.dumps(stats, default=str))  # samples included; paths as text
    pipes.report_custom_message({"kind": STATS_MESSAGE_KIND, "stats": payload})
