"""Automation: what reruns by itself, when, and how little.

- `crawl_file_sensor` registers each complete new crawl file as a partition (size and mtime
  stable for LMPIPE_CRAWL_STABLE_SECONDS, or a `<file>.done` marker beside it), at most
  LMPIPE_CRAWL_MAX_NEW_PER_TICK per tick. It requests no runs: declarative automation does.
  It also observes `crawl_files`: each new file's sha256, and that of each registered file whose
  size or mtime changed, becomes its partition's data version, so a rewritten file's chain is
  marked stale (not rerun: rerunning it is a person's decision).
- Per-file assets are eager for their own partition: a new file is extracted, filtered and
  signed alone. `filtered_documents` ignores new `quality_classifier` materializations (a
  retrained classifier must not refilter every file); it still waits for one to exist.
- The global assets that read every file (`quality_classifier`, `duplicate_clusters`) run in
  the `refresh_corpus` job on LMPIPE_CORPUS_REFRESH_CRON (default nightly), and only when a
  crawl file was signed since the clusters were last built; or sooner, when
  LMPIPE_CORPUS_REFRESH_NEW_FILES files (default 100) were (`enough_new_files_sensor`). `deduplicated_documents` reruns
  for every file when the clusters change (a new file can make an old file's document a
  duplicate), then the corpus, the tokenizer and the shards follow once that is done.
- `base_model` never starts by itself: training is a person's decision.

Assets are named by key here, not imported, because the asset modules import the conditions.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from dagster_project.crawl_versions import crawl_file_versions, observations
from dagster_project.partitions import crawl_partitions, discover_crawl_files
from dagster_project.resources import Storage

CORPUS_REFRESH_CRON = os.environ.get("LMPIPE_CORPUS_REFRESH_CRON", "0 2 * * *")
DONE_MARKER_SUFFIX = ".done"
# Hashing stops after this long in a tick (crawl files are ~1 GB); the rest wait for the next.
HASH_SECONDS_PER_TICK = 30


def int_setting(name: str, default: int, minimum: int = 0) -> int:
    """A whole-number setting from the environment, with an error that names it."""
    value = os.environ.get(name, str(default))
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number; unset it for {default}") from None
    if number < minimum:
        raise ValueError(f"{name}={number} must be at least {minimum}; unset it for {default}")
    return number


# --- automation conditions ------------------------------------------------------------------

def per_file_condition(*, ignore_updates_of: tuple[str, ...] = (),
                       ignore: tuple[str, ...] = ()) -> AutomationCondition:
    """Eager for one crawl partition: runs when the partition is new or an input of it updated.

    Updates of `ignore_updates_of` do not trigger a run, but those assets must still exist;
    `ignore` deps count not at all (the crawl files are a source nobody materializes).
    """
    condition = AutomationCondition.eager()
    if ignore:
        condition = condition.ignore(AssetSelection.assets(*ignore))
    if ignore_updates_of:
        condition = condition.replace(
            "any_deps_updated",
            AutomationCondition.any_deps_updated().ignore(AssetSelection.assets(*ignore_updates_of)))
    return condition


def after_new_clusters_condition() -> AutomationCondition:
    """deduplicated_documents: every partition reruns when `duplicate_clusters` changes; a new
    file's filtered documents alone do not trigger it (its clusters are not built yet: the run
    would keep every duplicate and be redone the same night)."""
    return (
        AutomationCondition.any_deps_updated().ignore(AssetSelection.assets("filtered_documents"))
        .since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("after_new_duplicate_clusters")


def build_once_condition() -> AutomationCondition:
    """quality_classifier: built by itself whenever it does not exist and some crawl file has been
    extracted (the per-file filter waits for it), including on a fresh instance: Dagster's
    `on_missing` skips what was already missing when automation first ran, which would leave a
    new factory waiting for a click. A damaged file never extracted does not hold it back. It
    does not retry a failed build every tick (a person looks first); retraining is
    `refresh_corpus`'s job.
    """
    return (
        AutomationCondition.missing()
        & AutomationCondition.any_deps_match(~AutomationCondition.missing())
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
        & ~AutomationCondition.execution_failed()
    ).with_label("build_when_missing")


def after_global_inputs_condition() -> AutomationCondition:
    """pretraining_corpus, bpe_tokenizer, token_shards: eager, so they follow a corpus refresh;
    they wait while any partition upstream is still running (a deduplication backfill)."""
    return AutomationCondition.eager()


# --- crawl files -> partitions --------------------------------------------------------------

@dataclass
class CrawlScan:
    """One tick's decision: files to register, files skipped with the reason, the next cursor."""

    ready: list[str]
    skipped: dict[str, str]
    cursor: dict[str, list[float]]  # partition key -> [size, mtime, first seen with them]


