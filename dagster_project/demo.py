"""`make demo`: materialize every asset of the graph, all partitions, on the embedded default.

Runs go into the Dagster instance in $LMPIPE_HOME/dagster, so `make ui` shows them afterwards.
The graph is walked in dependency order and split into layers of assets that share a
partitioning: a per-file layer runs once per crawl file, a global layer once.
"""

from __future__ import annotations

import argparse
import sys
import time

from dagster import AssetKey, DagsterInstance, materialize

from dagster_project.home import crawl_dir, ensure_dagster_home, lmpipe_home
from dagster_project.partitions import crawl_partitions, discover_crawl_files

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


def layers(defs) -> list[tuple[bool, list[AssetKey]]]:
    """Materializable assets in topological order, grouped by (partitioned?) runs of keys."""
    graph = defs.resolve_asset_graph()
    ordered = [key for key in graph.toposorted_asset_keys if graph.get(key).is_materializable]
    grouped: list[tuple[bool, list[AssetKey]]] = []
    for key in ordered:
        partitioned = graph.get(key).partitions_def is not None
        if grouped and grouped[-1][0] == partitioned:
            grouped[-1][1].append(key)
        else:
            grouped.append((partitioned, [key]))
    return grouped


def run_everything(defs, instance: DagsterInstance, log=print, partitions: list[str] | None = None) -> None:
    """Materialize every asset (and its checks), layer by layer; `partitions` narrows the files."""
    partition_keys = register_crawl_partitions(instance)
    if partitions is not None:
        partition_keys = [key for key in partition_keys if key in partitions]
    everything = [*defs.assets, *(defs.asset_checks or [])]
    for partitioned, keys in layers(defs):
        names = ", ".join(key.to_user_string() for key in keys)
        for partition in partition_keys if partitioned else [None]:
            label = f"{names} [{partition}]" if partition else names
            log(f"materializing {label} ...")
            started = time.perf_counter()
            result = materialize(everything, selection=keys, partition_key=partition,
                                 instance=instance, resources=defs.resources,
                                 raise_on_error=False, run_config=QUIET_LOGS)
            if not result.success:
                raise SystemExit(f"materializing {label} failed; see the run in `make ui`")
            log(f"  done in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    ensure_dagster_home()
    from dagster_project.definitions import defs  # after DAGSTER_HOME is set

    with DagsterInstance.get() as instance:
        run_everything(defs, instance)
    print(f"\nAll assets materialized. Artifacts: {lmpipe_home() / 'artifacts'}")
    print("Open the Dagster UI with `make ui` (http://127.0.0.1:3000) to see lineage, runs and metadata.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
