"""`python -m dagster_project.pipes_train ARGS`: `python -m lmlib.train ARGS` under Dagster Pipes.

The launcher (dagster_project/launcher.py) starts `torchrun ... -m dagster_project.pipes_train`
with PipesSubprocessClient, which puts DAGSTER_PIPES_CONTEXT and DAGSTER_PIPES_MESSAGES in the
environment every rank inherits. Rank 0 alone opens the Pipes connection: it streams each log
record into the Dagster run and sends the final stats (loss, tokens/s, MFU, ...) as a custom
message the launcher returns. Outside Pipes it is plain `python -m lmlib.train`. This lives
here, not in lmlib, because lmlib never imports Dagster's packages.
"""

import json
import os
import sys

from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

from lmlib.train.__main__ import main as train_main

STATS_MESSAGE_KIND = "lmlib.train.stats"


def main(argv: list[str] | None = None) -> int:
    if int(os.environ.get("RANK", "0")) != 0 or not os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR):
        return train_main(argv)
    with open_dagster_pipes() as pipes:
        def forward(record: dict) -> None:
            pipes.log.info(f"[{record['kind']}] {json.dumps(record)}")

        def report(stats: dict) -> None:
            payload = json.loads(json.dumps(stats, default=str))  # samples included; paths as text
            pipes.report_custom_message({"kind": STATS_MESSAGE_KIND, "stats": payload})

        return train_main(argv, progress=forward, on_stats=report)


if __name__ == "__main__":
    sys.exit(main())
