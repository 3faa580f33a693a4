"""Training throughput of our TransformerLM + AdamW against a torch.nn reference, same run.

Shape: GPT-2 small (d_model 768, 12 layers, 12 heads, context 1024, vocab 50304, SwiGLU d_ff 2048,
RoPE, RMSNorm, untied embeddings), batch 32, bf16 autocast, fp32 master weights, torch.compile.
Ours: lmlib.model.TransformerLM (attention_backend "torch", and "flash_triton" when
lmlib.kernels imports), lmlib.optim.AdamW, gradient_clipping, cross_entropy.
Reference: the same model written with torch.nn layers, fused QKV, F.scaled_dot_product_attention
(cuDNN flash), fused torch.optim.AdamW and clip_grad_norm_, and F.cross_entropy through
torch.compile as well (`reference:ce=eager` runs it eagerly on float32 logits, as this
benchmark first did: about 20% slower, which flattered us). Both have the same parameters
(checked). Ours runs as lmlib.train runs it: the model compiled, our cross_entropy (its Triton
kernels) outside it.
One step = forward, backward, clipping, optimizer step. MFU = 6N + 12 L d T FLOPs per token
(PaLM appendix B) at the measured tokens/s over 989 TFLOP/s (dense bf16).

Diagnostic variants add options after a colon: `ours-flash_triton:ce=torch:opt=foreach` (our
plain-ops loss, our multi-tensor AdamW), `:ce=compiled` (our plain-ops loss through
torch.compile), `:qkv=separate` (three q/k/v matmuls), `:packed=no` (q, k, v through the
per-tensor attention path, RoPE by Inductor, rather than lmlib.kernels.packed_attention).
`--shape gpt2-medium` runs the 350M shape (d_model 1024, 24 layers, 16 heads, d_ff 2752).
`--profile N` prints the kernels that take the most GPU time over N steps of each variant.
`--first-step` measures instead the time from launch to the end of the first training step of
`python -m lmlib.train --config gpt2-small` (random tokens, batch 32 x 1024, compile on), twice
in fresh processes sharing fresh Triton and Inductor cache directories: the first run compiles
and autotunes everything, the second finds it all on disk.

    python benchmarks/bench_train.py [--shape gpt2-small] [--steps 20] [--warmup 5] [--batch 32]
        [--no-compile]
        [--variants reference,ours-torch,ours-flash_triton] [--profile 2] [--out DIR]
    python benchmarks/bench_train.py --first-step
"""

import argparse
import datetime
import gc
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmlib.formats import TOKEN_SHARDS_FORMAT, TOKEN_SHARDS_INDEX_FILE  # noqa: E402
from lmlib.model import ModelConfig, TransformerLM, cross_entropy  # noqa: E402
from lmlib.optim import AdamW, gradient_clipping  # noqa: E402

PEAK_FLOPS = 989e12
SHAPES = {  # --shape; d_ff is 8/3 d_model rounded up to 64, our default for SwiGLU
    "gpt2-small": dict(vocab_size=50304, context_length=1024, d_model=768, num_layers=12,
                       num_heads=12, d_ff=2048, rope_theta=10000.0),
    "gpt2-medium": dict(vocab_size=50304, context_length=1024, d_model=1024, num_layers=24,
                        num_heads=16, d_ff=2752, rope_theta=10000.0),
}
SHAPE = SHAPES["gpt2-small"]  # main() sets the one asked for


class ReferenceRope(nn.Module):
    """Adjacent-pair rotation, as in our model."""

    def __init__(self, head_dim, context, theta):
        super().__init__()
        frequencies = theta ** (-torch.arange(0, head_dim, 2).double() / head_dim)
        angles = torch.outer(torch.arange(context).double(), frequencies)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x):  # (batch, heads, seq, head_dim)
        seq = x.shape[-2]
        cos, sin = self.cos[:seq], self.sin[:seq]
        pairs = x.float().unflatten(-1, (-1, 2))
        even, odd = pairs[..., 0], pairs[..., 1]
        return torch.stack((even * cos - odd * sin, even * sin + odd * cos), -1).flatten(-2).type_as(x)


