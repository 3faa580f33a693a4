"""Worker functions run on every rank by tests/dist (importable by spawned processes).

Each compares a distributed run with single-process training on the same global batch: the
reference accumulates the loss of each rank's micro-batch divided by the world size, which in
float32 is exactly what averaging the ranks' gradients computes (two-rank sums are exact).
"""

import copy

import torch
import torch.distributed as dist

from lmlib.dist import DDP, FSDP, ShardedOptimizer, apply_activation_checkpointing
from lmlib.model import Embedding, Linear, ModelConfig, TransformerLM, cross_entropy
from lmlib.optim import AdamW

VOCAB, CONTEXT = 32, 8


def tiny_model(seed: int = 0, **overrides) -> TransformerLM:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=VOCAB, context_length=CONTEXT, d_model=16, num_layers=2,
                         num_heads=2, d_ff=32, attention_backend="torch", **overrides)
    return TransformerLM(config)


def global_batch(step: int, rows: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randint(0, VOCAB, (rows, CONTEXT + 1), generator=generator)


def rank_rows(tokens: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    per_rank = tokens.shape[0] // world_size
    return tokens[rank * per_rank : (rank + 1) * per_rank]


def loss_of(model, tokens: torch.Tensor) -> torch.Tensor:
    return cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])


def reference_step(model, optimizer, tokens, world_size: int, accumulation: int = 1,
                   compute_dtype: torch.dtype | None = None) -> None:
    """Single-process: every rank's micro-batches in rank order, losses scaled to the mean.

    With compute_dtype, the usual mixed-precision recipe: a copy whose Linear and Embedding
    weights are cast computes each rank's gradients in that dtype (unscaled, since halving
    subnormal float16 values rounds), they are summed in it and averaged into float32 masters.
    """
    optimizer.zero_grad(set_to_none=True)
    if compute_dtype is None:
        for rank in range(world_size):
            local = rank_rows(tokens, rank, world_size)
            for micro in local.chunk(accumulation):
                (loss_of(model, micro) / (world_size * accumulation)).backward()
        optimizer.step()
        return
    compute = copy.deepcopy(model)
    for module in compute.modules():
        if isinstance(module, Linear | Embedding):
            module.weight.data = module.weight.data.to(compute_dtype)
    sums = [None] * len(list(model.parameters()))
    for rank in range(world_size):
        compute.zero_grad(set_to_none=True)
        loss_of(compute, rank_rows(tokens, rank, world_size)).backward()
        for index, p in enumerate(compute.parameters()):
            sums[index] = p.grad if sums[index] is None else sums[index] + p.grad
    for master, total in zip(model.parameters(), sums):
        master.grad = total.float() / world_size
    optimizer.step()


def assert_same(actual: torch.Tensor, expected: torch.Tensor, exact: bool, what: str) -> None:
    if exact:
        assert torch.equal(actual, expected), f"{what}: max diff {(actual - expected).abs().max()}"
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=what)


def ddp_matches_single_process(rank: int, world_size: int, bucket_sizes, accumulation: int):
    exact = world_size == 2 and accumulation == 1
    for bucket_size_mb in bucket_sizes:
        model = tiny_model(seed=rank, tie_embeddings=True)  # ranks differ until the broadcast
        model.layers[0].ln1.weight.requires_grad_(False)  # a frozen parameter
        unused = torch.nn.Parameter(torch.ones(3))  # requires grad, never used
        model.register_parameter("unused", unused)
        ddp = DDP(model, bucket_size_mb=bucket_size_mb)
        reference = copy.deepcopy(model)
        if rank == 0:
            assert len(ddp.reducer.buckets) >= (4 if bucket_size_mb == 0.001 else 1)
        optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        reference_optimizer = AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1)
        for step in range(3):
            tokens = global_batch(step, 4 * accumulation)
            ddp.on_train_batch_start()
            optimizer.zero_grad(set_to_none=True)
            micro_batches = rank_rows(tokens, rank, world_size).chunk(accumulation)
            for index, micro in enumerate(micro_batches):
                if index < accumulation - 1:
                    with ddp.no_sync():
                        (loss_of(ddp, micro) / accumulation).backward()
                else:
                    (loss_of(ddp, micro) / accumulation).backward()
            ddp.finish_gradient_synchronization()
            reference_step(reference, reference_optimizer, tokens, world_size, accumulation)
            for (name, p), q in zip(model.named_parameters(), reference.parameters()):
                if q.grad is None:
                    assert p.grad is None, name
                    continue
                assert_same(p.grad, q.grad, exact, f"bucket {bucket_size_mb} step {step} "
                            f"grad {name}")
            optimizer.step()
            for (name, p), q in zip(model.named_parameters(), reference.parameters()):
                assert_same(p.detach(), q.detach(), exact, f"step {step} param {name}")
        assert model.unused.grad is None
        assert torch.equal(model.layers[0].ln1.weight, torch.ones(16))  # frozen: untouched
        ddp.reducer.remove_hooks()


