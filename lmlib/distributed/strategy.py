"""Parallel strategies: one object per way of running a model on one or many processes.

`make_strategy(name, model, ...)` chooses once between `SingleProcess` ("none"), `DataParallel`
("ddp"), `ZeroDataParallel` ("zero1": DDP plus a sharded optimizer) and `FullySharded` ("fsdp"),
so a training loop (pretraining today; SFT, GRPO, DPO later) makes the same calls whatever the
strategy: `wrapped(x)` for the forward pass, `start_step()`, `no_sync(last_micro_batch)`,
`finish_gradients()`, `clip_gradients(max_norm)`, and for checkpoints `sharded_checkpoints`,
`local_state`, `sharded_index`, `load` and `full_model`. `join_process_group(name, device)`
says where this process sits before the model is built.
"""

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lmlib.distributed.activation_checkpointing import apply_activation_checkpointing
from lmlib.distributed.ddp import DDP
from lmlib.distributed.fsdp import FSDP
from lmlib.distributed.runtime import barrier, destroy_distributed, init_distributed
from lmlib.distributed.sharded_optimizer import ShardedOptimizer
from lmlib.optim import gradient_clipping

STRATEGIES = ("none", "ddp", "zero1", "fsdp")


@dataclass(frozen=True)
class ProcessPlacement:
    """Where this process trains: rank, world size, the device the process group pinned (None
    single-process: the config decides), and whether joining created the process group."""

    rank: int
    world_size: int
    device: torch.device | None
    created_group: bool

    def leave(self) -> None:
        """Destroys the process group if joining created it."""
        if self.created_group:
            destroy_distributed()


def join_process_group(strategy: str, device: str) -> ProcessPlacement:
    """Joins torchrun's process group for a distributed strategy; a world of one for "none"."""
    if strategy == "none":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                f"strategy none under torchrun with WORLD_SIZE={os.environ['WORLD_SIZE']}: every "
                "process would train alone into the same run_dir; set strategy ddp, zero1 or fsdp"
            )
        return ProcessPlacement(0, 1, None, False)
    created = not torch.distributed.is_initialized()
    environment = init_distributed(device)
    return ProcessPlacement(environment.rank, environment.world_size, environment.device, created)


class SingleProcess:
    """Strategy "none": the model (compiled or not) runs as it is, on one process."""

    name = "none"
    sharded_checkpoints = False  # one checkpoint.pt, written by rank 0

    def __init__(self, model: nn.Module, runnable: nn.Module, rank: int = 0, world_size: int = 1):
        self.model = model  # the unwrapped model: its state dict is the checkpoint's
        self.wrapped = runnable  # what the loop calls
        self.rank, self.world_size = rank, world_size

    @property
    def optimized_module(self) -> nn.Module:
        """The module whose parameters the optimizer updates."""
        return self.model

    def make_optimizer(self, groups: list[dict], optimizer_class: type, **settings):
        return optimizer_class(groups, **settings)

    def start_step(self) -> None:
        pass

    def no_sync(self, last_micro_batch: bool):
        return contextlib.nullcontext()

    def finish_gradients(self) -> None:
        pass

    def clip_gradients(self, max_norm: float) -> torch.Tensor:
        return gradient_clipping(self.model.parameters(), max_norm)

    def barrier(self) -> None:
        if self.world_size > 1:
            barrier()

    def local_state(self, optimizer) -> dict:
        """This rank's part of a sharded checkpoint: weights and optimizer state."""
        return {"model": self.model.state_dict(), "optimizer": optimizer.state_dict()}

    def sharded_index(self, optimizer) -> dict:
        """What sharded.json records beyond format, step and world size."""
        return {"strategy": self.name}

    def reads_rank0_weights(self) -> bool:
        """Whether resuming takes the weights from rank 0's file instead of this rank's."""
        return False

    def load(self, optimizer, state: dict, rank0_model_state: dict | None = None) -> None:
        self.model.load_state_dict(rank0_model_state if rank0_model_state is not None
                                   else state["model"])
        optimizer.load_state_dict(state["optimizer"])

    def full_model(self, build: Callable[[], nn.Module]) -> nn.Module | None:
        """The whole trained model on rank 0, None elsewhere (collective under FSDP); `build`
        makes an empty model when the weights must be gathered into a new one."""
        return self.model if self.rank == 0 else None


