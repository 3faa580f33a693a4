"""How training survives failures and shares the GPUs: the knobs, in one place.

- `TRAINING_RETRY_POLICY`, on every training asset: a failed training step runs again in the same
  run after `LMPIPE_TRAINING_RETRY_DELAY` seconds (default 30), then 3x, then 7x that
  (exponential backoff), at most `LMPIPE_TRAINING_RETRIES` times (default 3). Training resumes
  from its latest checkpoint, so a retry repeats at most one checkpoint interval of work.
- Run retries (`LMPIPE_RUN_RETRIES`, default 2; 0 turns them off), written into the instance's
  dagster.yaml by `dagster_project.home.ensure_dagster_home`: the daemon (`make ui` / `dagster
  dev` runs it) launches a failed run again from its failed steps when its run worker died or
  was interrupted (preemption, an OOM kill, a lost node). A run that failed because a step
  failed is not run again: its steps already had their own retries (`retry_on_asset_or_op_failure:
  false`), so a deterministic error costs retries x steps attempts, not their product.
- The `gpu` concurrency pool's limit (`LMPIPE_GPU_POOL_LIMIT`, default 1): how many steps of
  the pool (the assets that use the GPUs) run at once across all runs of the instance. Dagster
  keeps per-pool limits in the instance's storage, not in dagster.yaml; `ensure_dagster_home`
  sets it there (see `apply_gpu_pool_limit`).

The variables are read when the code location loads (the retry policy) and when
`ensure_dagster_home` runs (the instance settings).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import Backoff, RetryPolicy

GPU_POOL = "gpu"
# Assets a person starts by hand, never `make demo` or automation (e.g. the crawl download).
MANUAL_TAG = "lmpipe/manual"

TRAINING_RETRIES_ENV = "LMPIPE_TRAINING_RETRIES"
TRAINING_RETRY_DELAY_ENV = "LMPIPE_TRAINING_RETRY_DELAY"
RUN_RETRIES_ENV = "LMPIPE_RUN_RETRIES"
GPU_POOL_LIMIT_ENV = "LMPIPE_GPU_POOL_LIMIT"

DEFAULT_TRAINING_RETRIES = 3
DEFAULT_TRAINING_RETRY_DELAY_SECONDS = 30.0
DEFAULT_RUN_RETRIES = 2
DEFAULT_GPU_POOL_LIMIT = 1
# After a run ends, the monitoring daemon frees the pool slots its steps still hold (a run worker
# that was killed never freed them), so a retried GPU run is not left waiting on its own slot.
FREE_SLOTS_AFTER_RUN_END_SECONDS = 60


def _number_from_env(environ: Mapping[str, str], name: str, default: float, *,
                     integer: bool) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number of seconds"
        raise ValueError(f"{name}={raw!r} is not {kind}; unset it for the default "
                         f"({default:g})") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must be >= 0")
    return value


def training_retry_policy(environ: Mapping[str, str] = os.environ) -> RetryPolicy:
    """The step retry policy of the training assets, from LMPIPE_TRAINING_RETRIES and
    LMPIPE_TRAINING_RETRY_DELAY (seconds; the first wait, doubled-plus-one after each retry)."""
    return RetryPolicy(
        max_retries=int(_number_from_env(environ, TRAINING_RETRIES_ENV, DEFAULT_TRAINING_RETRIES,
                                         integer=True)),
        delay=_number_from_env(environ, TRAINING_RETRY_DELAY_ENV,
                               DEFAULT_TRAINING_RETRY_DELAY_SECONDS, integer=False),
        backoff=Backoff.EXPONENTIAL,
    )


TRAINING_RETRY_POLICY = training_retry_policy()


def run_retries(environ: Mapping[str, str] = os.environ) -> int:
    """How many times the daemon launches a run again after its run worker died (0: never)."""
    return int(_number_from_env(environ, RUN_RETRIES_ENV, DEFAULT_RUN_RETRIES, integer=True))


def gpu_pool_limit(environ: Mapping[str, str] = os.environ) -> tuple[int, bool]:
    """(limit, explicit): steps of the gpu pool that may run at once, and whether
    LMPIPE_GPU_POOL_LIMIT set it (an explicit value replaces a limit set in the UI or CLI)."""
    explicit = bool(environ.get(GPU_POOL_LIMIT_ENV, "").strip())
    limit = int(_number_from_env(environ, GPU_POOL_LIMIT_ENV, DEFAULT_GPU_POOL_LIMIT,
                                 integer=True))
    return limit, explicit


def instance_settings(environ: Mapping[str, str] = os.environ) -> dict:
    """The dagster.yaml sections this project manages (ensure_dagster_home writes them)."""
    retries = run_retries(environ)
    return {
        # otherwise a "join the community" dialog covers every page of the UI
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
        "run_retries": {"enabled": retries > 0, "max_retries": retries,
                        "retry_on_asset_or_op_failure": False},
        "run_monitoring": {"enabled": True,
                           "free_slots_after_run_end_seconds": FREE_SLOTS_AFTER_RUN_END_SECONDS},
    }


def apply_gpu_pool_limit(instance, environ: Mapping[str, str] = os.environ) -> int:
    """Give the gpu pool its limit in the instance's storage; returns the limit in force.

    The default (1) fills in only where the pool has no limit of its own yet, so a limit set
    later with `dagster instance concurrency set gpu N` or in the UI stays; LMPIPE_GPU_POOL_LIMIT,
    when set, always wins.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise RuntimeError(
            f"the Dagster instance in {instance.root_directory} has storage without concurrency "
            "pools, so the gpu pool cannot be limited; run `dagster instance migrate` there")
    limit, explicit = gpu_pool_limit(environ)
    current = {pool.name: pool for pool in storage.get_pool_limits()}.get(GPU_POOL)
    if explicit or current is None or current.from_default:
        storage.set_concurrency_slots(GPU_POOL, limit)
        return limit
    return current.limit
