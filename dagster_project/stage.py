"""The one pattern every asset follows: write into a temporary directory through an lmlib entry
point, add the manifest, rename into place. And what a global asset reads across the crawl
partitions: the ones whose per-file chain succeeded, the others left out with a reason."""

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dagster import AssetCheckResult, AssetKey, Failure

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


def recorded(context, storage, result: AssetCheckResult) -> AssetCheckResult:
    """A per-file blocking check's result, remembered on disk for the global stages: a failure
    writes a small JSON record with its reason (the check's description), a pass removes it.

    The record lives under $LMPIPE_HOME/failures, not in the Dagster instance, so it is there
    whether the check ran from `make demo` or from the UI."""
    spec = context.check_specs[0]
    asset = spec.asset_key.to_user_string()
    path = storage.failure_dir(asset, context.partition_key) / f"{spec.name}.json"
    if result.passed:
        path.unlink(missing_ok=True)
        return result
    record = {"asset": asset, "partition": context.partition_key, "check": spec.name,
              "reason": result.description or "check failed", "run_id": context.run.run_id}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, path)  # a reader never sees half a record
    return result


def recorded_failures(storage, asset: str, partition: str) -> list[dict]:
    directory = storage.failure_dir(asset, partition)
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


@dataclass
class PartitionInputs:
    """What a global asset reads from a per-file asset: the partitions it uses and, for every
    registered partition it leaves out, the reason."""

    dirs: dict[str, Path]
    left_out: dict[str, str]


@cache
def per_file_lineage(asset: str) -> tuple[str, ...]:
    """`asset` and the per-file assets upstream of it, from the code location's one asset graph
    (a run's own graph holds only the selected assets and their parents)."""
    from dagster_project.definitions import defs  # at call time: definitions imports the assets

    graph = defs.resolve_asset_graph()
    lineage = graph.get_ancestor_asset_keys(AssetKey(asset), include_self=True)
    return tuple(key.to_user_string() for key in graph.toposorted_asset_keys
                 if key in lineage and graph.get(key).partitions_def is not None)


def partition_inputs(context, storage, asset: str) -> PartitionInputs:
    """Artifact directory of `asset` for every registered crawl partition whose chain succeeded,
    in key order; the inputs of a global asset that reads all files.

    A partition is left out when a blocking check failed on `asset` or on a per-file asset
    upstream of it (the recorded reason), or when `asset` has no complete artifact for it. One
    damaged file among thousands must not stop the rest; when no partition is left, the asset
    fails, naming every reason.
    """
    from dagster_project.partitions import crawl_partitions

    chain = per_file_lineage(asset)
    inputs = PartitionInputs(dirs={}, left_out={})
    for key in sorted(context.instance.get_dynamic_partitions(crawl_partitions.name)):
        failures = [record for name in chain for record in recorded_failures(storage, name, key)]
        directory = storage.artifact_dir(asset, key)
        if failures:
            inputs.left_out[key] = "; ".join(f"{r['check']}: {r['reason']}" for r in failures)
        elif not (directory / MANIFEST_NAME).exists():
            inputs.left_out[key] = f"no complete {asset} artifact: its run failed or never ran"
        else:
            inputs.dirs[key] = directory
    if inputs.left_out:
        context.log.warning(f"{asset}: leaving out {len(inputs.left_out)} crawl partition(s), "
                            f"listed with the reasons under left_out in the metadata")
    if not inputs.dirs:
        reasons = "\n".join(f"  {key}: {reason}" for key, reason in inputs.left_out.items())
        raise Failure(f"no crawl partition of {asset} can be used; every one was left out:\n"
                      f"{reasons or '  (no partitions registered)'}")
    return inputs