class DataParallel(SingleProcess):
    """Strategy "ddp": every rank holds the model; gradients are all-reduced in buckets."""

    name = "ddp"

    def __init__(self, model: nn.Module, runnable: nn.Module, rank: int, world_size: int,
                 bucket_size_mb: float | None = 25.0):
        super().__init__(model, DDP(runnable, bucket_size_mb=bucket_size_mb), rank, world_size)

    def start_step(self) -> None:
        self.wrapped.on_train_batch_start()

    def no_sync(self, last_micro_batch: bool):
        return contextlib.nullcontext() if last_micro_batch else self.wrapped.no_sync()

    def finish_gradients(self) -> None:
        self.wrapped.finish_gradient_synchronization()


class ZeroDataParallel(DataParallel):
    """Strategy "zero1": DDP, with the optimizer state sharded across ranks (ZeRO stage 1);
    each rank checkpoints its optimizer shard, rank 0 the weights as well."""

    name = "zero1"
    sharded_checkpoints = True

    def make_optimizer(self, groups: list[dict], optimizer_class: type, **settings):
        return ShardedOptimizer(groups, optimizer_class, **settings)

    def local_state(self, optimizer) -> dict:
        model_state = self.model.state_dict() if self.rank == 0 else {}
        return {"model": model_state, "optimizer": optimizer.state_dict()}

    def reads_rank0_weights(self) -> bool:
        return self.rank != 0


class FullySharded(SingleProcess):
    """Strategy "fsdp": weights, gradients and optimizer state sharded by rows across ranks."""

    name = "fsdp"
    sharded_checkpoints = True

    def __init__(self, model: nn.Module, runnable: nn.Module, rank: int, world_size: int,
                 compute_dtype: torch.dtype | None = None):
        # FSDP's hooks gather weights around every layer of the model itself, so it wraps the
        # model rather than a compiled copy (TrainConfig refuses compile with fsdp)
        super().__init__(model, FSDP(model, compute_dtype=compute_dtype), rank, world_size)

    @property
    def optimized_module(self) -> nn.Module:
        return self.wrapped  # its shards stand in for the weights they replace

    def start_step(self) -> None:
        self.wrapped.on_train_batch_start()

    def finish_gradients(self) -> None:
        self.wrapped.finish_gradient_synchronization()

    def clip_gradients(self, max_norm: float) -> torch.Tensor:
        replicated = self.wrapped.replicated_parameters
        shards = [p for p in self.wrapped.parameters() if not any(p is q for q in replicated)]
        return gradient_clipping(replicated, max_norm, sharded_parameters=shards)

    def local_state(self, optimizer) -> dict:
        return {"model": self.wrapped.sharded_state_dict(), "optimizer": optimizer.state_dict()}

    def sharded_index(self, optimizer) -> dict:
        names = {id(p): name for name, p in self.wrapped.named_parameters()}
        return {
            "strategy": self.name,
            "layout": self.wrapped.sharding_layout(),
            "optimizer_parameter_names": [
                names[id(p)] for group in optimizer.param_groups for p in group["params"]
            ],
        }

    def load(self, optimizer, state: dict, rank0_model_state: dict | None = None) -> None:
        self.wrapped.load_sharded_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    def full_model(self, build: Callable[[], nn.Module]) -> nn.Module | None:
        full = self.wrapped.gather_full_params()
        if self.rank != 0:
            return None
        exported = build()
        exported.load_state_dict(full)
        return exported


def make_strategy(name: str, model: nn.Module, *, rank: int = 0, world_size: int = 1,
                  compile: bool = False, bucket_size_mb: float | None = 25.0,
                  compute_dtype: torch.dtype | None = None,
                  activation_checkpointing: str = "none",
                  activation_checkpointing_every_k: int = 2) -> SingleProcess:
    """The strategy `name` around `model`, after activation checkpointing and torch.compile.

    `bucket_size_mb` sizes DDP's gradient buckets (ddp, zero1); `compute_dtype` is the dtype
    FSDP casts weights to before gathering them (bf16 when the loop autocasts to bf16).
    """
    apply_activation_checkpointing(model, activation_checkpointing,
                                   activation_checkpointing_every_k)
    runnable = torch.compile(model) if compile else model
    if name == "none":
        return SingleProcess(model, runnable)
    if name in ("ddp", "zero1"):
        kind = DataParallel if name == "ddp" else ZeroDataParallel
        return kind(model, runnable, rank, world_size, bucket_size_mb=bucket_size_mb)
    if name == "fsdp":
        return FullySharded(model, runnable, rank, world_size, compute_dtype=compute_dtype)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
