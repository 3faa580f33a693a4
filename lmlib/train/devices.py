"""Which GPU a training process takes when several runs share one machine.

Each CUDA device has a lock file; a run holds an exclusive `flock` on the first free one for as
long as it trains, and the kernel drops the lock when the process exits, however it exits, so a
crashed run never keeps a GPU claimed. With the `gpu` pool's limit set to the number of GPUs,
that many runs (the points of a scaling sweep) train at once, one per device.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def claimed_device(lock_dir: Path, devices: int) -> Iterator[int]:
    """The index of a device in range(devices) that no other holder has, held until exit."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in range(devices):
        handle = (lock_dir / f"cuda{index}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield index
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError(f"all {devices} GPU(s) are held by other runs (locks in {lock_dir}); set "
                       "the gpu pool's limit (LMPIPE_GPU_POOL_LIMIT) to at most the GPU count")
