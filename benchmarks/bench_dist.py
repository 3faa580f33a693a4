"""Distributed training throughput and memory: lmlib.distributed (DDP, ZeRO-1, FSDP, with and
without activation checkpointing) against torch DDP and torch FSDP2 (fully_shard), at 1 and N
GPUs.

    python benchmarks/bench_dist.py --world-sizes 1,2 --shapes medium,1.3b

launches `torchrun --nproc_per_node W benchmarks/bench_dist.py --worker ...` for each world size
W and prints one markdown table: tokens/s per GPU, mean and median step time (single slow steps
occur), peak memory per GPU, MFU (989 TFLOP/s dense bf16), and the scaling efficiency of each
variant against itself on 1 GPU (by median step). The theoretical memory saving of ZeRO-1 is
8 bytes x parameters x (1 - 1/W) (the AdamW moments), of FSDP 16 bytes x parameters x (1 - 1/W)
(fp32 weights, grads and moments), each against DDP; peak memory is measured after the
warm-up steps (optimizer state allocated). Every variant trains the same
lmlib TransformerLM with bf16 autocast, torch.optim.AdamW (foreach) and synthetic tokens.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {  # name: (d_model, layers, heads, context, per-GPU micro-batch)
    "medium": (1024, 24, 16, 1024, 16),
    "1.3b": (2048, 24, 16, 1024, 8),
}
VARIANTS = ("torch_ddp", "ddp", "zero1", "torch_fsdp2", "fsdp", "ddp_ac", "fsdp_ac")
VOCAB = 50304
PEAK_FLOPS = 989e12


def build_variant(name: str, shape: str, device: torch.device):
    """(wrapped model, optimizer, finish-gradients callable, the plain model)."""
    from lmlib.distributed import DDP, FSDP, ShardedOptimizer, apply_activation_checkpointing
    from lmlib.model import ModelConfig, TransformerLM

    d_model, layers, heads, context, _ = SHAPES[shape]
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=VOCAB, context_length=context, d_model=d_model,
                                      num_layers=layers, num_heads=heads), device=device)
    if name.endswith("_ac"):
        apply_activation_checkpointing(model, "every")
    base = name.removesuffix("_ac")
    finish = None
    if base == "ddp" or base == "zero1":
        wrapped = DDP(model, bucket_size_mb=25.0)
        finish = wrapped
    elif base == "fsdp":
        wrapped = FSDP(model, compute_dtype=torch.bfloat16)
        finish = wrapped
    elif base == "torch_ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index], bucket_cap_mb=25)
    elif base == "torch_fsdp2":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16)
        for block in model.layers:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        wrapped = model
    else:
        raise ValueError(f"unknown variant {name!r}; variants: {VARIANTS}")
    # the same optimizer everywhere (torch's, which also takes FSDP2's DTensor parameters), so
    # the variants differ in their parallelism alone
    params = list(wrapped.parameters())
    kwargs = dict(lr=1e-4, weight_decay=0.1, foreach=True)
    if base == "zero1":
        optimizer = ShardedOptimizer(params, torch.optim.AdamW, **kwargs)
    else:
        optimizer = torch.optim.AdamW(params, **kwargs)
    return wrapped, optimizer, finish, model


def run_variant(name: str, shape: str, device, warmup: int, steps: int) -> dict:
    from lmlib.model import cross_entropy

    world_size, rank = dist.get_world_size(), dist.get_rank()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    # whatever earlier variants left allocated is not this variant's memory
    baseline = torch.cuda.memory_allocated(device)
    wrapped, optimizer, finish, model = build_variant(name, shape, device)
    d_model, layers, heads, context, batch = SHAPES[shape]
    generator = torch.Generator(device=device).manual_seed(rank)
    tokens = torch.randint(0, VOCAB, (batch, context + 1), device=device, generator=generator)
    x, y = tokens[:, :-1], tokens[:, 1:]
    times = []
    for step in range(warmup + steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        if finish is not None:
            finish.on_train_batch_start()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = cross_entropy(wrapped(x), y)
        loss.backward()
        if finish is not None:
            finish.finish_gradient_synchronization()
        optimizer.step()
        if step == warmup + steps - 1:  # weights, gradients and optimizer state, at rest
            state_bytes = torch.cuda.memory_allocated(device)
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - started)
        if step == warmup - 1:  # steady state: optimizer state exists, first-step buffers gone
            torch.cuda.reset_peak_memory_stats()
    peak = torch.tensor(float(torch.cuda.max_memory_allocated(device) - baseline), device=device)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    state = torch.tensor(float(state_bytes - baseline), device=device)
    dist.all_reduce(state, op=dist.ReduceOp.MAX)
    step_times = torch.tensor(times, device=device)
    dist.all_reduce(step_times, op=dist.ReduceOp.MAX)  # a step ends when the slowest rank does
    times = step_times.tolist()
    del wrapped, optimizer, finish, model, loss
    torch.cuda.empty_cache()
    meta = meta_model(shape)
    flops_per_token = meta.flops_per_token()
    parameters = sum(p.numel() for p in meta.parameters())
    median = statistics.median(times)
    return {"variant": name, "shape": shape, "world_size": world_size,
            "parameters": parameters, "tokens_per_step_per_gpu": batch * context,
            "mean_step_s": statistics.mean(times), "median_step_s": median,
            "tokens_per_s_per_gpu": batch * context / median,
            "mfu": flops_per_token * batch * context / median / PEAK_FLOPS,
            "peak_memory_gib": float(peak) / 2**30, "state_memory_gib": float(state) / 2**30}


def meta_model(shape: str):
    """The shape's model on the meta device: parameter and FLOP counts without memory."""
    from lmlib.model import ModelConfig, TransformerLM

    d_model, layers, heads, context, _ = SHAPES[shape]
    return TransformerLM(ModelConfig(vocab_size=VOCAB, context_length=context, d_model=d_model,
                                     num_layers=layers, num_heads=heads), device="meta")


