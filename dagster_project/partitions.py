"""Partitions: one dynamic partition per crawl file, keyed by its path inside the crawl
directory; the scaling sweep's size x budget grid."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import (
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from lmlib.train.scaling_runs import budget_key, load_sweep
from lmlib.web.extraction import is_crawl_file

crawl_partitions = DynamicPartitionsDefinition(name="crawl_files")

# The scaling sweep (LMPIPE_SCALING_SWEEP: a name in lmlib.train.scaling_runs.SWEEPS or a JSON
# file; default the CPU demo's): partitions are fixed when the code location loads.
SCALING_SWEEP = load_sweep(os.environ.get("LMPIPE_SCALING_SWEEP", "cpu-demo"))
scaling_partitions = MultiPartitionsDefinition({
    "budget": StaticPartitionsDefinition([budget_key(b) for b in SCALING_SWEEP.budgets]),
    "size": StaticPartitionsDefinition(list(SCALING_SWEEP.sizes)),
})


def discover_crawl_files(directory: Path) -> list[str]:
    """Partition keys (relative posix paths) of every WARC/WET file under `directory`, sorted."""
    if not directory.is_dir():
        raise FileNotFoundError(
            f"crawl directory {directory} does not exist; set LMPIPE_CRAWL_DIR to a directory of "
            ".warc, .warc.gz, .wet or .wet.gz files"
        )
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if is_crawl_file(p))
