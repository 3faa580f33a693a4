"""The seam between lmlib stages and Dagster assets.

- `config_class(SomeConfig)`: the Dagster run config of an asset, built from the stage's config
  dataclass (the one source of fields and defaults); `config.build()` gives the dataclass back,
  validated by its `__post_init__`.
- `publish(context, storage, produce, config=..., inputs=...)`: runs `produce(output_dir)`, an
  lmlib stage returning a `StageResult`, in a temporary directory, adds the manifest and renames
  the directory into place, at the path that follows from the asset key and partition key.
- `materialization(context, storage, metadata)`: what the asset returns after `publish`: its
  metadata with the provenance table, and the data version (the content hash of its files).
- `for_each_partition(context, materialize_one)`: a per-file asset's body over every partition
  of its run: one partition, or a batch of them when a backfill groups files into one run
  (`BATCHED_BACKFILL`).
- `partition_inputs`: what a global asset reads across the crawl partitions: the ones whose
  per-file chain succeeded, the others left out with a reason.
"""

import dataclasses
import functools
import hashlib
import json
import operator
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetKey,
    BackfillPolicy,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
)
from pydantic import create_model

from lmlib.artifacts import (
    MANIFEST_NAME,
    atomic_directory,
    atomic_file,
    read_manifest,
    sha256_file,
    write_manifest,
)
from lmlib.stage import StageResult

_UNSET: Any = object()


def _partition(context, partition):
    """`partition` when given, else the run's single partition key (None when unpartitioned)."""
    if partition is not _UNSET:
        return partition
    return context.partition_key if context.has_partition_key else None


def _config_type(annotation):
    """A dataclass field's type as Dagster config takes it: tuples become lists."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (element, *_rest) = typing.get_args(annotation) or (Any,)
        return list[element]
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, map(_config_type, typing.get_args(annotation)))
    return annotation


def config_class(stage_config: type, name: str | None = None, base: type = Config) -> type:
    """A Dagster `Config` with the fields and defaults of the dataclass `stage_config`, and a
    `build()` that returns the dataclass (so the UI's Launchpad shows the library's fields).
    `base=ConfigurableResource` makes a resource instead: one config shared by several assets."""
    hints = typing.get_type_hints(stage_config)
    fields = {}
    for field in dataclasses.fields(stage_config):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = ...
        if isinstance(default, tuple):
            default = list(default)
        fields[field.name] = (_config_type(hints[field.name]), default)

    def build(self):
        values = self.model_dump()
        for field in dataclasses.fields(stage_config):
            if typing.get_origin(hints[field.name]) is tuple and values.get(field.name) is not None:
                values[field.name] = tuple(values[field.name])
        return stage_config(**values)

    model = create_model(name or f"{stage_config.__name__}Settings", __base__=base,
                         __doc__=stage_config.__doc__, **fields)
    model.build = build
    return model


def overrides_class(stage_config: type, name: str, **extra: tuple[Any, Any]) -> type[Config]:
    """A Dagster `Config` for a stage configured from a named preset: every field of
    `stage_config` appears, optional (unset: the preset's value), nested dataclasses as nested
    configs, plus the `extra` fields (name=(type, default)). `.overrides()` returns the fields
    that are set as dotted keys ("model.d_model"), for the dataclass's `with_overrides`."""
    hints = typing.get_type_hints(stage_config)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(stage_config):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            fields[field.name] = (overrides_class(hint, f"{name}{hint.__name__}") | None, None)
        elif field.init:
            fields[field.name] = (_config_type(hint) | None, None)

    def overrides(self) -> dict[str, Any]:
        dotted = {}
        for key in fields:
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, Config):
                dotted.update({f"{key}.{inner}": v for inner, v in value.overrides().items()})
            else:
                dotted[key] = tuple(value) if isinstance(value, list) else value
        return dotted

    model = create_model(name, __base__=Config, __doc__=stage_config.__doc__, **fields, **extra)
    model.overrides = overrides
    return model


