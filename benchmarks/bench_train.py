"""Training throughput of our TransformerLM + AdamW against a torch.nn reference, same run.

Shape: GPT-2 small (d_model 768, 12 layers, 12 heads, context 1024, vocab 50304, SwiGLU d_ff 2048,
RoPE, RMSNorm, untied embeddings), batch 32, bf16 autocast, fp32 master weights, torch.compile.
Ours: lmlib.model.TransformerLM (attention_backend "torch", and "flash_triton" when
lmlib.kernels imports), lmlib.optim.AdamW, gradient_clipping, cross_entropy.
Reference: the same model written with torch.nn layers, fused QKV, F.scaled_dot_product_attention
(flash), F.cross_entropy, fused torch.optim.AdamW and clip_grad_norm_.
One step = forward, backward, clipping, optimizer step. MFU = 6N + 12 L d T FLOPs per token
(PaLM appendix B) at the measured tokens/s over 989 TFLOP/s (dense bf16).

    python benchmarks/bench_train.py [--steps 20] [--warmup 5] [--batch 32] [--no-compile]
"""

import argparse
import datetime
import gc
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmlib.model import ModelConfig, TransformerLM, cross_entropy  # noqa: E402
from lmlib.optim import AdamW, gradient_clipping  # noqa: E402

PEAK_FLOPS = 989e12
SHAPE = dict(vocab_size=50304, context_length=1024, d_model=768, num_layers=12, num_heads=12,
             d_ff=2048, rope_theta=10000.0)


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


def build(variant: str):
    if variant == "reference":
        model = ReferenceLM(**SHAPE).cuda()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95),
                                      weight_decay=0.1, fused=True)

        def loss_fn(logits, targets):
            return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

        def clip(params):
            return torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
    else:
        backend = variant.removeprefix("ours-")
        if backend == "sdpa":  # diagnostic: our model with torch's SDPA in place of our attention
            import lmlib.model.attention as attention

            attention.MultiHeadSelfAttention._attend = lambda self, q, k, v, offset: (
                F.scaled_dot_product_attention(q, k, v, is_causal=True))
            backend = "torch"
        model = TransformerLM(ModelConfig(**SHAPE, attention_backend=backend), device="cuda")
        optimizer = AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
        loss_fn = cross_entropy

        def clip(params):
            return gradient_clipping(params, 1.0)
    return model, optimizer, loss_fn, clip


def measure(variant: str, args) -> dict:
    torch.manual_seed(0)
    model, optimizer, loss_fn, clip = build(variant)
    compiled = torch.compile(model) if args.compile else model
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
    return result


def flash_kernels_available() -> bool:
    try:
        from lmlib.kernels import flash_attention  # noqa: F401
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--variants", default="reference,ours-torch,ours-flash_triton",
                        help="also ours-sdpa: a diagnostic with torch's SDPA inside our model")
    parser.add_argument("--explain", action="store_true",
                        help="print torch.compile graph breaks of our model's forward per backend")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_train needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    variants = args.variants.split(",")
    if "ours-sdpa" in variants:  # it patches our attention class for the rest of the process
        variants = [v for v in variants if v != "ours-sdpa"] + ["ours-sdpa"]
    if "ours-flash_triton" in variants and not flash_kernels_available():
        print("lmlib.kernels.flash_attention not importable: skipping ours-flash_triton")
        variants.remove("ours-flash_triton")
    if args.explain:
        for variant in variants:
            if variant.startswith("ours-") and variant != "ours-sdpa":
                model = TransformerLM(ModelConfig(**SHAPE, attention_backend=variant[5:]),
                                      device="cuda")
                ids = torch.randint(0, SHAPE["vocab_size"], (2, 1024), device="cuda")
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    explanation = torch._dynamo.explain(model)(ids)
                print(f"{variant}: {explanation.graph_count} graphs, "
                      f"{explanation.graph_break_count} breaks: "
                      f"{[str(b.reason)[:200] for b in explanation.break_reasons[:3]]}")
                torch._dynamo.reset()
    results = []
    for variant in variants:
        try:
            results.append(measure(variant, args))
            print(f"measured {variant}: {results[-1]}", flush=True)
        except Exception as error:  # report the others even if one variant breaks
            print(f"{variant} failed: {type(error).__name__}: {str(error)[:2000]}", flush=True)
        gc.collect()
        torch.cuda.empty_cache()
        torch._dynamo.reset()
    reference = next((r for r in results if r["variant"] == "reference"), None)
    print()
    print(f"bench_train, {datetime.date.today().isoformat()}: GPT-2 small shape "
          f"({results[0]['parameters'] / 1e6:.1f}M params), batch {args.batch} x 1024, bf16 autocast, "
          f"compile={args.compile}, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print()
    print("| variant | tokens/s | MFU | step ms | x reference | peak GiB | loss |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = r["tokens_per_second"] / reference["tokens_per_second"] if reference else float("nan")
        print(f"| {r['variant']} | {r['tokens_per_second']:,.0f} | {100 * r['mfu']:.1f}% | "
              f"{r['step_ms']:.1f} | {ratio:.2f}x | {r['peak_gib']:.1f} | {r['loss']:.3f} |")


if __name__ == "__main__":
    main()