class ReferenceBlock(nn.Module):
    def __init__(self, d, heads, d_ff, context, theta):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.w1, self.w3 = nn.Linear(d, d_ff, bias=False), nn.Linear(d, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d, bias=False)
        self.rope = ReferenceRope(d // heads, context, theta)

    def forward(self, x):
        batch, seq, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, seq, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q), self.rope(k)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, seq, d))
        h = self.ln2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class ReferenceLM(nn.Module):
    def __init__(self, vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            ReferenceBlock(d_model, num_heads, d_ff, context_length, rope_theta)
            for _ in range(num_layers))
        self.ln = nn.RMSNorm(d_model, eps=1e-5)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def parse_variant(variant: str) -> tuple[str, dict]:
    """"ours-flash_triton:ce=torch:opt=foreach" -> ("ours-flash_triton", {"ce": ..., "opt": ...})."""
    name, *options = variant.split(":")
    parsed = dict(option.split("=", 1) for option in options)
    unknown = set(parsed) - {"ce", "opt", "qkv", "packed"}
    if unknown or not (name == "reference" or name.startswith("ours-")):
        raise ValueError(f"cannot read variant {variant!r}")
    return name, parsed


def build_model(name: str, options: dict):
    """Our model or the reference, on the GPU (the patches of the diagnostics stay for good)."""
    torch.manual_seed(0)
    if name == "reference":
        return ReferenceLM(**SHAPE).cuda()
    backend = name.removeprefix("ours-")
    import lmlib.model.attention as attention

    attention.MultiHeadSelfAttention.fuse_qkv = options.get("qkv", "fused") == "fused"
    attention.MultiHeadSelfAttention.packed = options.get("packed", "yes") == "yes"
    if backend == "sdpa":  # diagnostic: our model with torch's SDPA in place of our attention
        attention.MultiHeadSelfAttention._attend = lambda self, q, k, v, offset: (
            F.scaled_dot_product_attention(q, k, v, is_causal=True))
        backend = "torch"
    return TransformerLM(ModelConfig(**SHAPE, attention_backend=backend), device="cuda")


def build_training(name: str, options: dict, model):
    """Optimizer, loss function and clipping of a variant."""
    ce = options.get("ce", "compiled" if name == "reference" else "auto")
    if name == "reference":
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95),
                                      weight_decay=0.1, fused=True)

        def loss_fn(logits, targets):
            return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

        def clip(params):
            return torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
    else:
        fused = {"auto": None, "fused": True, "foreach": False}[options.get("opt", "auto")]
        optimizer = AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                          fused=fused)

        def loss_fn(logits, targets):
            implementation = "torch" if ce == "compiled" else ce
            return cross_entropy(logits, targets, implementation=implementation)

        def clip(params):
            return gradient_clipping(params, 1.0)
    if ce == "compiled":
        loss_fn = torch.compile(loss_fn)
    elif name == "reference" and ce != "eager":
        raise ValueError(f"the reference's loss is ce=compiled or ce=eager, not {ce!r}")
    return optimizer, loss_fn, clip


PROFILE_GROUPS = {  # kernel-name fragments -> a group, first match wins
    "matmul (cuBLAS)": ("gemm", "nvjet", "sm90_", "cutlass", "xmma", "cublas"),
    "attention": ("flash", "attn", "_fwd_kernel", "_bwd_", "fmha"),
    "cross-entropy": ("cross_entropy", "log_softmax", "nll_loss"),
    "optimizer + clipping": ("adam", "multi_tensor", "foreach", "norm_kernel", "lpnorm"),
    "inductor fused ops": ("triton_",),
}


