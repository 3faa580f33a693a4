"""Worker functions run on every rank by tests/dist (importable by spawned processes).

Each distributed run is compared, step after step, with two single-process runs on the same
global batch:

- `full_batch_step`: one forward and backward over the whole global batch, the loss its mean.
  This is what data parallelism stands for; in float32 parameters and gradients must stay
  within a few units in the last place of it (the tolerances below).
- `micro_batch_step`: each rank's rows as a separate micro-batch, the losses scaled so the
  gradients sum to the global mean: the ranks' own arithmetic. In float32 on two ranks the
  distributed run must equal it bitwise, which shows lmlib.distributed adds no rounding of its own
  (gradient scaling, communication, the layout of gathered weights).

Why the full batch cannot be matched bitwise: a row's activations, loss term and activation
gradients are bitwise the same whichever batch it sits in, and the loss scaling is exact (with
32 token rows, the global mean's 1/32 per row is a rank's 1/16 halved, and halving the two-rank
sum is exact), so the split shows only in the reductions over the batch that form the parameter
gradients (`rows_agree_between_full_and_split_batch` checks all of this). A weight gradient
is grad_out^T @ x over every token row: one process sums the 32 rows inside one matmul kernel,
which chains fused multiply-adds (with two rows it returns fma(g1, x1, round(g0 * x0))), while
each rank must round its own partial sum before the ranks add them. That rounding cannot be
undone by any order of communication: even a 2-row matmul against two 1-row matmuls summed
differs in a quarter to a third of its entries. RMSNorm gains and the embedding table (sums over
rows) are affected the same way.

Tolerances are in units of eps * max|expected| of each tensor (eps = 2**-23, one ulp of 1.0),
a normwise measure: a gradient entry that nearly cancels has no meaningful relative error. The
first step's gradients (same weights, so the reduction order alone) differ by at most 2.8 such
units in these tests, its parameters by at most 1.7 (AdamW normalises the gradient). Each step
adds its own rounding to the drift carried from the last, so the bounds grow with the steps
taken: 8 and 4 units per step. The worst seen over three steps (DDP with accumulation, two and
four ranks, FSDP) is 13.1 of the 24 allowed for gradients, 3.5 of 12 for parameters.

With ModelConfig.batch_invariant_gradients (lmlib.model.batch_invariant) every parameter
gradient is a fixed halving tree over the batch of per-sequence sums: each of two ranks computes
one subtree of the full batch's tree and their sum is its root, so `batch_invariant_suite`
compares DDP and FSDP with `full_batch_step` bitwise, gradients and parameters, every step.
"""

import copy

import torch
import torch.distributed as dist

from lmlib.distributed import DDP, FSDP, ShardedOptimizer, apply_activation_checkpointing
from lmlib.model import Embedding, Linear, ModelConfig, TransformerLM, cross_entropy
from lmlib.optim import AdamW

VOCAB, CONTEXT = 32, 8
# against one full-batch pass: ulps of each tensor's largest entry, per training step taken
FULL_BATCH_GRADIENT_ULPS = 8
FULL_BATCH_PARAMETER_ULPS = 4


def tiny_model(seed: int = 0, **overrides) -> TransformerLM:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=VOCAB, context_length=CONTEXT, d_model=16, num_layers=2,
                         num_heads=2, d_ff=32, attention_backend="torch", **overrides)
    return TransformerLM(config)


