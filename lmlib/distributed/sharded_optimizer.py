"""ZeRO stage 1: each rank keeps optimizer state for a balanced shard of the parameters only.

`ShardedOptimizer(params, optimizer_cls, **kwargs)` is a torch.optim.Optimizer over all
parameters (so schedules that set `group["lr"]` and `zero_grad` work as usual). Each parameter
belongs to one rank, assigned largest-first to the least-loaded rank, so shards differ by at
most one parameter's size. `step` copies the hyperparameters of every group into the local
optimizer, steps the local shard, then each rank broadcasts the parameters it updated (one
in-place broadcast per parameter). Gradients must already be averaged (DDP). The update is
the wrapped optimizer's own arithmetic on the same tensors, so it equals the unsharded one.

`state_dict()` has the ordinary optimizer layout (global parameter indices) holding only this
rank's entries, so the ranks' state dicts merge into a single-process one by uniting "state".
"""

from collections.abc import Iterable

import torch
import torch.distributed as dist


class ShardedOptimizer(torch.optim.Optimizer):
    def __init__(self, params: Iterable, optimizer_cls: type[torch.optim.Optimizer],
                 process_group=None, **kwargs):
        if not dist.is_initialized():
            raise RuntimeError("ShardedOptimizer needs an initialized process group")
        self.group = process_group
        self.rank = dist.get_rank(process_group)
        self.world_size = dist.get_world_size(process_group)
        self.optimizer_cls, self.optimizer_kwargs = optimizer_cls, kwargs
        self.owner: dict[int, int] = {}  # id(param) -> owning rank
        self._rank_load = [0] * self.world_size
        self._local_groups: list[dict] = []  # the local optimizer's group for each of ours
        self.local_optimizer: torch.optim.Optimizer | None = None
        super().__init__(params, kwargs)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        # largest first to the least-loaded rank (ties: lowest rank): the same on every rank
        order = sorted(range(len(group["params"])),
                       key=lambda i: (-group["params"][i].numel(), i))
        for i in order:
            p = group["params"][i]
            target = min(range(self.world_size), key=lambda r: (self._rank_load[r], r))
            self.owner[id(p)] = target
            self._rank_load[target] += p.numel()
        local = {k: v for k, v in group.items() if k != "params"}
        local["params"] = [p for p in group["params"] if self.owner[id(p)] == self.rank]
        if self.local_optimizer is None:
            self.local_optimizer = self.optimizer_cls([local], **self.optimizer_kwargs)
        else:
            self.local_optimizer.add_param_group(local)
        self._local_groups.append(self.local_optimizer.param_groups[-1])

    @property
    def shard_numels(self) -> list[int]:
        """Number of parameter elements each rank keeps optimizer state for."""
        return list(self._rank_load)

    @torch.no_grad()
    def step(self, closure=None, **kwargs):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, local in zip(self.param_groups, self._local_groups):
            for key, value in group.items():
                if key != "params":
                    local[key] = value
        self.local_optimizer.step(**kwargs)
        self._broadcast_updated_parameters()
        return loss

    def _broadcast_updated_parameters(self) -> None:
        """Each owner broadcasts its updated parameters in place: no flat copy, so the memory
        ZeRO-1 saves on optimizer state is not spent again on communication buffers."""
        if self.world_size == 1:
            return
        pending = []
        for group in self.param_groups:
            for p in group["params"]:
                owner = self.owner[id(p)]
                source = (dist.get_global_rank(self.group, owner) if self.group is not None
                          else owner)
                pending.append(dist.broadcast(p.detach(), src=source, group=self.group,
                                              async_op=True))
        for work in pending:
            work.wait()

    def _global_index(self) -> dict[int, int]:
        index, number = {}, 0
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), number)
                number += 1
        return index

    def state_dict(self) -> dict:
        """The ordinary optimizer layout, holding state only for this rank's parameters."""
        index = self._global_index()
        state = {index[id(p)]: dict(self.local_optimizer.state[p])
                 for p in self.local_optimizer.state}
        groups = []
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = [index[id(p)] for p in group["params"]]
            groups.append(saved)
        return {"state": state, "param_groups": groups,
                "sharding": {"rank": self.rank, "world_size": self.world_size}}

    def load_state_dict(self, state_dict: dict) -> None:
        sharding = state_dict.get("sharding")
        if sharding is not None and sharding["world_size"] != self.world_size:
            raise ValueError(
                f"optimizer state was saved by {sharding['world_size']} ranks; this run has "
                f"{self.world_size}. Resume on the same world size, or consolidate the checkpoint"
            )
        index = self._global_index()
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            for key, value in saved.items():
                if key != "params":
                    group[key] = value
        for group, local in zip(self.param_groups, self._local_groups):
            for key, value in group.items():
                if key != "params":
                    local[key] = value
        self.local_optimizer.state.clear()
        for group in self.param_groups:
            for p in group["params"]:
                if self.owner[id(p)] != self.rank or index[id(p)] not in saved_state:
                    continue
                self.local_optimizer.state[p] = {
                    k: v.to(p.device) if torch.is_tensor(v) and v.dim() > 0 else v
                    for k, v in saved_state[index[id(p)]].items()
                }
