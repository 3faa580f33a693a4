"""FlashAttention-2 (our Triton kernels) against PyTorch SDPA's FLASH and cuDNN backends.

Same tensors, same run, bfloat16, (batch, heads, seq, head_dim) with batch * seq = 16k tokens and
heads * head_dim = 2048. FLOPs: 4 * B * H * S^2 * D for the forward (half when causal), 2.5x that
for the backward. Times are medians from `triton.testing.do_bench`.

    python benchmarks/bench_attention.py [--seqs 1024,2048,...] [--json results.json]
"""

import argparse
import datetime
import json
import math
import os
import platform
import subprocess

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from lmlib.kernels import FlashAttention2

TOKENS_PER_BATCH = 16384
MODEL_WIDTH = 2048  # heads * head_dim
PEERS = {"FLASH": SDPBackend.FLASH_ATTENTION, "cuDNN": SDPBackend.CUDNN_ATTENTION}
MODES = ("fwd", "bwd", "fwd+bwd")


def forward_flops(batch: int, heads: int, seq: int, head_dim: int, causal: bool) -> float:
    flops = 4.0 * batch * heads * seq * seq * head_dim
    return flops / 2 if causal else flops


def attention_fn(name: str, causal: bool):
    if name == "ours":
        return lambda q, k, v: FlashAttention2.apply(q, k, v, causal)
    backend = PEERS[name]

    def sdpa(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return sdpa


def time_modes(fn, q, k, v, grad_out) -> dict[str, float]:
    """Median milliseconds of forward, backward alone, and forward+backward."""
    leaves = [q, k, v]
    out = fn(q, k, v)
    times = {"fwd": triton.testing.do_bench(lambda: fn(q, k, v), return_mode="median")}
    times["bwd"] = triton.testing.do_bench(
        lambda: out.backward(grad_out, retain_graph=True), grad_to_none=leaves, return_mode="median"
    )
    times["fwd+bwd"] = triton.testing.do_bench(
        lambda: fn(q, k, v).backward(grad_out), grad_to_none=leaves, return_mode="median"
    )
    return times


def bench_shape(seq: int, head_dim: int, causal: bool, heads: int = 0, batch: int = 0) -> dict:
    heads = heads or MODEL_WIDTH // head_dim
    batch = batch or max(1, TOKENS_PER_BATCH // seq)
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(batch, heads, seq, head_dim, device="cuda", generator=generator)
        .to(torch.bfloat16)
        .requires_grad_()
        for _ in range(3)
    )
    grad_out = torch.randn(batch, heads, seq, head_dim, device="cuda", generator=generator).to(
        torch.bfloat16
    )
    fwd_flops = forward_flops(batch, heads, seq, head_dim, causal)
    flops = {"fwd": fwd_flops, "bwd": 2.5 * fwd_flops, "fwd+bwd": 3.5 * fwd_flops}
    row = {"seq": seq, "head_dim": head_dim, "causal": causal, "batch": batch, "heads": heads}
    ours = FlashAttention2.apply(q, k, v, causal).float()
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        peer = F.scaled_dot_product_attention(q, k, v, is_causal=causal).float()
    row["max_abs_diff_vs_flash"] = (ours - peer).abs().max().item()
    for name in ("ours", *PEERS):
        try:
            times = time_modes(attention_fn(name, causal), q, k, v, grad_out)
        except (RuntimeError, torch.OutOfMemoryError) as error:  # a backend may refuse a shape
            print(f"  {name} failed at seq={seq} d={head_dim}: {str(error)[:120]}")
            times = dict.fromkeys(MODES, math.nan)
        for mode in MODES:
            row[f"{name}_{mode}_ms"] = times[mode]
            row[f"{name}_{mode}_tflops"] = flops[mode] / (times[mode] * 1e-3) / 1e12
    del q, k, v, grad_out
    torch.cuda.empty_cache()
    return row


def machine_line() -> str:
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        driver = "unknown"
    return (
        f"{datetime.date.today()} · {torch.cuda.get_device_name()} · driver {driver} · "
        f"torch {torch.__version__} · triton {triton.__version__} · {platform.platform()} · "
        f"{os.cpu_count()} CPUs"
    )


def print_tables(rows: list[dict]) -> None:
    for mode in MODES:
        print(f"\n### {mode}: TFLOP/s (bf16)\n")
        print("| d | causal | B×H×S | ours | SDPA FLASH | SDPA cuDNN | ours/FLASH | ours/cuDNN |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            ours, flash, cudnn = (r[f"{n}_{mode}_tflops"] for n in ("ours", *PEERS))
            print(
                f"| {r['head_dim']} | {'yes' if r['causal'] else 'no'} | "
                f"{r['batch']}×{r['heads']}×{r['seq']} | {ours:.0f} | {flash:.0f} | {cudnn:.0f} | "
                f"{ours / flash:.2f} | {ours / cudnn:.2f} |"
            )


def best_configs() -> dict[str, str]:
    from lmlib.kernels import flash_attention_triton as fa

    found = {}
    for name, kernels in (("fwd", fa._FWD), ("dkdv", fa._DKDV), ("dq", fa._DQ)):
        for size, kernel in kernels.items():
            for key, config in getattr(kernel, "cache", {}).items():
                found[f"{name}[{size}] {key}"] = str(config)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", default="1024,2048,4096,8192,16384,32768")
    parser.add_argument("--head-dims", default="64,128")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_attention needs a CUDA GPU")
    rows = []
    for head_dim in (int(d) for d in args.head_dims.split(",")):
        for causal in (False, True):
            for seq in (int(s) for s in args.seqs.split(",")):
                rows.append(bench_shape(seq, head_dim, causal))
                r = rows[-1]
                print(
                    f"d={head_dim} causal={causal} S={seq}: fwd+bwd ours "
                    f"{r['ours_fwd+bwd_tflops']:.0f} FLASH {r['FLASH_fwd+bwd_tflops']:.0f} "
                    f"cuDNN {r['cuDNN_fwd+bwd_tflops']:.0f} TFLOP/s "
                    f"(max |ours-FLASH| {r['max_abs_diff_vs_flash']:.1e})",
                    flush=True,
                )
    classic = bench_shape(16384, 64, True, heads=16, batch=1)
    print(f"\n## FlashAttention-2 vs SDPA\n\n{machine_line()}")
    print_tables(rows)
    print("\n### classic shape: 1×16 heads×S 16384×d 64, causal, bf16, forward+backward\n")
    print("| impl | fwd+bwd ms | TFLOP/s |\n|---|---|---|")
    for name in ("ours", *PEERS):
        print(
            f"| {name} | {classic[f'{name}_fwd+bwd_ms']:.2f} | "
            f"{classic[f'{name}_fwd+bwd_tflops']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            record = {"machine": machine_line(), "rows": rows, "classic": classic}
            json.dump({**record, "configs": best_configs()}, handle, indent=1)


if __name__ == "__main__":
    main()