def scan_crawl_directory(directory: Path, known: set[str], cursor: dict[str, list[float]],
                         *, stable_seconds: float, max_new: int, now: float) -> CrawlScan:
    """Which new crawl files are complete, capped at `max_new`; the rest with a reason."""
    scan = CrawlScan(ready=[], skipped={}, cursor={})
    for key in discover_crawl_files(directory):
        if key in known:
            continue
        path = directory / key
        if path.with_name(path.name + DONE_MARKER_SUFFIX).exists():
            scan.ready.append(key)
            continue
        stat = path.stat()
        seen = cursor.get(key)
        if seen is None or (seen[0], seen[1]) != (stat.st_size, stat.st_mtime):
            scan.cursor[key] = [stat.st_size, stat.st_mtime, now]
            scan.skipped[key] = (f"size or mtime changed since the last tick (size {stat.st_size}); "
                                 f"waiting {stable_seconds:g}s of no change or a "
                                 f"{DONE_MARKER_SUFFIX} marker")
        elif now - seen[2] < stable_seconds:
            scan.cursor[key] = seen
            scan.skipped[key] = (f"unchanged for {now - seen[2]:.0f}s of the "
                                 f"{stable_seconds:g}s required")
        else:
            scan.ready.append(key)
    for key in scan.ready[max_new:]:
        scan.skipped[key] = f"over the limit of {max_new} new partitions per tick; next tick"
    scan.ready = scan.ready[:max_new]
    return scan


@sensor(
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Registers each complete new .warc/.wet(.gz) file in the crawl directory as a "
                "partition; the automation sensor then runs that file's chain.",
)
def crawl_file_sensor(context: SensorEvaluationContext, storage: Storage) -> SensorResult:
    known = set(context.instance.get_dynamic_partitions(crawl_partitions.name))
    scan = scan_crawl_directory(
        storage.crawl_path, known, json.loads(context.cursor) if context.cursor else {},
        stable_seconds=int_setting("LMPIPE_CRAWL_STABLE_SECONDS", 60),
        max_new=int_setting("LMPIPE_CRAWL_MAX_NEW_PER_TICK", 100), now=time.time())
    for key, reason in scan.skipped.items():
        context.log.info(f"not registered yet: {key}: {reason}")
    if scan.ready:
        context.log.info(f"registering {len(scan.ready)} crawl file(s): {', '.join(scan.ready)}")
    # new files and registered files rewritten since they were hashed: their sha256 becomes
    # the data version of their crawl_files partition, so Dagster marks a changed file's chain
    versions = crawl_file_versions(storage.home_path, storage.crawl_path,
                                   [*scan.ready, *sorted(known)], only_changed=True,
                                   budget_seconds=HASH_SECONDS_PER_TICK)
    changed = sorted(set(versions) - set(scan.ready))
    if changed:
        context.log.info(f"{len(changed)} registered crawl file(s) changed: {', '.join(changed)}")
    skip_reason = None
    if not scan.ready and not versions:
        skip_reason = (f"no complete new crawl file; waiting for {len(scan.skipped)}: "
                       + "; ".join(f"{k}: {r}" for k, r in list(scan.skipped.items())[:5])
                       if scan.skipped else "no new crawl file")
    return SensorResult(
        dynamic_partitions_requests=[crawl_partitions.build_add_request(scan.ready)]
        if scan.ready else [],
        cursor=json.dumps(scan.cursor, sort_keys=True),
        skip_reason=skip_reason,
        asset_events=observations(versions),
    )