def profile_steps(label: str, step, steps: int, out_dir: Path | None) -> str:
    """Kernel table (sorted by GPU time) of `steps` steps; returns a short per-group summary."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        for i in range(steps):
            step(i)
        torch.cuda.synchronize()
    averages = profiler.key_averages()
    timed = [e for e in averages if getattr(e, "self_device_time_total", 0) > 0]
    kernels = [e for e in timed if e.device_type == torch.autograd.DeviceType.CUDA]
    if not kernels:  # older profilers: keep what is not a CPU-side op
        kernels = [e for e in timed if not e.key.startswith(("aten::", "autograd::", "cuda"))]
    kernels.sort(key=lambda e: e.self_device_time_total, reverse=True)
    total = sum(e.self_device_time_total for e in kernels)
    groups: dict[str, float] = {}
    for e in kernels:
        name = e.key.lower()
        group = next((g for g, keys in PROFILE_GROUPS.items() if any(k in name for k in keys)),
                     "other (eager elementwise, copies, ...)")
        groups[group] = groups.get(group, 0.0) + e.self_device_time_total
    lines = [f"### profile {label}: {total / 1000 / steps:.1f} ms GPU time per step"]
    lines += [f"- {g}: {t / 1000 / steps:.2f} ms/step ({100 * t / total:.0f}%)"
              for g, t in sorted(groups.items(), key=lambda kv: -kv[1])]
    lines.append("top kernels (ms/step, calls/step, name):")
    lines += [f"  {e.self_device_time_total / 1000 / steps:7.2f} {e.count / steps:6.1f}  "
              f"{e.key[:100]}" for e in kernels[:14]]
    summary = "\n".join(lines)
    if out_dir is not None:
        table = averages.table(sort_by="self_device_time_total", row_limit=80,
                               max_name_column_width=90)
        safe = label.replace(":", "_").replace("=", "-")
        (out_dir / f"profile_{safe}.txt").write_text(summary + "\n\n" + table)
    return summary


def measure(variant: str, model, compiled, args) -> dict:
    name, options = parse_variant(variant)
    optimizer, loss_fn, clip = build_training(name, options, model)
    generator = torch.Generator(device="cuda").manual_seed(0)
    batches = [torch.randint(0, SHAPE["vocab_size"], (args.batch, SHAPE["context_length"] + 1),
                             device="cuda", generator=generator) for _ in range(4)]

    def step(i):
        tokens = batches[i % len(batches)]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(compiled(tokens[:, :-1]), tokens[:, 1:])
        loss.backward()
        clip(model.parameters())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    started = time.perf_counter()
    for i in range(args.warmup):
        loss = step(i)
    torch.cuda.synchronize()
    warmup_seconds = time.perf_counter() - started
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(args.steps):
        loss = step(i)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000
    tokens_per_second = args.batch * SHAPE["context_length"] * args.steps / seconds
    flops_per_token = TransformerLM(**SHAPE, device="meta").flops_per_token()
    result = {
        "variant": variant, "tokens_per_second": tokens_per_second,
        "mfu": flops_per_token * tokens_per_second / PEAK_FLOPS,
        "step_ms": 1000 * seconds / args.steps, "loss": float(loss.detach()),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "warmup_s": warmup_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if args.profile:
        result["profile"] = profile_steps(variant, step, args.profile, args.out)
    return result


def write_random_shards(directory: Path, tokens: int, vocab_size: int) -> Path:
    """A token-shard directory (lmpipe-token-shards/1) of uniform random ids: the time to the
    first step does not depend on what the tokens say."""
    import json

    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    ids = np.random.default_rng(0).integers(0, vocab_size, tokens, dtype=np.uint16)
    ids.astype("<u2").tofile(directory / "train_00000.bin")
    index = {"format": TOKEN_SHARDS_FORMAT, "dtype": "uint16", "vocab_size": vocab_size,
             "eot_token_id": 0, "splits": {"train": {"tokens": tokens, "documents": 1, "shards": [
                 {"file": "train_00000.bin", "tokens": tokens, "documents": 1}]}}}
    (directory / TOKEN_SHARDS_INDEX_FILE).write_text(json.dumps(index))
    return directory


def time_to_first_step(batch: int) -> list[dict]:
    """Two fresh `python -m lmlib.train` processes over one pair of fresh cache directories."""
    import json
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        shards = write_random_shards(scratch / "shards", 4_000_000, SHAPE["vocab_size"])
        env = {**os.environ, "TRITON_CACHE_DIR": str(scratch / "triton-cache"),
               "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor-cache")}
        for attempt in ("first run (cold caches)", "second run (warm caches)"):
            command = [sys.executable, "-m", "lmlib.train", "--config", "gpt2-small",
                       "--data-dir", str(shards), "--run-dir", str(scratch / attempt[:5]),
                       "--set", f"batch_size={batch}", "--set", "grad_accum_steps=1",
                       "--set", "max_steps=2", "--set", "model.vocab_size=50304"]
            started = time.perf_counter()
            finished = subprocess.run(command, env=env, capture_output=True, text=True,
                                      cwd=Path(__file__).resolve().parents[1])
            wall = time.perf_counter() - started
            if finished.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}")
            stats = json.loads(finished.stdout[finished.stdout.index("{\n"):])
            statuses = [line for line in finished.stdout.splitlines() if line.startswith("[status")]
            results.append({"run": attempt, "seconds_to_first_step": stats["seconds_to_first_step"],
                            "process_seconds": wall, "status": statuses})
            print(f"{attempt}: first step after {stats['seconds_to_first_step']:.1f} s "
                  f"(process {wall:.1f} s)", flush=True)
            for line in statuses:
                print("   ", line, flush=True)
    return results


def flash_kernels_available() -> bool:
    try:
        from lmlib.kernels import flash_attention  # noqa: F401
    except Exception:
        return False
    return True


def driver_version() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--variants", default="reference,ours-torch,ours-flash_triton",
                        help="also ours-sdpa (torch's SDPA inside our model) and options after "
                             "colons: :ce=torch|triton|compiled|eager :opt=foreach|fused "
                             ":qkv=separate :packed=no")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="profile this many steps of each variant and print the top kernels")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the full profiler tables into this directory")
    parser.add_argument("--first-step", action="store_true",
                        help="measure the time to the first training step, cold and warm")
    args = parser.parse_args()
    global SHAPE
    SHAPE = SHAPES[args.shape]
    if not torch.cuda.is_available():
        sys.exit("bench_train needs a CUDA GPU")
    if args.first_step:
        results = time_to_first_step(args.batch)
        print(f"\nbench_train --first-step, {datetime.date.today().isoformat()}: gpt2-small "
              f"preset, batch {args.batch} x 1024, compile on; machine: {platform.platform()}, "
              f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, "
              f"triton {triton_version()}\n")
        print("| run | seconds to first step | process seconds |")
        print("|---|---:|---:|")
        for r in results:
            print(f"| {r['run']} | {r['seconds_to_first_step']:.1f} | "
                  f"{r['process_seconds']:.1f} |")
        return
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    variants = args.variants.split(",")
    for variant in variants:
        parse_variant(variant)
    if any(v.startswith("ours-flash_triton") for v in variants) and not flash_kernels_available():
        print("lmlib.kernels.flash_attention not importable: skipping ours-flash_triton")
        variants = [v for v in variants if not v.startswith("ours-flash_triton")]
    # ours-sdpa patches our attention class for the rest of the process: it goes last
    variants.sort(key=lambda v: v.startswith("ours-sdpa"))
    results, built_key, model, compiled = [], None, None, None
    for variant in variants:
        name, options = parse_variant(variant)
        key = (name, options.get("qkv", "fused"), options.get("packed", "yes"))
        try:
            if key != built_key:  # variants differing only in loss/optimizer share one compile
                model = compiled = None
                gc.collect()
                torch.cuda.empty_cache()
                torch._dynamo.reset()
                model = build_model(name, options)
                compiled = torch.compile(model) if args.compile else model
                built_key = key
            results.append(measure(variant, model, compiled, args))
            printable = {k: v for k, v in results[-1].items() if k != "profile"}
            print(f"measured {variant}: {printable}", flush=True)
            if "profile" in results[-1]:
                print(results[-1]["profile"], flush=True)
        except Exception as error:  # report the others even if one variant breaks
            print(f"{variant} failed: {type(error).__name__}: {str(error)[:2000]}", flush=True)
            built_key = None
        gc.collect()
        torch.cuda.empty_cache()
    counts = {r["parameters"] for r in results}
    if len(counts) > 1:
        print(f"WARNING: parameter counts differ between variants: {sorted(counts)}")
    reference = next((r for r in results if r["variant"] == "reference"), None)
    print()
    print(f"bench_train, {datetime.date.today().isoformat()}: {args.shape} shape "
          f"({results[0]['parameters'] / 1e6:.1f}M params, equal in all variants: "
          f"{len(counts) == 1}), batch {args.batch} x 1024, bf16 autocast, "
          f"compile={args.compile}, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"GPU {torch.cuda.get_device_name()}, driver {driver_version()}, "
          f"torch {torch.__version__}, "
          f"triton {triton_version()}")
    print()
    print("| variant | tokens/s | MFU | step ms | x reference | peak GiB | loss |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = r["tokens_per_second"] / reference["tokens_per_second"] if reference else float("nan")
        print(f"| {r['variant']} | {r['tokens_per_second']:,.0f} | {100 * r['mfu']:.1f}% | "
              f"{r['step_ms']:.1f} | {ratio:.2f}x | {r['peak_gib']:.1f} | {r['loss']:.3f} |")


def triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "absent"
    return triton.__version__


if __name__ == "__main__":
    main()
