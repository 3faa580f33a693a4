"""Fully sharded data parallelism for any module built from lmlib.model Linear and Embedding.

Notable:
- each such layer's weight is split by rows across ranks (padded to a multiple of the world
  size) and kept as a float32 "shard" parameter, the only copy that persists; other
  parameters (norm gains) stay replicated and their gradients are all-reduced in one bucket
  at the end of the step (so gradient accumulation needs no `no_sync`);
- weights are gathered per layer group: the sharded layers among one module's direct
  children (attention's q/k/v/output, so a fused qkv matmul that reads the weights directly
  still finds them; the feed-forward's w1/w2/w3), or a sharded layer of the root on its own
  (embedding, LM head). The group's forward pre-hook all-gathers its weights (cast to
  `compute_dtype` before the communication when one is given) and prefetches the next
  group's, in the order recorded on the first forward; its forward hook drops them;
- autograd would keep the gathered weight alive until backward, so a saved-tensors hook swaps
  it for a token while packing, and all-gathers it again (prefetching the layer backward
  reaches next) when backward unpacks it;
- the gather is an autograd Function whose backward reduce-scatters the full-weight gradient
  asynchronously; `finish_gradient_synchronization()` waits and adds each rank's slice,
  divided by the world size, to its shard's float32 `.grad`;
- in float32 each rank's forward and backward are the single-process ones on the same weights
  (the gathered weight is a contiguous view laid out like the parameter, so matmuls take the
  same path), a two-rank sum is exact and so is dividing by a power-of-two world size: training
  equals, bitwise, one process running each rank's rows as a micro-batch and summing. Against
  one pass over the whole global batch it differs by a few ulps, as any data parallelism does:
  that pass sums a weight gradient's rows inside one matmul, while each rank must round its
  partial sum before the ranks add them (tests/dist/workers.py shows it). A model built with
  `ModelConfig.batch_invariant_gradients` closes that gap on two ranks: its weight gradients are
  trees over sequences, each rank's a subtree of the full batch's (lmlib.model.batch_invariant;
  tied weights excepted, since their two uses are gathered and reduced separately here).
"""

import bisect
import math

import torch
import torch.distributed as dist
from torch import nn

from lmlib.distributed.ddp import broadcast_module_state
from lmlib.distributed.gradient_buckets import GradientReducer
from lmlib.model.layers import Embedding, Linear
from lmlib.optim import gradient_clipping

_REGATHER = object()  # marks a saved tensor that stands for a sharded weight


class _ShardedWeight:
    """One sharded weight: its float32 shard, full shape and the modules that use it."""

    def __init__(self, name: str, weight: torch.Tensor, rank: int, world_size: int):
        self.name = name
        self.full_shape = tuple(weight.shape)
        self.rows = weight.shape[0]
        self.rows_per_rank = math.ceil(self.rows / world_size)
        padded = torch.zeros((self.rows_per_rank * world_size, *weight.shape[1:]),
                             device=weight.device, dtype=torch.float32)
        padded[: self.rows].copy_(weight.detach())
        local = padded[rank * self.rows_per_rank : (rank + 1) * self.rows_per_rank]
        self.shard = nn.Parameter(local.clone(), requires_grad=weight.requires_grad)
        self.modules: list[nn.Module] = []


class _GatherWeight(torch.autograd.Function):
    """Forward: all-gather a shard into the full weight. Backward: reduce-scatter its grad."""

    @staticmethod
    def forward(ctx, shard, unit, fsdp):
        ctx.unit, ctx.fsdp = unit, fsdp
        return fsdp._take_gathered(unit)

    @staticmethod
    def backward(ctx, grad_full):
        ctx.fsdp._reduce_scatter(ctx.unit, grad_full)
        return None, None, None  # the shard's gradient is written by finish_gradient_sync


class _LayerGroup:
    """The weights one module gathers together before it runs: the sharded layers among its
    direct children (attention's q/k/v/output, the feed-forward's w1/w2/w3), or a sharded
    layer of the root module on its own (embedding, LM head)."""

    def __init__(self, owner: nn.Module):
        self.owner = owner
        self.members: list[tuple[nn.Module, _ShardedWeight]] = []


