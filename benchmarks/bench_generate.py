"""Generation throughput of lmlib.infer.Engine against Hugging Face `transformers`, same run.

Shapes (random weights, bf16): GPT-2 small (d_model 768, 12 layers, 12 heads, vocab 50304,
context 1024) and ~0.5B (d_model 1024, 24 layers, 16 heads). Prompts of 128 random tokens, 256
new tokens, no stop tokens. Cases: greedy at batch 1, 8, 32, 128, 256 (distinct prompts), and
the GRPO shape: 16 prompts x 16 samples at temperature 1 (each prompt prefilled once).
Measured per case: tokens/s (new tokens of all rows over the whole call), time to first token
(a call with max_new_tokens=1: prefill plus one sample), ms per decode step
((total - first token) / 255) and the warm-up: the first call of a case, which compiles and
captures (ours) or compiles (the peer); it is not in the other figures.
The baseline `lmlib.model.generate` (one sequence, Python loop) is timed at batch 1 over 32 tokens.

The peer: the same weights exported with lmlib.hf.export, loaded as LlamaForCausalLM, and
`generate(do_sample=False, cache_implementation="static")` (transformers compiles the forward
for a static cache), batched, greedy; its outputs are compared with ours over the first 32 new
tokens (the fraction of rows whose 32 tokens agree exactly, and the mean agreeing prefix: bf16
rounding differs between the implementations, so greedy paths may part after a near tie).
A failing peer is reported, not fatal.

    python benchmarks/bench_generate.py [--quick] [--shapes gpt2-small,0.5b] [--no-peer]
        [--batches 1,8,32,128,256] [--new-tokens 256] [--prompt-tokens 128]
        [--engines compiled,graphs]
"""

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import header  # noqa: E402
from lmlib.infer import Engine, Request  # noqa: E402
from lmlib.model import ModelConfig, TransformerLM, generate  # noqa: E402

SHAPES = {
    "gpt2-small": dict(d_model=768, num_layers=12, num_heads=12),
    "0.5b": dict(d_model=1024, num_layers=24, num_heads=16),
}
COMPARED_TOKENS = 32


def build_model(shape: str) -> TransformerLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50304, context_length=1024, rope_theta=10000.0,
                         **SHAPES[shape])
    return TransformerLM(config, device="cuda", dtype=torch.bfloat16).eval()


def random_prompts(count: int, length: int, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50304, (count, length), generator=generator).tolist()


def timed(function):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    torch.cuda.synchronize()
    return result, time.perf_counter() - start


def run_ours(engine: Engine, prompts, n: int, new_tokens: int, temperature: float) -> dict:
    def requests(max_new):
        return [Request(p, n=n, max_new_tokens=max_new, temperature=temperature, seed=i)
                for i, p in enumerate(prompts)]

    _, warmup = timed(lambda: engine.generate(requests(new_tokens)))  # compiles, captures
    _, first = timed(lambda: engine.generate(requests(1)))
    completions, total = timed(lambda: engine.generate(requests(new_tokens)))
    new = sum(len(c.tokens) for c in completions)
    return dict(tokens_per_s=new / total, ttft_ms=1e3 * first, total_s=total,
                step_ms=1e3 * (total - first) / max(1, new_tokens - 1), warmup_s=warmup,
                tokens=[c.tokens for c in completions])


def run_baseline(model: TransformerLM, prompt: list[int], new_tokens: int = 32) -> dict:
    generate(model, None, prompt, max_new_tokens=4, temperature=0.0)
    _, total = timed(lambda: generate(model, None, prompt, max_new_tokens=new_tokens,
                                      temperature=0.0))
    return dict(tokens_per_s=new_tokens / total, step_ms=1e3 * total / new_tokens, total_s=total)


def load_peer(model: TransformerLM, directory: Path):
    from transformers import AutoModelForCausalLM

    from lmlib.hf import export

    export(model, None, directory, dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).cuda().eval()