def zero1_matches_adamw(rank: int, world_size: int):
    model = tiny_model(seed=0)
    reference = copy.deepcopy(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = ShardedOptimizer([{"params": decay, "weight_decay": 0.1}], AdamW, lr=1e-2,
                                 betas=(0.9, 0.95))
    optimizer.add_param_group({"params": no_decay, "weight_decay": 0.0})
    reference_optimizer = AdamW(
        [{"params": [p for p in reference.parameters() if p.dim() >= 2], "weight_decay": 0.1},
         {"params": [p for p in reference.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=1e-2, betas=(0.9, 0.95))
    ddp = DDP(model)
    total = sum(p.numel() for p in model.parameters())
    largest = max(p.numel() for p in model.parameters())
    assert sum(optimizer.shard_numels) == total
    assert max(optimizer.shard_numels) - min(optimizer.shard_numels) <= largest
    local_state_numel = 0
    for step in range(4):
        tokens = global_batch(step, 4)
        for group in optimizer.param_groups + reference_optimizer.param_groups:
            group["lr"] = 1e-2 / (step + 1)  # a schedule sets lr on the outer groups
        ddp.on_train_batch_start()
        optimizer.zero_grad(set_to_none=True)
        loss_of(ddp, rank_rows(tokens, rank, world_size)).backward()
        ddp.finish_gradient_synchronization()
        # the plain optimizer steps on the same (averaged) gradients
        for p, q in zip(model.parameters(), reference.parameters()):
            q.grad = p.grad.clone()
        optimizer.step()
        reference_optimizer.step()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-7, atol=0, msg=f"step {step} {name}")
    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    local_state_numel = sum(s["exp_avg"].numel() for s in optimizer.local_optimizer.state.values())
    assert local_state_numel == optimizer.shard_numels[rank] < total
    state = optimizer.state_dict()
    gathered = [None] * world_size
    dist.all_gather_object(gathered, state)
    merged = {}
    for each in gathered:
        merged.update(each["state"])
    reference_state = reference_optimizer.state_dict()["state"]
    assert sorted(merged) == sorted(reference_state)
    for index in merged:
        torch.testing.assert_close(merged[index]["exp_avg_sq"],
                                   reference_state[index]["exp_avg_sq"], rtol=1e-7, atol=0)


def fsdp_matches_single_process(rank: int, world_size: int, compute_dtype, checkpointing: str):
    torch.use_deterministic_algorithms(True)
    exact = compute_dtype is None and world_size == 2
    model = tiny_model(seed=rank)
    reference = tiny_model(seed=0)
    apply_activation_checkpointing(model, checkpointing)
    fsdp = FSDP(model, compute_dtype=compute_dtype)
    # shards: float32, rows split across ranks, gradients shaped like their shard
    names = [name for name, _ in fsdp.named_parameters()]
    assert names == [name for name, _ in reference.named_parameters()]
    for name, p in fsdp.named_parameters():
        full = dict(reference.named_parameters())[name]
        assert p.dtype == torch.float32
        if name in fsdp.sharded_names:
            rows = -(-full.shape[0] // world_size)
            assert tuple(p.shape) == (rows, *full.shape[1:]), name
        else:
            assert p.shape == full.shape
    # in float16, tiny gradients are subnormal and AdamW's first steps amplify any rounding
    # of them to a full learning-rate step, so float16 is compared with SGD (and its grads)
    if compute_dtype is None:
        optimizer = AdamW(fsdp.parameters(), lr=1e-3, weight_decay=0.1)
        reference_optimizer = AdamW(reference.parameters(), lr=1e-3, weight_decay=0.1)
    else:
        optimizer = torch.optim.SGD(fsdp.parameters(), lr=0.1)
        reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for step in range(3):
        tokens = global_batch(step, 4)
        fsdp.on_train_batch_start()
        optimizer.zero_grad(set_to_none=True)
        loss_of(fsdp, rank_rows(tokens, rank, world_size)).backward()
        fsdp.finish_gradient_synchronization()
        for p in fsdp.parameters():
            assert p.grad is not None and p.grad.shape == p.shape
            assert p.grad.dtype == torch.float32
        reference_step(reference, reference_optimizer, tokens, world_size,
                       compute_dtype=compute_dtype)
        optimizer.step()
        for (name, p), q in zip(fsdp.named_parameters(), reference.parameters()):
            grad = p.grad
            if name in fsdp.sharded_names:  # compare this rank's rows of the full gradient
                rows = p.shape[0]
                grad = grad[: max(0, q.shape[0] - rank * rows)]
                expected = q.grad[rank * rows : (rank + 1) * rows]
            else:
                expected = q.grad
            if exact:
                assert torch.equal(grad, expected), f"step {step} grad {name}"
            else:
                torch.testing.assert_close(grad, expected, rtol=0, atol=1e-4)
        full = fsdp.gather_full_params()
        for name, expected in reference.state_dict().items():
            if exact:
                assert torch.equal(full[name], expected), f"step {step} {name}"
            else:
                torch.testing.assert_close(full[name], expected, rtol=0, atol=1e-4,
                                           msg=lambda m, name=name, step=step: f"step {step} {name}: {m}")
    with torch.no_grad():  # evaluation works too, and agrees with the reference
        tokens = global_batch(99, 2)
        torch.testing.assert_close(loss_of(fsdp, tokens), loss_of(reference, tokens),
                                   rtol=0, atol=1e-3 if compute_dtype else 0)
    assert dist.get_world_size() == world_size


def ddp_suite(rank: int, world_size: int):
    ddp_matches_single_process(rank, world_size, [None, 0, 0.001], 1)
    ddp_matches_single_process(rank, world_size, [0.001], 2)  # gradient accumulation


def fsdp_suite(rank: int, world_size: int):
    fsdp_matches_single_process(rank, world_size, None, "none")  # bitwise
    fsdp_matches_single_process(rank, world_size, torch.float16, "none")  # within 1e-4
    fsdp_matches_single_process(rank, world_size, None, "every")  # recomputation: bitwise too


def four_rank_suite(rank: int, world_size: int):
    ddp_matches_single_process(rank, world_size, [None, 0.001], 1)
    zero1_matches_adamw(rank, world_size)
    fsdp_matches_single_process(rank, world_size, None, "every_k")


def _live_tensor_bytes() -> int:
    """Bytes of every distinct tensor storage Python can reach (CPU: what the process holds)."""
    import gc
    import warnings

    gc.collect()
    storages = {}
    with warnings.catch_warnings():  # isinstance() on deprecated torch objects warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor) and obj.device.type == "cpu":
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    storages.pop(0, None)
    return sum(storages.values())


def memory_at_rest_matches_theory(rank: int, world_size: int, strategy: str, out_file: str):
    """Weights, gradients and AdamW state held by one rank after a step, in units of one
    float32 copy of the model (4 bytes x parameters); rank 0 writes it to out_file."""
    baseline = _live_tensor_bytes()
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=256, context_length=16, d_model=64,
                                      num_layers=4, num_heads=4, d_ff=128,
                                      attention_backend="torch"))
    parameters = sum(p.numel() for p in model.parameters())
    wrapped = FSDP(model) if strategy == "fsdp" else DDP(model)
    if strategy == "zero1":
        optimizer = ShardedOptimizer(list(wrapped.parameters()), AdamW, lr=1e-3)
    else:
        optimizer = AdamW(list(wrapped.parameters()), lr=1e-3)
    tokens = rank_rows(global_batch(0, 4), rank, world_size)
    wrapped.on_train_batch_start() if strategy != "fsdp" else None
    loss_of(wrapped, tokens).backward()
    wrapped.finish_gradient_synchronization()
    optimizer.step()
    held = (_live_tensor_bytes() - baseline - tokens.untyped_storage().nbytes()) / (4 * parameters)
    if rank == 0:
        with open(out_file, "w") as handle:
            handle.write(str(held))
