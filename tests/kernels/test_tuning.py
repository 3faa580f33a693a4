"""Autotuning reports which kernel it tunes for which shape, once per shape and process."""

import logging

from lmlib.kernels import tuning


class FakeAutotuner:
    """The parts of triton's Autotuner that `launch` reads: configs, bench_time, best_config."""

    def __init__(self, cached_on_disk: bool):
        self.configs = ["tiles A", "tiles B"]
        self.cached_on_disk = cached_on_disk
        self.launches = 0

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.launches += 1
            if not self.cached_on_disk:
                self.bench_time = 0.5
            self.best_config = "tiles B"
        return run


def test_first_launch_of_a_shape_is_reported_with_its_choice(caplog):
    kernel = FakeAutotuner(cached_on_disk=False)
    with caplog.at_level(logging.INFO, logger="lmlib.kernels"):
        tuning.launch(kernel, (1,), "test kernel", "shape one")
        tuning.launch(kernel, (1,), "test kernel", "shape one")
        tuning.launch(kernel, (1,), "test kernel", "shape two")
    messages = [record.getMessage() for record in caplog.records]
    assert kernel.launches == 3
    assert messages[0].startswith("choosing tiles for test kernel (shape one) among 2")
    assert "benchmarked" in messages[1] and messages[1].endswith("tiles B")
    assert len(messages) == 4  # shape one reported once, shape two once


def test_a_disk_cache_hit_says_so(caplog):
    kernel = FakeAutotuner(cached_on_disk=True)
    with caplog.at_level(logging.INFO, logger="lmlib.kernels"):
        tuning.launch(kernel, (1,), "cached kernel", "shape")
    assert "read from the disk cache" in caplog.records[-1].getMessage()