def run_peer(peer, prompts, new_tokens: int) -> dict:
    input_ids = torch.tensor(prompts, device="cuda")
    attention_mask = torch.ones_like(input_ids)

    def call(max_new):
        return peer.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                             max_new_tokens=max_new, min_new_tokens=max_new,
                             cache_implementation="static", pad_token_id=0)

    with torch.no_grad():
        _, warmup = timed(lambda: call(new_tokens))  # warm-up: compilation
        _, first = timed(lambda: call(1))
        output, total = timed(lambda: call(new_tokens))
    new = output[:, input_ids.shape[1]:]
    return dict(tokens_per_s=new.numel() / total, ttft_ms=1e3 * first, total_s=total,
                step_ms=1e3 * (total - first) / max(1, new_tokens - 1), warmup_s=warmup,
                tokens=new.tolist())


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> str:
    exact, prefixes = 0, []
    for a, b in zip(ours, theirs, strict=True):
        a, b = a[:COMPARED_TOKENS], b[:COMPARED_TOKENS]
        exact += a == b
        prefix = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))
        prefixes.append(prefix)
    return (f"{exact}/{len(ours)} rows equal over {COMPARED_TOKENS}, mean prefix "
            f"{sum(prefixes) / len(prefixes):.1f}")


def row(shape, case, who, result) -> str:
    if "error" in result:
        return f"| {shape} | {case} | {who} | failed: {result['error']} | | | | | |"
    ttft = f"{result['ttft_ms']:.1f}" if "ttft_ms" in result else ""
    warmup = f"{result['warmup_s']:.1f}" if "warmup_s" in result else ""
    return (f"| {shape} | {case} | {who} | {result['tokens_per_s']:,.0f} | {ttft} | "
            f"{result['step_ms']:.2f} | {result['total_s']:.2f} | {warmup} | "
            f"{result.get('agreement', '')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="gpt2-small only, batches 1 and 32, the GRPO shape, peer at batch 1")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--batches", default="1,8,32,128,256")
    parser.add_argument("--peer-batches", default="1,32",
                        help="batches at which transformers runs (it compiles per shape)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--engines", default="compiled",
                        help="ours as: compiled (torch.compile, then CUDA graphs), graphs (CUDA "
                             "graphs of eager kernels); comma-separated")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_generate needs a CUDA GPU")
    shapes, batches = args.shapes.split(","), [int(b) for b in args.batches.split(",")]
    peer_batches = {int(b) for b in args.peer_batches.split(",")}
    if args.quick:
        shapes, batches, peer_batches = ["gpt2-small"], [1, 32], {1}
    cases = [(f"batch {b}", b, 1, 0.0) for b in batches] + [("GRPO 16x16 T=1", 16, 16, 1.0)]
    max_rows = max(prompts * n for _, prompts, n, _ in cases)
    max_seq_len = args.prompt_tokens + args.new_tokens
    lines = [header("lmlib.infer generation vs transformers"),
             f"bf16, random weights, prompts of {args.prompt_tokens} tokens, "
             f"{args.new_tokens} new tokens, greedy unless T=1\n",
             "| shape | case | engine | tokens/s | first token ms | ms/step | total s | "
             "warm-up s | greedy agreement |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for shape in shapes:
        model = build_model(shape)
        engines = {name: Engine(model, max_batch_size=max_rows, max_seq_len=max_seq_len,
                                compile=name == "compiled")
                   for name in args.engines.split(",")}
        baseline = run_baseline(model, random_prompts(1, args.prompt_tokens)[0])
        lines.append(row(shape, "batch 1", "lmlib.model.generate (32 tokens)", baseline))
        print(lines[-1], flush=True)
        peer, peer_error = None, None
        if not args.no_peer:
            try:
                peer = load_peer(model, Path(tempfile.mkdtemp(prefix="bench_generate_")))
            except Exception as error:  # noqa: BLE001 - the peer's failure is a result
                peer_error = f"{type(error).__name__}: {error}"[:200]
        for case, prompt_count, n, temperature in cases:
            prompts = random_prompts(prompt_count, args.prompt_tokens, seed=prompt_count)
            for name, engine in engines.items():
                ours = run_ours(engine, prompts, n, args.new_tokens, temperature)
                lines.append(row(shape, case, f"lmlib.infer ({name})", ours))
                print(lines[-1], flush=True)
            if args.no_peer or n != 1 or prompt_count not in peer_batches:
                continue
            if peer_error:
                theirs = {"error": peer_error}
            else:
                try:
                    theirs = run_peer(peer, prompts, args.new_tokens)
                    theirs["agreement"] = agreement(ours["tokens"], theirs["tokens"])
                except Exception as error:  # noqa: BLE001
                    traceback.print_exc()
                    theirs = {"error": f"{type(error).__name__}: {error}"[:200]}
            lines.append(row(shape, case, "transformers static cache", theirs))
            print(lines[-1], flush=True)
        del engines, engine, peer, model
        torch.cuda.empty_cache()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