# --- declarative automation sensor ----------------------------------------------------------

# Named and RUNNING by default, so `make ui` (dagster dev runs the daemon) evaluates the
# conditions without a click; it covers every asset, so Dagster adds no stopped default sensor.
automation_sensor = AutomationConditionSensorDefinition(
    "lmpipe_automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Runs each new crawl file's chain, and what follows a corpus refresh.",
)


# --- refresh the corpus on a schedule -------------------------------------------------------

refresh_corpus = define_asset_job(
    "refresh_corpus",
    selection=AssetSelection.assets("quality_classifier", "duplicate_clusters"),
    description="Rebuild the global assets that read every crawl file (quality classifier, "
                "duplicate clusters); deduplication, corpus, tokenizer and shards follow.",
)


def files_signed_since_last_refresh(instance) -> set[str]:
    """Crawl partitions whose MinHash signatures were (re)made after duplicate_clusters last
    ran: the files a corpus refresh would add."""
    clustered = instance.fetch_materializations(AssetKey("duplicate_clusters"), limit=1).records
    return instance.get_materialized_partitions(
        AssetKey("minhash_signatures"),
        after_cursor=clustered[0].storage_id if clustered else None)


@schedule(
    job=refresh_corpus,
    cron_schedule=CORPUS_REFRESH_CRON,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Refresh the corpus from new crawl files (LMPIPE_CORPUS_REFRESH_CRON); skips a "
                "night when no crawl file was signed since the last refresh.",
)
def refresh_corpus_schedule(context: ScheduleEvaluationContext):
    if not files_signed_since_last_refresh(context.instance):
        return SkipReason("no crawl file was signed since duplicate_clusters last ran")
    return RunRequest(run_key=None)


@sensor(
    job=refresh_corpus,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Refresh the corpus before the night when LMPIPE_CORPUS_REFRESH_NEW_FILES "
                "(default 100) crawl files were signed since the last refresh.",
)
def enough_new_files_sensor(context: SensorEvaluationContext):
    threshold = int_setting("LMPIPE_CORPUS_REFRESH_NEW_FILES", 100, minimum=1)
    new = files_signed_since_last_refresh(context.instance)
    if len(new) < threshold:
        return SkipReason(f"{len(new)} crawl file(s) signed since the last refresh; "
                          f"refreshing at {threshold}")
    clustered = context.instance.fetch_materializations(AssetKey("duplicate_clusters"), limit=1).records
    # one request per generation of clusters: the refresh itself makes the next generation
    generation = clustered[0].storage_id if clustered else 0
    return RunRequest(run_key=f"after-clusters-{generation}",
                      tags={"lmpipe/new_crawl_files": str(len(new))})


# --- re-evaluate the checkpoints nightly -----------------------------------------------------

EVALUATION_CRON = os.environ.get("LMPIPE_EVAL_CRON", "0 4 * * *")

evaluate_checkpoints = define_asset_job(
    "evaluate_checkpoints",
    selection=AssetSelection.groups("evaluation"),
    description="Run the evaluation battery on every checkpoint and rebuild the report card.",
)


@schedule(
    job=evaluate_checkpoints,
    cron_schedule=EVALUATION_CRON,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Re-evaluate every checkpoint and rebuild the report card (LMPIPE_EVAL_CRON, "
                "default 04:00, after the corpus refresh); skips while there is no base model.",
)
def nightly_evaluation_schedule(context: ScheduleEvaluationContext):
    if not context.instance.fetch_materializations(AssetKey("base_model"), limit=1).records:
        return SkipReason("no base_model has been trained yet")
    return RunRequest(run_key=None)
