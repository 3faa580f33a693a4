"""Process-group setup from torchrun's environment, and the few collectives the trainer needs.

`torchrun` (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)
starts one process per device; `init_distributed` joins them into the default process group
with NCCL on CUDA and gloo on the CPU, and pins each process to cuda:LOCAL_RANK. Without those
variables it does nothing and reports a world of one, so the same trainer runs single-process.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedEnvironment:
    """Where this process sits: its global rank, the world size, its rank on the node, device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_distributed(device: str = "auto") -> DistributedEnvironment:
    """Joins the default process group (once) when launched by torchrun; returns where we sit.

    device "auto" picks cuda:LOCAL_RANK when CUDA is available, else the CPU; "cpu" forces gloo.
    """
    if not launched_by_torchrun():
        raise RuntimeError(
            "a distributed strategy needs RANK, WORLD_SIZE and LOCAL_RANK in the environment: "
            "launch with `torchrun --nproc_per_node N -m lmlib.train ...`, or use strategy none"
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but CUDA is not available here")
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPUs: "
                "lower --nproc_per_node"
            )
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    elif device in ("auto", "cpu"):
        torch_device = torch.device("cpu")
    else:
        raise RuntimeError(f"device {device!r} is not supported for distributed training")
    if not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        kwargs = {"device_id": torch_device} if torch_device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistributedEnvironment(rank, world_size, local_rank, torch_device)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(value, source_rank: int = 0):
    """`value` as rank `source_rank` has it, on every rank (unchanged without a process group);
    any picklable object, e.g. a path one rank chose."""
    if not dist.is_initialized():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source_rank)
    return holder[0]
