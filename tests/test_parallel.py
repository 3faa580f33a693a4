"""lmlib.parallel.ordered_map: order, bounded work in flight, and nothing left running."""

import os
import time

import pytest

from lmlib.parallel import ordered_map

_factor = 1


def _set_factor(factor: int) -> None:
    global _factor
    _factor = factor


def _scaled(x: int) -> int:
    return x * _factor


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def _slow_pid(x: int) -> int:
    time.sleep(0.05)
    return os.getpid()


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_input_order_with_the_initializer_applied(workers):
    results = list(ordered_map(_scaled, range(20), workers, window=3, initializer=_set_factor,
                               initargs=(10,)))
    assert results == [10 * x for x in range(20)]


def test_a_worker_error_reaches_the_caller_and_the_pool_is_gone():
    with pytest.raises(ValueError, match="three"):
        list(ordered_map(_fails_on_three, range(10), 2, window=2))


def test_stopping_early_shuts_the_workers_down():
    results = ordered_map(_slow_pid, range(100), 2, window=2)
    worker = next(results)
    results.close()  # the caller stops reading: pending work is cancelled, workers exit
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"worker {worker} still alive after the map was closed")


def test_bad_worker_count_is_refused():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(ordered_map(_scaled, [1], 0))