class FSDP(nn.Module):
    """Shards `module`'s Linear/Embedding weights; `.module` is the wrapped model."""

    def __init__(self, module: nn.Module, compute_dtype: torch.dtype | None = None,
                 process_group=None,
                 sharded_module_types: tuple[type, ...] = (Linear, Embedding)):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("FSDP needs an initialized process group")
        if compute_dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"compute_dtype must be None, float32, bfloat16 or float16, "
                             f"got {compute_dtype}")
        self.module = module
        self.group = process_group
        self.rank = dist.get_rank(process_group)
        self.world_size = dist.get_world_size(process_group)
        self.compute_dtype = compute_dtype
        broadcast_module_state(module, process_group=process_group)

        state_keys = module.state_dict(keep_vars=True)
        names_of_weight = {id(p): name for name, p in module.named_parameters()}
        modules_by_name = dict(module.named_modules())
        units_by_weight: dict[int, _ShardedWeight] = {}
        groups_by_owner: dict[int, _LayerGroup] = {}
        self._units: list[_ShardedWeight] = []
        self._groups: list[_LayerGroup] = []
        for qualified_name, submodule in module.named_modules(remove_duplicate=False):
            weight = submodule._parameters.get("weight")
            if not isinstance(submodule, sharded_module_types) or weight is None:
                continue
            unit = units_by_weight.get(id(weight))
            if unit is None:
                unit = _ShardedWeight(names_of_weight[id(weight)], weight, self.rank,
                                      self.world_size)
                units_by_weight[id(weight)] = unit
                self._units.append(unit)
            parent_name = qualified_name.rpartition(".")[0]
            owner = modules_by_name[parent_name] if "." in qualified_name else submodule
            group = groups_by_owner.get(id(owner))
            if group is None:
                group = groups_by_owner[id(owner)] = _LayerGroup(owner)
                self._groups.append(group)
            group.members.append((submodule, unit))
        # the module's parameter order, with shards standing in for the weights they replace
        self._named_parameters: list[tuple[str, nn.Parameter]] = []
        for name, p in module.named_parameters():
            unit = units_by_weight.get(id(p))
            self._named_parameters.append((name, unit.shard if unit is not None else p))
        # state-dict keys (tied weights have two) -> a unit, or the tensor kept as it is
        self._state_sources: dict[str, object] = {
            key: units_by_weight.get(id(tensor), tensor) for key, tensor in state_keys.items()
        }
        for group in self._groups:
            for submodule, _ in group.members:
                submodule._parameters.pop("weight", None)
                submodule.weight = None
            group.owner.register_forward_pre_hook(
                lambda owner, args, group=group: self._before_group_forward(group))
            group.owner.register_forward_hook(
                lambda owner, args, output, group=group: self._after_group_forward(group))
        self.shards = nn.ParameterList([unit.shard for unit in self._units])
        shard_ids = {id(unit.shard) for unit in self._units}
        self.replicated_parameters = [p for _, p in self._named_parameters
                                      if id(p) not in shard_ids]
        # replicated gradients are small: one all-reduce in finish_gradient_synchronization,
        # after however many micro-batches accumulated into them
        self.reducer = GradientReducer(self.replicated_parameters, None, process_group)
        self.reducer.sync_enabled = False

        self._prefetched: dict[int, tuple] = {}  # id(unit) -> (work, padded buffer)
        self._pending_grads: list[tuple] = []  # (work, shard-shaped result, unit, keep-alive)
        self._forward_order: list[_LayerGroup] = []  # one entry per group call, first forward
        self._order_recorded = False
        self._event = 0
        self._saved: dict[int, list[_ShardedWeight]] = {}  # event -> weights autograd saved
        self._saved_events: list[int] = []  # sorted keys of _saved
        self._unpacked: set[tuple[int, int]] = set()  # (event, id(unit)) regathered already
        self._live_storage: dict[int, tuple[_ShardedWeight, int]] = {}

    # --- parameters -------------------------------------------------------------------------

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """The wrapped module's names, in its order; sharded weights yield their local shard."""
        for name, p in self._named_parameters:
            yield (f"{prefix}.{name}" if prefix else name), p

    @property
    def sharded_names(self) -> list[str]:
        return [unit.name for unit in self._units]

    # --- forward ----------------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        self._drop_prefetched()
        self._event = 0
        self._saved, self._saved_events, self._unpacked = {}, [], set()
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            output = self.module(*args, **kwargs)
        if self._forward_order:
            self._order_recorded = True
        return output

    def _in_backward(self) -> bool:
        # a layer's forward that runs during backward is activation-checkpoint recomputation
        return torch._C._current_graph_task_id() != -1

    def _before_group_forward(self, group: _LayerGroup) -> None:
        recomputing = self._in_backward()
        event = self._event
        if not recomputing:
            if not self._order_recorded:
                self._forward_order.append(group)
            self._event += 1
        gathered = [(submodule, _GatherWeight.apply(unit.shard, unit, self), unit)
                    for submodule, unit in group.members]
        for submodule, full, unit in gathered:
            submodule.weight = full
            if torch.is_grad_enabled() and not recomputing:
                self._live_storage[full.untyped_storage().data_ptr()] = (unit, event)
        if not recomputing and self._order_recorded and event + 1 < len(self._forward_order):
            for _, unit in self._forward_order[event + 1].members:
                self._prefetch(unit)

    def _after_group_forward(self, group: _LayerGroup) -> None:
        for submodule, _ in group.members:
            if submodule.weight is not None:
                self._live_storage.pop(submodule.weight.untyped_storage().data_ptr(), None)
            submodule.weight = None

    def _pack(self, tensor: torch.Tensor):
        if not self._live_storage or tensor.layout != torch.strided:
            return tensor
        found = self._live_storage.get(tensor.untyped_storage().data_ptr())
        if found is None:
            return tensor
        unit, event = found
        if event not in self._saved:
            self._saved[event] = []
            bisect.insort(self._saved_events, event)
        self._saved[event].append(unit)
        return (_REGATHER, unit, event, tensor.size(), tensor.stride(), tensor.storage_offset())

    def _unpack(self, packed):
        if not (isinstance(packed, tuple) and packed and packed[0] is _REGATHER):
            return packed
        _, unit, event, size, stride, offset = packed
        full = self._take_gathered(unit)
        self._unpacked.add((event, id(unit)))
        # prefetch the rest of this layer group, then the group backward reaches next
        position = bisect.bisect_left(self._saved_events, event)
        upcoming = list(self._saved[event])
        if position > 0:
            previous = self._saved_events[position - 1]
            upcoming += [(previous, u) for u in self._saved[previous]]
        for item in upcoming:
            other_event, other = item if isinstance(item, tuple) else (event, item)
            if (other_event, id(other)) not in self._unpacked:
                self._prefetch(other)
        return full.as_strided(size, stride, offset)

    # --- communication ----------------------------------------------------------------------

    def _launch_gather(self, unit: _ShardedWeight):
        shard = unit.shard.detach()
        dtype = self.compute_dtype or shard.dtype
        if shard.dtype != dtype:
            shard = shard.to(dtype)
        padded = torch.empty((unit.rows_per_rank * self.world_size, *unit.full_shape[1:]),
                             device=shard.device, dtype=dtype)
        work = dist.all_gather_into_tensor(padded, shard.contiguous(), group=self.group,
                                           async_op=True)
        return work, padded

    def _prefetch(self, unit: _ShardedWeight) -> None:
        if id(unit) not in self._prefetched:
            self._prefetched[id(unit)] = self._launch_gather(unit)

    def _take_gathered(self, unit: _ShardedWeight) -> torch.Tensor:
        """The full weight (rows trimmed), from a prefetch when one is in flight."""
        work, padded = self._prefetched.pop(id(unit), None) or self._launch_gather(unit)
        work.wait()
        return padded[: unit.rows]

    def _drop_prefetched(self) -> None:
        for work, _ in self._prefetched.values():
            work.wait()
        self._prefetched.clear()

    def _reduce_scatter(self, unit: _ShardedWeight, grad_full: torch.Tensor) -> None:
        padded_rows = unit.rows_per_rank * self.world_size
        if grad_full.shape[0] == padded_rows:
            padded = grad_full.contiguous()
        else:
            padded = grad_full.new_zeros((padded_rows, *unit.full_shape[1:]))
            padded[: unit.rows].copy_(grad_full)
        result = padded.new_empty((unit.rows_per_rank, *unit.full_shape[1:]))
        work = dist.reduce_scatter_tensor(result, padded, group=self.group, async_op=True)
        self._pending_grads.append((work, result, unit, padded))

    # --- the training loop's calls ----------------------------------------------------------

    def on_train_batch_start(self) -> None:
        self.reducer.reset()

    def finish_gradient_synchronization(self) -> None:
        """Waits for every reduce-scatter and all-reduce; shards then hold averaged grads."""
        self.reducer.finish()
        for work, result, unit, _ in self._pending_grads:
            work.wait()
            grad = result.to(torch.float32).div_(self.world_size)
            if unit.shard.grad is None:
                unit.shard.grad = grad
            else:
                unit.shard.grad.add_(grad)
        self._pending_grads.clear()
        self._drop_prefetched()

    # --- state ------------------------------------------------------------------------------

    @torch.no_grad()
    def gather_full_params(self) -> dict[str, torch.Tensor]:
        """The wrapped module's full state dict in float32 (collective: call on every rank)."""
        gathered = {}
        for unit in self._units:
            padded = torch.empty((unit.rows_per_rank * self.world_size, *unit.full_shape[1:]),
                                 device=unit.shard.device, dtype=unit.shard.dtype)
            dist.all_gather_into_tensor(padded, unit.shard.detach().contiguous(),
                                        group=self.group)
            gathered[id(unit)] = padded[: unit.rows].clone()
        return {
            key: gathered[id(source)] if isinstance(source, _ShardedWeight)
            else source.detach().clone()
            for key, source in self._state_sources.items()
        }

    def sharded_state_dict(self) -> dict[str, torch.Tensor]:
        """This rank's tensors under the module's state-dict keys: shards and replicated ones."""
        return {
            key: (source.shard if isinstance(source, _ShardedWeight) else source).detach()
            for key, source in self._state_sources.items()
        }

    def sharding_layout(self) -> dict[str, dict]:
        """For each state-dict key: whether it is row-sharded, and its full shape."""
        return {
            key: {"sharded": isinstance(source, _ShardedWeight),
                  "shape": list(source.full_shape if isinstance(source, _ShardedWeight)
                                else source.shape)}
            for key, source in self._state_sources.items()
        }

    @torch.no_grad()
    def load_sharded_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self._state_sources) - set(state)
        if missing:
            raise ValueError(f"sharded state dict lacks {sorted(missing)}")
        for key, source in self._state_sources.items():
            target = source.shard if isinstance(source, _ShardedWeight) else source
            if tuple(state[key].shape) != tuple(target.shape):
                raise ValueError(f"{key}: saved shape {tuple(state[key].shape)}, expected "
                                 f"{tuple(target.shape)} (same world size?)")
            target.copy_(state[key])


def clip_gradients(sharded: list[torch.Tensor], replicated: list[torch.Tensor],
                   max_l2_norm: float, eps: float = 1e-6, process_group=None) -> torch.Tensor:
    """Clips FSDP's gradients to one global L2 norm: lmlib.optim.gradient_clipping with the
    shards as its sharded parameters (kept under this name for existing callers)."""
    return gradient_clipping(replicated, max_l2_norm, eps, sharded_parameters=sharded,
                             process_group=process_group)
