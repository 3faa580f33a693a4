"""python -m lmlib.train --config tiny --data-dir SHARDS --run-dir RUN [--set key=value ...]

Runs `lmlib.train.train` and prints its stats as JSON. Exit status 143 after SIGTERM, 130 after
SIGINT (Ctrl-C): a checkpoint was written; run the same command again to resume. Distributed:
`torchrun --nproc_per_node 2 -m lmlib.train ... --strategy ddp` (or zero1, fsdp); only rank 0
prints. (`python -m dagster_project.pipes_train` runs this same main under Dagster Pipes.)
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lmlib.train.config import PRESETS, STRATEGIES, load_config
from lmlib.train.trainer import TrainingInterrupted, train


def _parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)  # numbers, booleans, null, lists
    except json.JSONDecodeError:
        value = raw  # a bare string
    return key, value


def main(argv: list[str] | None = None, progress: Callable[[dict], None] | None = None,
         on_stats: Callable[[dict], None] | None = None) -> int:
    """The CLI; `progress` receives every log record and `on_stats` the final stats (rank 0)."""
    parser = argparse.ArgumentParser(prog="python -m lmlib.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="tiny",
                        help=f"a preset ({', '.join(sorted(PRESETS))}) or a JSON file")
    parser.add_argument("--data-dir", type=Path, required=True, help="token-shard directory")
    parser.add_argument("--run-dir", type=Path, required=True, help="output; resumes if present")
    parser.add_argument("--tokenizer-dir", type=Path, help="vocab.json + merges.txt for samples")
    parser.add_argument("--set", dest="overrides", action="append", type=_parse_override,
                        default=[], metavar="KEY=VALUE", help="override a field, e.g. max_steps=50")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="shorthand for --set strategy=...; ddp/zero1/fsdp need torchrun")
    args = parser.parse_args(argv)
    overrides = dict(args.overrides)
    if args.strategy is not None:
        overrides["strategy"] = args.strategy
    try:
        config = load_config(args.config).with_overrides(overrides)
    except ValueError as error:
        parser.error(str(error))
    rank = int(os.environ.get("RANK", "0"))
    try:
        result = train(config, args.data_dir, args.run_dir, tokenizer_dir=args.tokenizer_dir,
                      progress=progress)
    except TrainingInterrupted as interrupted:
        print(str(interrupted), file=sys.stderr)
        return interrupted.exit_status
    if rank == 0:
        stats = result.to_json()
        if on_stats is not None:
            on_stats(stats)
        print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
