"""`make demo`: materialize every asset of the graph, all partitions, on the embedded default.

Runs go into the Dagster instance in $LMPIPE_HOME/dagster, so `make ui` shows them afterwards.
The graph is walked in dependency order and split into layers of assets that share a
partitioning: a per-file layer runs once per crawl file, a global layer once. A crawl file that
fails (a damaged download) drops out and the rest flow on; the failures are listed at the end,
and the exit status is non-zero only when nothing could be built.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance, PartitionsDefinition, materialize

from dagster_project.crawl_versions import crawl_file_versions, observations
from dagster_project.home import crawl_dir, ensure_dagster_home, lmpipe_home
from dagster_project.partitions import crawl_partitions, discover_crawl_files
from dagster_project.policies import MANUAL_TAG

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def register_crawl_partitions(instance: DagsterInstance) -> list[str]:
    keys = discover_crawl_files(crawl_dir())
    if not keys:
        raise SystemExit(f"no .warc/.wet files found in {crawl_dir()}")
    known = set(instance.get_dynamic_partitions(crawl_partitions.name))
    new = [key for key in keys if key not in known]
    if new:
        instance.add_dynamic_partitions(crawl_partitions.name, new)
    return keys


def observe_crawl_files(instance: DagsterInstance, storage, keys: list[str]) -> None:
    """Report each crawl file's sha256 as its `crawl_files` data version (what the crawl sensor
    does for new and rewritten files), so the runs record which bytes they read."""
    versions = crawl_file_versions(storage.home_path, storage.crawl_path, keys)
    for observation in observations(versions):
        instance.report_runless_asset_event(observation)


def layers(defs) -> list[tuple[PartitionsDefinition | None, list[AssetKey]]]:
    """Materializable assets in topological order, grouped by runs of keys that share a
    partitioning (None: unpartitioned); assets tagged manual (the crawl download) are left to a
    person."""
    graph = defs.resolve_asset_graph()
    ordered = [key for key in graph.toposorted_asset_keys if graph.get(key).is_materializable
               and MANUAL_TAG not in graph.get(key).tags]
    grouped: list[tuple[PartitionsDefinition | None, list[AssetKey]]] = []
    for key in ordered:
        partitions = graph.get(key).partitions_def
        if grouped and grouped[-1][0] == partitions:
            grouped[-1][1].append(key)
        else:
            grouped.append((partitions, [key]))
    return grouped


@dataclass
class LayerFailure:
    """One run of the demo that failed: which assets, which crawl partition (None: global)."""

    assets: str
    partition: str | None
    reason: str


@dataclass
class DemoOutcome:
    """What the demo built and what failed; `stopped` says why nothing more could be built."""

    built: list[str] = field(default_factory=list)
    failures: list[LayerFailure] = field(default_factory=list)
    stopped: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.stopped is None

    def summary(self) -> str:
        lines = [f"{len(self.failures)} failed (see the runs in `make ui`):"]
        lines += [f"  {f.assets} [{f.partition or 'global'}]: {f.reason}" for f in self.failures]
        return "\n".join(lines)


def failure_reason(result) -> str:
    """Why a run failed, in a line: its failed checks' descriptions, else its steps' errors."""
    checks = [f"{e.check_name}: {e.description or 'failed'}"
              for e in result.get_asset_check_evaluations() if not e.passed]
    if checks:
        return "; ".join(checks)
    return "; ".join(_step_error(event.step_failure_data)
                     for event in result.get_step_failure_events()) or "the run failed"


def _step_error(failure) -> str:
    """A raised dagster.Failure's description, else the innermost cause's first line (the
    outer ones only say that the op failed)."""
    if failure.user_failure_data is not None and failure.user_failure_data.description:
        return failure.user_failure_data.description
    error = failure.error
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[0] if error is not None else "the step failed"


def run_everything(defs, instance: DagsterInstance, log=print,
                   partitions: list[str] | None = None) -> DemoOutcome:
    """Materialize every asset (and its checks), layer by layer; `partitions` narrows the files.

    A crawl file that fails a per-file layer (a damaged download extracts to 0 documents) is
    dropped from the later per-file layers and the global layers go on without it; a failed run
    of the scaling sweep is listed and the fits go on without it. The demo stops only when no
    file is left or a global asset fails; a global asset that was built but failed a check is
    listed (the check says by how much), and the rest goes on.
    """
    outcome = DemoOutcome()
    alive = register_crawl_partitions(instance)
    observe_crawl_files(instance, defs.resources["storage"], alive)
    if partitions is not None:
        alive = [key for key in alive if key in partitions]
    everything = [*defs.assets, *(defs.asset_checks or [])]
    for partitions_def, keys in layers(defs):
        names = ", ".join(key.to_user_string() for key in keys)
        per_file = partitions_def == crawl_partitions
        if partitions_def is None:
            partition_keys = [None]
        else:
            partition_keys = list(alive) if per_file else partitions_def.get_partition_keys()
        for partition in partition_keys:
            label = f"{names} [{partition}]" if partition else names
            log(f"materializing {label} ...")
            started = time.perf_counter()
            result = materialize(everything, selection=keys, partition_key=partition,
                                 instance=instance, resources=defs.resources,
                                 raise_on_error=False, run_config=QUIET_LOGS)
            if result.success:
                outcome.built.append(label)
                log(f"  done in {time.perf_counter() - started:.1f} s")
                continue
            outcome.failures.append(LayerFailure(names, partition, failure_reason(result)))
            log(f"  FAILED: {outcome.failures[-1].reason}")
            built = {event.asset_key for event in result.get_asset_materialization_events()}
            if partition is None and not set(keys) <= built:
                outcome.stopped = f"the global stage {names} failed: {outcome.failures[-1].reason}"
                return outcome
            if per_file:
                alive.remove(partition)
        if per_file and not alive:
            outcome.stopped = f"no crawl file got through {names}, so nothing downstream can be built"
            return outcome
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    ensure_dagster_home()
    from dagster_project.definitions import defs  # after DAGSTER_HOME is set

    with DagsterInstance.get() as instance:
        outcome = run_everything(defs, instance)
    sys.stdout.flush()
    if not outcome.succeeded:
        raise SystemExit(f"\nThe pipeline stopped: {outcome.stopped}.\n{outcome.summary()}")
    if outcome.failures:
        print(f"\nAll assets materialized from the files that could be read; {outcome.summary()}")
        print("The global assets' metadata (`left_out`) lists the files they went on without.")
    else:
        print("\nAll assets materialized.")
    print(f"Artifacts: {lmpipe_home() / 'artifacts'}")
    print("Open the Dagster UI with `make ui` (http://127.0.0.1:3000) to see lineage, runs and metadata.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