def global_batch(step: int, rows: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randint(0, VOCAB, (rows, CONTEXT + 1), generator=generator)


def rank_rows(tokens: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s contiguous, equal slice of the global batch (as lmlib.train splits it)."""
    assert tokens.shape[0] % world_size == 0, "the global batch must split evenly"
    per_rank = tokens.shape[0] // world_size
    return tokens[rank * per_rank : (rank + 1) * per_rank]


def loss_of(model, tokens: torch.Tensor) -> torch.Tensor:
    return cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])


def full_batch_step(model, optimizer, tokens) -> None:
    """Single process, one forward and backward over the whole global batch (its mean loss)."""
    optimizer.zero_grad(set_to_none=True)
    loss_of(model, tokens).backward()
    optimizer.step()


def micro_batch_step(model, optimizer, tokens, world_size: int, accumulation: int = 1) -> None:
    """Single process, the ranks' arithmetic: every rank's micro-batches in rank order, losses
    scaled so the accumulated gradients are the mean over the global batch."""
    optimizer.zero_grad(set_to_none=True)
    for rank in range(world_size):
        for micro in rank_rows(tokens, rank, world_size).chunk(accumulation):
            (loss_of(model, micro) / (world_size * accumulation)).backward()
    optimizer.step()


def mixed_precision_step(model, optimizer, tokens, world_size: int,
                         compute_dtype: torch.dtype) -> None:
    """The usual mixed-precision recipe: a copy whose Linear and Embedding weights are cast
    computes each rank's gradients in that dtype (unscaled, since halving subnormal float16
    values rounds), they are summed in it and averaged into float32 masters."""
    optimizer.zero_grad(set_to_none=True)
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


def assert_same(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert torch.equal(actual, expected), f"{what}: max diff {(actual - expected).abs().max()}"


def assert_within_ulps(actual: torch.Tensor, expected: torch.Tensor, ulps: float, what: str,
                       scale: torch.Tensor | None = None) -> None:
    """|actual - expected| <= ulps * eps * scale everywhere; scale defaults to max|expected|
    (pass the whole tensor's when `expected` is one rank's rows of it)."""
    scale = expected.abs().max() if scale is None else scale
    unit = torch.finfo(expected.dtype).eps * scale
    error = (actual - expected).abs().max()
    assert error <= ulps * unit, (f"{what}: differs by {float(error / unit):.2f} ulps of its "
                                  f"largest entry, more than {ulps}")


def ddp_matches_single_process(rank: int, world_size: int, bucket_sizes, accumulation: int,
                               batch_invariant: bool = False):
    """batch_invariant: ModelConfig.batch_invariant_gradients; on two ranks gradients and
    parameters then equal the full-batch pass bitwise, accumulating two micro-batches too."""
    exact = world_size == 2 and accumulation == 1
    exact_full = world_size == 2 and batch_invariant and accumulation <= 2
    for bucket_size_mb in bucket_sizes:
        # ranks differ until the broadcast
        model = tiny_model(seed=rank, tie_embeddings=True,
                           batch_invariant_gradients=batch_invariant)
        model.layers[0].ln1.weight.requires_grad_(False)  # a frozen parameter
        unused = torch.nn.Parameter(torch.ones(3))  # requires grad, never used
        model.register_parameter("unused", unused)
        ddp = DDP(model, bucket_size_mb=bucket_size_mb)
        full_reference, micro_reference = copy.deepcopy(model), copy.deepcopy(model)
        if rank == 0:
            assert len(ddp.reducer.buckets) >= (4 if bucket_size_mb == 0.001 else 1)
        optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        full_optimizer = AdamW(full_reference.parameters(), lr=1e-2, weight_decay=0.1)
        micro_optimizer = AdamW(micro_reference.parameters(), lr=1e-2, weight_decay=0.1)
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
            full_batch_step(full_reference, full_optimizer, tokens)
            micro_batch_step(micro_reference, micro_optimizer, tokens, world_size, accumulation)
            for (name, p), full, micro in zip(model.named_parameters(),
                                              full_reference.parameters(),
                                              micro_reference.parameters()):
                what = f"bucket {bucket_size_mb} step {step} grad {name}"
                if full.grad is None:
                    assert p.grad is None, name
                    continue
                if exact:
                    assert_same(p.grad, micro.grad, what)
                if exact_full:
                    assert_same(p.grad, full.grad, f"{what} (full batch)")
                assert_within_ulps(p.grad, full.grad, FULL_BATCH_GRADIENT_ULPS * (step + 1),
                                   what)
            optimizer.step()
            for (name, p), full, micro in zip(model.named_parameters(),
                                              full_reference.parameters(),
                                              micro_reference.parameters()):
                what = f"bucket {bucket_size_mb} step {step} param {name}"
                if exact:
                    assert_same(p.detach(), micro.detach(), what)
                if exact_full:
                    assert_same(p.detach(), full.detach(), f"{what} (full batch)")
                assert_within_ulps(p.detach(), full.detach(),
                                   FULL_BATCH_PARAMETER_ULPS * (step + 1), what)
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


def fsdp_matches_single_process(rank: int, world_size: int, compute_dtype, checkpointing: str,
                                batch_invariant: bool = False):
    """batch_invariant: ModelConfig.batch_invariant_gradients; in float32 on two ranks
    gradients and parameters then equal the full-batch pass bitwise."""
    torch.use_deterministic_algorithms(True)
    exact = compute_dtype is None and world_size == 2
    exact_full = exact and batch_invariant
    model = tiny_model(seed=rank, batch_invariant_gradients=batch_invariant)
    # the full batch in float32, else the mixed-precision recipe
    reference = tiny_model(seed=0, batch_invariant_gradients=batch_invariant)
    micro_reference = copy.deepcopy(reference)  # float32 only: the ranks' own arithmetic
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
        micro_optimizer = AdamW(micro_reference.parameters(), lr=1e-3, weight_decay=0.1)
    else:
        optimizer = torch.optim.SGD(fsdp.parameters(), lr=0.1)
        reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)

    def check(actual, expected, micro, what, ulps, scale=None):
        """float32: bitwise equal to the micro-batches (two ranks), within `ulps` of the full
        batch, bitwise equal to it too with batch-invariant gradients (two ranks); float16:
        within 1e-4 of the mixed-precision recipe."""
        if compute_dtype is not None:
            torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4,
                                       msg=lambda message: f"{what}: {message}")
            return
        if exact:
            assert_same(actual, micro, what)
        if exact_full:
            assert_same(actual, expected, f"{what} (full batch)")
        assert_within_ulps(actual, expected, ulps, what, scale)

    for step in range(3):
        tokens = global_batch(step, 4)
        fsdp.on_train_batch_start()
        optimizer.zero_grad(set_to_none=True)
        loss_of(fsdp, rank_rows(tokens, rank, world_size)).backward()
        fsdp.finish_gradient_synchronization()
        for p in fsdp.parameters():
            assert p.grad is not None and p.grad.shape == p.shape
            assert p.grad.dtype == torch.float32
        if compute_dtype is None:
            full_batch_step(reference, reference_optimizer, tokens)
            micro_batch_step(micro_reference, micro_optimizer, tokens, world_size)
        else:
            mixed_precision_step(reference, reference_optimizer, tokens, world_size,
                                 compute_dtype)
        optimizer.step()
        micro_grads = [q.grad for q in micro_reference.parameters()]
        for (name, p), q, micro in zip(fsdp.named_parameters(), reference.parameters(),
                                       micro_grads):
            grad, expected = p.grad, q.grad
            if name in fsdp.sharded_names:  # compare this rank's rows of the full gradient
                rows = p.shape[0]
                grad = grad[: max(0, q.shape[0] - rank * rows)]
                expected = expected[rank * rows : (rank + 1) * rows]
                micro = micro[rank * rows : (rank + 1) * rows] if micro is not None else None
            check(grad, expected, micro, f"step {step} grad {name}",
                  FULL_BATCH_GRADIENT_ULPS * (step + 1), scale=q.grad.abs().max())
        full = fsdp.gather_full_params()
        micro_state = micro_reference.state_dict()
        for name, expected in reference.state_dict().items():
            check(full[name], expected, micro_state[name], f"step {step} {name}",
                  FULL_BATCH_PARAMETER_ULPS * (step + 1))
    with torch.no_grad():  # evaluation works too, and agrees with the references
        tokens = global_batch(99, 2)
        loss = loss_of(fsdp, tokens)
        if exact:
            assert_same(loss, loss_of(micro_reference, tokens), "evaluation loss")
        if exact_full:
            assert_same(loss, loss_of(reference, tokens), "evaluation loss (full batch)")
        if compute_dtype is None:  # weights within the parameters' allowance after 3 steps
            assert_within_ulps(loss, loss_of(reference, tokens), FULL_BATCH_PARAMETER_ULPS * 3,
                               "evaluation loss")
        else:
            torch.testing.assert_close(loss, loss_of(reference, tokens), rtol=0, atol=1e-3)
    assert dist.get_world_size() == world_size


def rows_agree_between_full_and_split_batch(rank: int, world_size: int):
    """One process, no wrapper: what splitting the global batch in two changes. The logits and
    the gradient reaching every layer's output are bitwise the same for each row in the full
    batch and in its half (with the loss halved); the parameter gradients, sums over rows,
    are what differ, within one step's FULL_BATCH_GRADIENT_ULPS."""
    torch.use_deterministic_algorithms(True)
    model = tiny_model(seed=0)
    tokens = global_batch(0, 4)
    captured: list[torch.Tensor] = []

    def capture_output_grad(module, args, output) -> None:
        output.register_hook(captured.append)

    for module in (model.token_embeddings, *model.layers):
        module.register_forward_hook(capture_output_grad)

    def forward_backward(rows: torch.Tensor, loss_scale: float):
        captured.clear()
        logits = model(rows[:, :-1])
        (cross_entropy(logits, rows[:, 1:]) * loss_scale).backward()
        return logits.detach(), list(captured)

    full_logits, full_output_grads = forward_backward(tokens, 1.0)
    full_parameter_grads = [p.grad for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    halves = [forward_backward(half, 0.5) for half in tokens.chunk(2)]  # grads accumulate
    assert_same(torch.cat([logits for logits, _ in halves]), full_logits, "logits")
    for index, full in enumerate(full_output_grads):
        split = torch.cat([output_grads[index] for _, output_grads in halves])
        assert_same(split, full, f"gradient of the output of layer {index} (backward order)")
    for (name, p), full in zip(model.named_parameters(), full_parameter_grads):
        assert_within_ulps(p.grad, full, FULL_BATCH_GRADIENT_ULPS, f"grad {name}")


def ddp_suite(rank: int, world_size: int):
    ddp_matches_single_process(rank, world_size, [None, 0, 0.001], 1)
    ddp_matches_single_process(rank, world_size, [0.001], 2)  # gradient accumulation


def fsdp_suite(rank: int, world_size: int):
    fsdp_matches_single_process(rank, world_size, None, "none")  # bitwise
    fsdp_matches_single_process(rank, world_size, torch.float16, "none")  # within 1e-4
    fsdp_matches_single_process(rank, world_size, None, "every")  # recomputation: bitwise too


def batch_invariant_suite(rank: int, world_size: int):
    """ModelConfig.batch_invariant_gradients on: bitwise equal to one full-batch pass."""
    ddp_matches_single_process(rank, world_size, [None, 0.001], 1, batch_invariant=True)
    ddp_matches_single_process(rank, world_size, [0.001], 2, batch_invariant=True)
    fsdp_matches_single_process(rank, world_size, None, "none", batch_invariant=True)
    fsdp_matches_single_process(rank, world_size, None, "every", batch_invariant=True)


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