def worker(args) -> None:
    from lmlib.distributed import init_distributed

    environment = init_distributed("cuda")
    results = []
    deadline = time.monotonic() + args.budget_s
    for shape in args.shapes.split(","):
        for name in args.variants.split(","):
            if shape == "1.3b" and name.endswith("_ac") and not args.ac_for_large:
                continue
            if time.monotonic() > deadline:
                break
            try:
                result = run_variant(name, shape, environment.device, args.warmup, args.steps)
            except Exception as error:  # record and go on: one variant must not sink the rest
                result = {"variant": name, "shape": shape, "world_size": dist.get_world_size(),
                          "error": f"{type(error).__name__}: {error}"[:300]}
            results.append(result)
            if environment.is_main:
                print(json.dumps(result), flush=True)
                Path(args.output).write_text(json.dumps(results, indent=1))
            if "error" in result and dist.get_world_size() > 1:
                return  # the ranks' collectives may no longer match
    dist.destroy_process_group()


def table(results: list[dict]) -> str:
    one_gpu = {(r["shape"], r["variant"]): r for r in results
               if r.get("world_size") == 1 and "error" not in r}
    ddp_memory = {(r["shape"], r["world_size"]): r for r in results
                  if r["variant"] == "ddp" and "error" not in r}
    torch_peer = {"ddp": "torch_ddp", "zero1": "torch_ddp", "fsdp": "torch_fsdp2",
                  "ddp_ac": "torch_ddp", "fsdp_ac": "torch_fsdp2"}
    by_key = {(r["shape"], r["variant"], r["world_size"]): r for r in results if "error" not in r}
    lines = ["| shape | GPUs | variant | tokens/s/GPU | mean step ms | median step ms | MFU | "
             "peak GiB/GPU | state GiB/GPU | vs torch peer (median) | scaling vs 1 GPU | "
             "state saved vs ddp (theory) | peak saved vs ddp |", "|" + "---|" * 13]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['world_size']} | {r['variant']} | error: "
                         f"{r['error']} |" + " |" * 9)
            continue
        peer = by_key.get((r["shape"], torch_peer.get(r["variant"], ""), r["world_size"]))
        ratio = f"{peer['median_step_s'] / r['median_step_s']:.3f}x" if peer else ""
        base = one_gpu.get((r["shape"], r["variant"]))
        scaling = (f"{base['median_step_s'] / r['median_step_s']:.1%}"
                   if base and r["world_size"] > 1 else "")
        saved = peak_saved = ""
        ddp = ddp_memory.get((r["shape"], r["world_size"]))
        if ddp and r["variant"] in ("zero1", "fsdp") and r["world_size"] > 1:
            # AdamW moments (8 B/param) for ZeRO-1; fp32 weights, grads and moments for FSDP
            per_param = 8 if r["variant"] == "zero1" else 16
            theory = per_param * r["parameters"] * (1 - 1 / r["world_size"]) / 2**30
            saved = f"{ddp['state_memory_gib'] - r['state_memory_gib']:.2f} ({theory:.2f})"
            peak_saved = f"{ddp['peak_memory_gib'] - r['peak_memory_gib']:.2f}"
        lines.append(
            f"| {r['shape']} | {r['world_size']} | {r['variant']} | "
            f"{r['tokens_per_s_per_gpu']:,.0f} | {1e3 * r['mean_step_s']:.1f} | "
            f"{1e3 * r['median_step_s']:.1f} | {r['mfu']:.1%} | {r['peak_memory_gib']:.2f} | "
            f"{r['state_memory_gib']:.2f} | {ratio} | {scaling} | {saved} | {peak_saved} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world-sizes", default="1,2")
    parser.add_argument("--shapes", default="medium,1.3b")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--ac-for-large", action="store_true",
                        help="also run the activation-checkpointing variants on the 1.3B shape")
    parser.add_argument("--budget-s", type=float, default=150.0,
                        help="per world size: start no new variant after this many seconds")
    parser.add_argument("--output", default=None, help="results JSON (worker) or directory")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not torch.cuda.is_available():
        raise SystemExit("bench_dist needs CUDA GPUs (run it on the accelerator machine)")
    from benchmarks.common import header

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off on these machines
    out_dir = Path(args.output or tempfile.mkdtemp(prefix="bench_dist-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for world_size in [int(w) for w in args.world_sizes.split(",")]:
        if world_size > torch.cuda.device_count():
            print(f"skipping {world_size} GPUs: only {torch.cuda.device_count()} here")
            continue
        output = out_dir / f"results_{world_size}.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={world_size}", __file__, "--worker",
                   "--shapes", args.shapes, "--variants", args.variants,
                   "--warmup", str(args.warmup), "--steps", str(args.steps),
                   "--budget-s", str(args.budget_s), "--output", str(output)]
        if args.ac_for_large:
            command.append("--ac-for-large")
        subprocess.run(command, check=False)
        if output.exists():
            results += json.loads(output.read_text())
    driver = ""
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        pass
    print(header("lmlib.distributed vs torch DDP / FSDP2 (bf16, synthetic tokens)"))
    print(f"driver {driver}, torch {torch.__version__}, {torch.cuda.device_count()} GPUs, "
          f"{args.warmup} warm-up + {args.steps} timed steps, NCCL_NVLS_ENABLE="
          f"{os.environ.get('NCCL_NVLS_ENABLE')}\n")
    print(table(results))
    (out_dir / "table.md").write_text(table(results))


if __name__ == "__main__":
    main()
