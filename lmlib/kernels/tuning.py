"""Autotuning that a person can see, done once per machine rather than once per process.

`autotune` is `triton.autotune` with `cache_results=True`: the chosen tiles are written to
Triton's cache directory (TRITON_CACHE_DIR, default ~/.triton/cache), so a second process with
the same shapes, code and GPU reads them instead of benchmarking every configuration again.
`launch` runs an autotuned kernel and, the first time this process meets a tuning key, logs on
the `lmlib.kernels` logger which kernel it tunes for which shape and how long that took; the
trainer forwards those lines to the console and to Dagster (a silent minute reads as a hang).
"""

import logging
import time

import triton

logger = logging.getLogger("lmlib.kernels")
_seen: set[tuple[str, str]] = set()


def autotune(configs: list, key: list[str]):
    return triton.autotune(configs=configs, key=key, cache_results=True)


def launch(kernel, grid, name: str, shape: str, *args, **kwargs) -> None:
    """kernel[grid](*args, **kwargs), reporting the first tuning of (name, shape) here."""
    if len(kernel.configs) < 2 or (name, shape) in _seen:
        kernel[grid](*args, **kwargs)
        return
    _seen.add((name, shape))
    logger.info(f"choosing tiles for {name} ({shape}) among {len(kernel.configs)} "
                "configurations: benchmarked once, then read from the disk cache")
    kernel.bench_time = None  # set by Triton only when it benchmarks (not on a disk-cache hit)
    started = time.perf_counter()
    kernel[grid](*args, **kwargs)
    source = "benchmarked" if kernel.bench_time is not None else "read from the disk cache"
    logger.info(f"tiles for {name} ({shape}) {source} in {time.perf_counter() - started:.1f} s: "
                f"{kernel.best_config}")