def asset_name(asset) -> str:
    """The key of an asset (definition, spec, AssetKey or string) as a path: "a/b"."""
    key = getattr(asset, "key", asset)
    if isinstance(key, AssetKey):
        return "/".join(key.path)
    return str(key)


def partition_path(partition) -> str:
    """A partition key as a relative directory: one level per dimension of a multi-partition
    key ("budget=1e15/size=s"), "/" in a key kept inside its level."""
    dimensions = getattr(partition, "keys_by_dimension", None)
    if dimensions:
        return "/".join(f"{name}={key.replace('/', '__')}"
                        for name, key in sorted(dimensions.items()))
    return str(partition).replace("/", "__")


def publish(
    context,
    storage,
    produce: Callable[[Path], StageResult],
    *,
    config: Any,
    inputs: Mapping[str, Any] | None = None,
    partition: str | None = _UNSET,
) -> StageResult:
    """Run `produce(temporary_dir)` and publish the directory atomically with a manifest, at the
    artifact directory of this asset and `partition` (default: the run's partition). Paths in
    the result that point into the temporary directory are moved to the published one."""
    partition = _partition(context, partition)
    final = storage.artifact_dir(context.asset_key, partition)
    with atomic_directory(final) as out:
        result = produce(out)
        write_manifest(out, stage=asset_name(context.asset_key), config=config,
                       counts=result.manifest_counts(), inputs=inputs,
                       asset_code_version=context.assets_def.code_versions_by_key.get(
                           context.asset_key))
    return _relocated(result, out, final)


def materialization(context, storage, metadata: Mapping[str, Any],
                    partition: str | None = _UNSET) -> dict[str, Any]:
    """The keyword arguments of this asset's `MaterializeResult` (or `Output`) after `publish`:
    `metadata` plus the provenance table, and the data version, the content hash of the
    published files (a byte-identical rerun reports the same one, so nothing downstream is
    marked changed)."""
    from dagster_project.metadata import provenance_metadata
    from dagster_project.provenance import walk
    from dagster_project.versions import data_version

    directory = storage.artifact_dir(context.asset_key, _partition(context, partition))
    provenance = walk(directory, storage.home_path / "artifacts")
    return {"metadata": {**metadata, **provenance_metadata(provenance)},
            "data_version": data_version(read_manifest(directory))}


def batched_backfill() -> BackfillPolicy:
    """The backfill policy of the per-file assets: LMPIPE_PARTITIONS_PER_RUN crawl files (default
    20) per run, so a backfill over a thousand files starts fifty runs, not a thousand (each run
    costs a process and Dagster's start-up; a file costs seconds)."""
    from dagster_project.automation import int_setting

    return BackfillPolicy.multi_run(max_partitions_per_run=int_setting(
        "LMPIPE_PARTITIONS_PER_RUN", 20, minimum=1))


def for_each_partition(context, materialize_one: Callable[[str], Mapping[str, Any]]
                       ) -> MaterializeResult:
    """A per-file asset over every partition of its run: `materialize_one(partition)` publishes
    that partition and returns `materialization(...)`'s keyword arguments.

    A run of one partition returns them as they are. A batch (a backfill run over a range of
    partitions) attaches each partition's metadata to its own materialization; Dagster 1.13 takes
    one data version per run step, so the batch reports the content hash of its partitions' data
    versions: a byte-identical rerun of the same batch still changes nothing downstream.
    """
    keys = context.partition_keys
    if len(keys) == 1:
        return MaterializeResult(**materialize_one(keys[0]))
    versions = {}
    for index, key in enumerate(keys, 1):
        context.log.info(f"partition {index}/{len(keys)}: {key}")
        result = materialize_one(key)
        context.add_asset_metadata(result["metadata"], partition_key=key)
        versions[key] = result["data_version"].value
    return MaterializeResult(
        metadata={"partitions_in_run": len(keys)},
        data_version=DataVersion(hashlib.sha256(json.dumps(versions, sort_keys=True).encode())
                                 .hexdigest()))


