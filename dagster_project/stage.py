"""The one pattern every asset follows: write into a temporary directory through an lmlib entry
point, add the manifest, rename into place."""

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lmlib.artifacts import (
    MANIFEST_NAME,
    atomic_directory,
    read_manifest,
    sha256_file,
    write_manifest,
)


def run_stage(
    final_dir: Path,
    stage: str,
    produce: Callable[[Path], dict],
    *,
    config: Any,
    count_keys: Iterable[str],
    inputs: Mapping[str, Any] | None = None,
) -> dict:
    """Run `produce(temporary_dir) -> stats` and publish the directory atomically with a manifest."""
    with atomic_directory(final_dir) as out:
        stats = produce(out)
        write_manifest(out, stage=stage, config=config,
                       counts={key: stats[key] for key in count_keys}, inputs=inputs)
    return stats


def upstream(directory: Path) -> str:
    """Fingerprint of a finished upstream artifact (its manifest's sha256), for lineage in manifests.

    Raises a clear error when the upstream artifact was never completed.
    """
    read_manifest(directory)
    return sha256_file(directory / MANIFEST_NAME)


def partition_dirs(context, storage, asset: str) -> dict[str, Path]:
    """Artifact directory of `asset` for every registered crawl partition, in key order; the
    inputs of a global asset that reads all files."""
    from dagster_project.partitions import crawl_partitions

    keys = sorted(context.instance.get_dynamic_partitions(crawl_partitions.name))
    return {key: storage.artifact_dir(asset, key) for key in keys}
