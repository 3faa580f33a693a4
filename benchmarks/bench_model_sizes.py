"""Forward, backward and optimizer-step times and peak memory across the field's ladder of model
sizes: where the next speed-ups are.

    python benchmarks/bench_model_sizes.py [--sizes small,medium,large,xl,2.7b]
        [--contexts 128,256,512,1024] [--batch 4] [--warmup 3] [--steps 10]
        [--compiled-context 512] [--compiled-sizes small,medium] [--snapshot medium] [--out DIR]

The ladder (Brown et al. 2020's GPT-3 table, as CS336 uses it; vocabulary 10,000, SwiGLU with
the listed d_ff): small 768/3072/12 layers/12 heads (about 125M parameters), medium
1024/4096/24/16, large 1280/5120/36/20, xl 1600/6400/48/25 and 2.7b 2560/10240/32/32.

Each row is our TransformerLM with FlashAttention (ours, Triton), lmlib.optim.AdamW and our
cross-entropy, random tokens, batch --batch: --warmup steps, then --steps timed steps, each
phase timed alone between CUDA synchronisations (forward with the loss; backward; clipping and
the optimizer step). Precision: fp32, or bf16 autocast with fp32 master weights. Eager at
every context; compiled (torch.compile of the model, as lmlib.train runs it) at
--compiled-context only, since every new shape recompiles, for --compiled-sizes (all by default). Peak memory is
torch.cuda.max_memory_allocated over the timed steps. A size whose fp32 run would not fit is
reported as out of memory, not hidden.

Each row's first step includes tuning our attention kernels' tiles for its head dim, dtype and
sequence bucket: on a machine whose Triton cache is cold that is several kernel compilations per
new key (on an H200 no row of the ladder finished within 210 s), so the time is reported as
"first step s" and kept out of the medians. LMLIB_ATTENTION_AUTOTUNE=0 takes each kernel's
default tiles instead (a quick table); keeping TRITON_CACHE_DIR between runs keeps the tuning.
Each row announces itself on stderr before it starts, so a run cut short shows where it was.

--snapshot SIZE records one bf16 eager step of that size at --compiled-context with
torch.cuda.memory._record_memory_history and writes memory_snapshot.pickle to --out: drop it on
https://pytorch.org/memory_viz to see the step's allocations over time.
"""

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import header  # noqa: E402
from lmlib.model import ModelConfig, TransformerLM, cross_entropy  # noqa: E402
from lmlib.optim import AdamW, gradient_clipping  # noqa: E402

SIZES = {  # d_model, d_ff, layers, heads
    "small": (768, 3072, 12, 12),
    "medium": (1024, 4096, 24, 16),
    "large": (1280, 5120, 36, 20),
    "xl": (1600, 6400, 48, 25),
    "2.7b": (2560, 10240, 32, 32),
}
VOCAB = 10_000


def build(size: str, context: int, compiled: bool):
    d_model, d_ff, layers, heads = SIZES[size]
    config = ModelConfig(vocab_size=VOCAB, context_length=context, d_model=d_model,
                         num_layers=layers, num_heads=heads, d_ff=d_ff)
    model = TransformerLM(config, device="cuda")
    optimizer = AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    forward = torch.compile(model) if compiled else model
    return model, forward, optimizer


def measure(size: str, context: int, precision: str, compiled: bool, args) -> dict:
    """Median seconds of each phase over the timed steps, and the peak memory."""
    model, forward, optimizer = build(size, context, compiled)
    tokens = torch.randint(0, VOCAB, (args.batch, context + 1), device="cuda")
    dtype = torch.bfloat16 if precision == "bf16" else None
    phases = {"forward": [], "backward": [], "optimizer": []}

    def step(record: bool) -> None:
        marks = [time.perf_counter()]
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = cross_entropy(forward(tokens[:, :-1]), tokens[:, 1:])
        torch.cuda.synchronize()
        marks.append(time.perf_counter())
        loss.backward()
        torch.cuda.synchronize()
        marks.append(time.perf_counter())
        gradient_clipping(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        marks.append(time.perf_counter())
        if record:
            for name, start, end in zip(phases, marks, marks[1:], strict=False):
                phases[name].append(end - start)

    started = time.perf_counter()
    step(False)
    first = time.perf_counter() - started
    for _ in range(args.warmup - 1):
        step(False)
    torch.cuda.reset_peak_memory_stats()
    for _ in range(args.steps):
        step(True)
    row = {name: statistics.median(values) for name, values in phases.items()}
    row.update(first_step=first, peak_gib=torch.cuda.max_memory_allocated() / 2**30,
               parameters=sum(p.numel() for p in model.parameters()))
    return row


def snapshot(size: str, context: int, args) -> Path:
    model, forward, optimizer = build(size, context, compiled=False)
    tokens = torch.randint(0, VOCAB, (args.batch, context + 1), device="cuda")
    for record in (False, True):  # the second step, with the optimizer's state already there
        if record:
            torch.cuda.memory._record_memory_history(max_entries=200_000)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = cross_entropy(forward(tokens[:, :-1]), tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    path = args.out / "memory_snapshot.pickle"
    torch.cuda.memory._dump_snapshot(str(path))
    torch.cuda.memory._record_memory_history(enabled=None)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--contexts", default="128,256,512,1024")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compiled-context", type=int, default=512)
    parser.add_argument("--compiled-sizes", default=None, help="default: every size")
    parser.add_argument("--snapshot", default="medium", help="a size, or '' for none")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_model_sizes: needs a CUDA GPU")
    sizes = args.sizes.split(",")
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        sys.exit(f"bench_model_sizes: unknown sizes {unknown}; known: {list(SIZES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [(s, c, p, False) for s in sizes for c in map(int, args.contexts.split(","))
            for p in args.precisions.split(",")]
    compiled = args.compiled_sizes.split(",") if args.compiled_sizes else sizes
    runs += [(s, args.compiled_context, "bf16", True) for s in compiled if s in SIZES]
    print(header("Model sizes: forward, backward and optimizer step, peak memory"))
    print(f"batch {args.batch}, vocabulary {VOCAB}, median of {args.steps} steps after "
          f"{args.warmup} warm-up steps; tokens/s over the whole step\n")
    print("| size | params | context | precision | mode | forward ms | backward ms | "
          "optimizer ms | tokens/s | peak GiB | first step s |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for size, context, precision, compiled in runs:
        mode = "compiled" if compiled else "eager"
        print(f"measuring {size}, context {context}, {precision}, {mode}", file=sys.stderr,
              flush=True)
        try:
            row = measure(size, context, precision, compiled, args)
        except torch.OutOfMemoryError:
            print(f"| {size} | | {context} | {precision} | {mode} | out of memory |||||| ")
            continue
        finally:
            gc.collect()
            torch.cuda.empty_cache()
        total = row["forward"] + row["backward"] + row["optimizer"]
        print(f"| {size} | {row['parameters'] / 1e6:,.0f}M | {context} | {precision} | {mode} "
              f"| {1e3 * row['forward']:.1f} | {1e3 * row['backward']:.1f} "
              f"| {1e3 * row['optimizer']:.1f} | {args.batch * context / total:,.0f} "
              f"| {row['peak_gib']:.1f} | {row['first_step']:.1f} |", flush=True)
    if args.snapshot:
        print(f"\nmemory snapshot of one {args.snapshot} step (bf16, context "
              f"{args.compiled_context}): {snapshot(args.snapshot, args.compiled_context, args)}")


if __name__ == "__main__":
    main()