def _relocated(result: StageResult, temporary: Path, final: Path) -> StageResult:
    changes = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, Path) and value.is_relative_to(temporary):
            changes[field.name] = final / value.relative_to(temporary)
    return dataclasses.replace(result, **changes) if changes else result


def upstream(directory: Path) -> str:
    """Fingerprint of a finished upstream artifact (its manifest's sha256), for lineage in manifests.

    Raises a clear error when the upstream artifact was never completed.
    """
    read_manifest(directory)
    return sha256_file(directory / MANIFEST_NAME)


def recorded_checks(context, storage, check_one: Callable[[str], AssetCheckResult]
                    ) -> AssetCheckResult:
    """A per-file blocking check over every partition of its run, each result remembered on disk
    for the global stages: a failure writes a small JSON record with its reason (the check's
    description), a pass removes it. The record lives under $LMPIPE_HOME/failures, not in the
    Dagster instance, so it is there whether the check ran from `make demo` or from the UI.

    A batch (a backfill run over several partitions) passes only when every partition passes:
    Dagster blocks a run step as a whole, so a failing file holds back the rest of its batch,
    and the result names it (its record keeps the reason; the others rerun in a new backfill)."""
    spec = context.check_specs[0]
    asset = spec.asset_key.to_user_string()
    keys = context.op_execution_context.partition_keys
    results = {}
    for key in keys:
        result = results[key] = check_one(key)
        path = storage.failure_dir(asset, key) / f"{spec.name}.json"
        if result.passed:
            path.unlink(missing_ok=True)
            continue
        record = {"asset": asset, "partition": key, "check": spec.name,
                  "reason": result.description or "check failed", "run_id": context.run.run_id}
        with atomic_file(path) as temporary:  # a reader never sees half a record
            temporary.write_text(json.dumps(record, indent=2) + "\n")
    if len(keys) == 1:
        return results[keys[0]]
    failed = {key: result for key, result in results.items() if not result.passed}
    return AssetCheckResult(
        passed=not failed,
        metadata={"partitions_checked": len(keys), "partitions_failed": len(failed)},
        description="; ".join(f"{key}: {result.description or 'failed'}"
                              for key, result in failed.items()) or None,
    )


def recorded_failures(storage, asset, partition: str) -> list[dict]:
    directory = storage.failure_dir(asset_name(asset), partition)
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


@dataclass
class PartitionInputs:
    """What a global asset reads from a per-file asset: the partitions it uses and, for every
    registered partition it leaves out, the reason."""

    dirs: dict[str, Path]
    left_out: dict[str, str]

    def files(self, name: str) -> list[Path]:
        """The file `name` of every partition used, in partition order."""
        return [directory / name for directory in self.dirs.values()]

    def fingerprints(self) -> dict[str, str]:
        """{partition: upstream manifest hash}, the lineage a manifest records."""
        return {partition: upstream(directory) for partition, directory in self.dirs.items()}


@functools.cache
def per_file_lineage(asset: str) -> tuple[str, ...]:
    """`asset` and the per-file assets upstream of it, from the code location's one asset graph
    (a run's own graph holds only the selected assets and their parents)."""
    from dagster_project.definitions import defs  # at call time: definitions imports the assets

    graph = defs.resolve_asset_graph()
    lineage = graph.get_ancestor_asset_keys(AssetKey(asset), include_self=True)
    return tuple(key.to_user_string() for key in graph.toposorted_asset_keys
                 if key in lineage and graph.get(key).partitions_def is not None)


def partition_inputs(context, storage, asset) -> PartitionInputs:
    """Artifact directory of `asset` for every registered crawl partition whose chain succeeded,
    in key order; the inputs of a global asset that reads all files.

    A partition is left out when a blocking check failed on `asset` or on a per-file asset
    upstream of it (the recorded reason), or when `asset` has no complete artifact for it. One
    damaged file among thousands must not stop the rest; when no partition is left, the asset
    fails, naming every reason.
    """
    from dagster_project.partitions import crawl_partitions

    asset = asset_name(asset)
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
