"""Two ops in the gpu pool that record when they ran, for the pool-limit test.

The multiprocess executor runs each step in its own process, which imports this module, so it
imports nothing beyond dagster.
"""

import json
import time
from pathlib import Path

from dagster import Config, job, multiprocess_executor, op

from dagster_project.policies import GPU_POOL

HOLD_SECONDS = 1.5


class IntervalConfig(Config):
    directory: str


def _hold_the_gpu(name: str, config: IntervalConfig) -> None:
    started = time.time()
    time.sleep(HOLD_SECONDS)
    Path(config.directory, f"{name}.json").write_text(json.dumps([started, time.time()]))


@op(pool=GPU_POOL)
def first_training(config: IntervalConfig) -> None:
    _hold_the_gpu("first_training", config)


@op(pool=GPU_POOL)
def second_training(config: IntervalConfig) -> None:
    _hold_the_gpu("second_training", config)


# forkserver: step processes fork from one that imported dagster already (seconds faster)
@job(executor_def=multiprocess_executor.configured({"start_method": {"forkserver": {}}}))
def two_gpu_trainings():
    first_training()
    second_training()


def run_config(directory: Path) -> dict:
    config = {"config": {"directory": str(directory)}}
    return {"ops": {"first_training": config, "second_training": config}}


def intervals(directory: Path) -> list[tuple[float, float]]:
    return sorted(tuple(json.loads(path.read_text())) for path in directory.glob("*.json"))
