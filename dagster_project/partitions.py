"""Partitions: one dynamic partition per crawl file, keyed by its path inside the crawl directory."""

from __future__ import annotations

from pathlib import Path

from dagster import DynamicPartitionsDefinition

from lmlib.web.extraction import is_crawl_file

crawl_partitions = DynamicPartitionsDefinition(name="crawl_files")


def discover_crawl_files(directory: Path) -> list[str]:
    """Partition keys (relative posix paths) of every WARC/WET file under `directory`, sorted."""
    if not directory.is_dir():
        raise FileNotFoundError(
            f"crawl directory {directory} does not exist; set LMPIPE_CRAWL_DIR to a directory of "
            ".warc, .warc.gz, .wet or .wet.gz files"
        )
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if is_crawl_file(p))
