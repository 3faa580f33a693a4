"""The one process map every stage that parallelises uses.

`ordered_map(function, items, workers)` yields `function(item)` for each item, in input order,
with at most `window` items in flight (memory stays flat however long the input), in a pool of
`spawn` processes (no forked copies of the parent's threads or open files). An `initializer`
runs once in each worker (to load a model or a tokenizer once, not once per item). On an error
in a worker, an early stop by the caller, or an interrupt, the pool is shut down with its
pending work cancelled: nothing is left running. `workers=1` runs in this process, the same
order and results, so outputs never depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    workers: int,
    *,
    window: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[Result]:
    """function(item) for every item, in order; `workers` processes (1: this process)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    window = window or 4 * workers
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
    pending: deque[Future] = deque()
    finished = False
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    finally:
        # success: wait for idle workers to exit; error, early stop or interrupt: drop the rest
        pool.shutdown(wait=finished, cancel_futures=not finished)
