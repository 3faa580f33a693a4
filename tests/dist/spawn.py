"""Runs a function on N gloo processes (torch.multiprocessing.spawn) and re-raises failures.

Workers assert inside themselves; a failing assertion on any rank fails the test with that
rank's traceback.
"""

import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, world_size: int, init_file: str, function, args: tuple) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        function(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_on_ranks(function, world_size: int, *args) -> None:
    """function(rank, world_size, *args) on `world_size` processes; raises what any raised."""
    with tempfile.TemporaryDirectory() as directory:
        init_file = os.path.join(directory, "init")
        mp.spawn(_entry, args=(world_size, init_file, function, args), nprocs=world_size,
                 join=True)
