"""GRPO on GSM8K on one GPU: the time split between generation and training, rollout
throughput and the reward curve; and a GRPO step on a Qwen2.5-Math-1.5B-shaped checkpoint.

    python benchmarks/bench_grpo.py [--part gsm8k|qwen|both] [--gsm8k-dir DIR] [--gpt2-dir DIR]
        [--sft-steps 600] [--grpo-steps 40] [--prompts 32] [--group-size 8] [--qwen-steps 3]
        [--stacks-every S]

Part gsm8k: a GPT-2-small-shaped model (124M, GPT-2's tokenizer, context 512) from random
weights, since no pretrained weights can be downloaded here: SFT on GSM8K's worked solutions
(the first 6,473 train problems, padded, response-only loss), then GRPO (lmlib.align.run_grpo,
its defaults but for the batch: --prompts questions x --group-size samples a step, 256 new
tokens at most, reinforce with the group baseline) on the other 1,000 train questions. Greedy
test accuracy (the "#### N" answer) on the first --eval-problems test problems before and after
GRPO. Reported per step: reward, format and answer reward, response length, seconds generating
and training; and rollout tokens/s (response tokens sampled / generation seconds, the first
step, which compiles the engine's step, reported apart).

Part qwen: the shape of Qwen2.5-Math-1.5B (hidden 1536, 28 layers, 12 query and 2 key/value
heads, SwiGLU 8960, vocabulary 151,936, tied embeddings, q/k/v biases) with random weights
from transformers, saved as safetensors, loaded by lmlib.hf.load, then --qwen-steps GRPO steps
(3 by default: the first compiles, the second meets new sequence lengths, the third is steady)
with the options a user would pick on one H200: bf16 autocast with fp32 master weights, a bf16
engine, 8 questions x 8 samples, micro-batches of 8, the clipped loss, FlashAttention (ours). Its
tokenizer is GPT-2's padded to the vocabulary with placeholder tokens (a random model samples
every id; they are special tokens, so a sampled one re-encodes to its own id). Reported:
seconds per step split, peak GPU memory.

--stacks-every S prints every thread's Python stack each S seconds (to stderr): where a run cut
short by a time limit was spending its time.
"""

import argparse
import dataclasses
import faulthandler
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import find_shared_dir, header  # noqa: E402
from lmlib.align import GRPOConfig, SFTConfig, run_grpo, run_sft  # noqa: E402
from lmlib.align.tasks import accuracy, gsm8k_task  # noqa: E402
from lmlib.eval.metrics import wilson_interval  # noqa: E402
from lmlib.formats import TRAIN_LOG_FILE  # noqa: E402
from lmlib.infer import Engine  # noqa: E402
from lmlib.model import ModelConfig, TransformerLM, load_model, save_model  # noqa: E402
from lmlib.tokenizer import Tokenizer  # noqa: E402

SHAPES = {"gpt2-small": dict(d_model=768, num_layers=12, num_heads=12),
          "tiny": dict(d_model=64, num_layers=2, num_heads=4)}  # tiny: a CPU smoke run
LABELLED = 6473  # GSM8K train problems with their solutions for SFT; the other 1,000: GRPO's
QWEN_MATH_1_5B = dict(
    model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=151936,
    hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, max_position_embeddings=4096, rope_theta=10000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False, hidden_act="silu")


def progress(record: dict) -> None:
    """Each log record as it happens (flushed): a run cut short still shows how far it got."""
    print(f"  [{time.strftime('%H:%M:%S')}] {record}", flush=True)


def gpt2_tokenizer(gpt2_dir: Path, vocab_size: int | None = None) -> Tokenizer:
    tokenizer = Tokenizer.from_files(gpt2_dir / "gpt2_vocab.json", gpt2_dir / "gpt2_merges.txt",
                                     ["<|endoftext|>"])
    if vocab_size:  # placeholders up to the model's vocabulary, special tokens so that a
        # sampled placeholder re-encodes to its own id (as plain text it would take ~8 tokens,
        # and the responses the loop re-tokenizes would grow eightfold)
        placeholders = [f"<|unused_{i}|>" for i in range(len(tokenizer.vocab), vocab_size)]
        tokenizer = Tokenizer(dict(tokenizer.vocab), tokenizer.merges,
                              ["<|endoftext|>", *placeholders])
    return tokenizer


def test_accuracy(model_dir: Path, tokenizer: Tokenizer, task, device: str) -> str:
    engine = Engine(load_model(model_dir, device=device).eval(), max_batch_size=256,
                    dtype=torch.bfloat16 if device == "cuda" else None)
    value = accuracy(engine, tokenizer, task)
    low, high = wilson_interval(round(value * len(task.prompts)), len(task.prompts))
    return f"{value:.3f} [{low:.3f}, {high:.3f}] of {len(task.prompts)}"


def step_table(log_path: Path, rows_per_step: int) -> tuple[list[dict], str]:
    """Per-step records of a GRPO log, with the seconds of each step (the log's are running
    totals), and the steady-state rollout throughput."""
    records = [r for r in map(json.loads, log_path.read_text().splitlines())
               if r.get("kind") == "train" and "reward" in r]
    previous = {"generation_seconds": 0.0, "training_seconds": 0.0}
    for record in records:
        for key in ("generation_seconds", "training_seconds"):
            record[key + "_step"] = record[key] - previous[key]
        previous = record
    steady = records[1:] or records
    sampled = sum(r["response_length"] * rows_per_step for r in steady)
    seconds = sum(r["generation_seconds_step"] for r in steady)
    first = records[0]
    summary = (f"rollout throughput after step 1: {sampled / seconds:,.0f} response tokens/s "
               f"({sampled:,.0f} tokens in {seconds:.1f} s); step 1 (compiles the engine's "
               f"step): {first['generation_seconds_step']:.1f} s generating, "
               f"{first['training_seconds_step']:.1f} s training")
    return records, summary


def gsm8k_part(args, work: Path) -> None:
    tokenizer = gpt2_tokenizer(args.gpt2_dir)
    tokenizer_dir = work / "tokenizer"
    tokenizer.save(tokenizer_dir)
    train, test = gsm8k_task(args.gsm8k_dir, "train"), gsm8k_task(args.gsm8k_dir, "test")
    labelled, unlabelled = train.subset(0, LABELLED), train.subset(LABELLED, None, False)
    held_out = test.subset(0, args.eval_problems)
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=50304, context_length=512,
                                      **SHAPES[args.shape]))
    save_model(model, work / "start")
    started = time.perf_counter()
    run_sft(work / "start", tokenizer_dir, labelled, None, work / "sft_run", work / "sft",
            SFTConfig(steps=args.sft_steps, batch_size=32, learning_rate=6e-4,
                      min_learning_rate=6e-5, warmup_steps=50, eval_problems=0,
                      device=args.device, log_interval=100), progress)
    sft_seconds = time.perf_counter() - started
    before = test_accuracy(work / "sft" / "model", tokenizer, held_out, args.device)
    config = GRPOConfig(steps=args.grpo_steps, prompts_per_step=args.prompts,
                        group_size=args.group_size, micro_batch_size=32, learning_rate=1e-5,
                        min_learning_rate=1e-6, eval_problems=0, log_interval=1,
                        checkpoint_interval=10_000, device=args.device)
    started = time.perf_counter()
    result = run_grpo(work / "sft" / "model", tokenizer_dir, unlabelled, None,
                      work / "grpo_run", work / "grpo", config, progress)
    grpo_seconds = time.perf_counter() - started
    after = test_accuracy(work / "grpo" / "model", tokenizer, held_out, args.device)
    records, summary = step_table(work / "grpo" / TRAIN_LOG_FILE,
                                  args.prompts * args.group_size)
    print(header(f"GRPO on GSM8K: {args.shape} shape from random weights, {args.device}"))
    print(f"SFT {args.sft_steps} steps x 32 solutions: {sft_seconds:.0f} s. GRPO "
          f"{args.grpo_steps} steps x {args.prompts} questions x {args.group_size} samples: "
          f"{grpo_seconds:.0f} s ({result.generation_seconds:.0f} s generating, "
          f"{result.training_seconds:.0f} s training)\n")
    print(f"greedy test accuracy: after SFT {before}; after GRPO {after}\n{summary}\n")
    print("| step | reward | format | answer | response tokens | s generating | s training |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in records:
        print(f"| {r['step']} | {r['reward']:.3f} | {r['format_reward']:.3f} | "
              f"{r['answer_reward']:.3f} | {r['response_length']:.0f} | "
              f"{r['generation_seconds_step']:.2f} | {r['training_seconds_step']:.2f} |")


def qwen_part(args, work: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from lmlib.hf import load

    hf_dir = work / "qwen_hf"
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda"):
        hf_model = Qwen2ForCausalLM(Qwen2Config(**QWEN_MATH_1_5B)).to(torch.bfloat16)
    hf_model.save_pretrained(hf_dir)
    del hf_model
    torch.cuda.empty_cache()
    model, config = load(hf_dir, device="cuda", context_length=1024)
    # lmlib.hf.load picks our plain attention (exact against transformers); on a GPU a user
    # trains with FlashAttention
    config = dataclasses.replace(config, attention_backend="auto")
    policy = TransformerLM(config, device="cuda")
    policy.load_state_dict(model.state_dict())
    del model
    save_model(policy, work / "qwen_start")
    del policy
    torch.cuda.empty_cache()
    prepared = time.perf_counter() - started
    tokenizer_dir = work / "qwen_tokenizer"
    gpt2_tokenizer(args.gpt2_dir, QWEN_MATH_1_5B["vocab_size"]).save(tokenizer_dir)
    train = gsm8k_task(args.gsm8k_dir, "train")
    task = dataclasses.replace(train, responses=None)
    torch.cuda.reset_peak_memory_stats()
    grpo_config = GRPOConfig(steps=args.qwen_steps, prompts_per_step=8, group_size=8,
                             micro_batch_size=8, loss_type="grpo_clip", epochs_per_rollout=1,
                             learning_rate=1e-6, eval_problems=0, log_interval=1,
                             checkpoint_interval=10_000, device="cuda")
    started = time.perf_counter()
    progress({"kind": "status", "message": f"checkpoint ready in {prepared:.0f} s"})
    result = run_grpo(work / "qwen_start", tokenizer_dir, task, None, work / "qwen_run",
                      work / "qwen_grpo", grpo_config, progress)
    seconds = time.perf_counter() - started
    records, summary = step_table(work / "qwen_grpo" / TRAIN_LOG_FILE, 64)
    peak = torch.cuda.max_memory_allocated() / 2**30
    parameters = sum(p.numel() for p in load_model(work / "qwen_start").parameters())
    print(header("A GRPO step on a Qwen2.5-Math-1.5B-shaped checkpoint (random weights)"))
    print(f"{parameters / 1e9:.2f}B parameters; made, saved by transformers and loaded by "
          f"lmlib.hf.load in {prepared:.0f} s; {args.qwen_steps} GRPO steps of 8 x 8 rollouts "
          f"(up to 256 new tokens), grpo_clip, micro-batches of 8, bf16 autocast: {seconds:.0f} s "
          f"({result.generation_seconds:.1f} s generating, {result.training_seconds:.1f} s "
          f"training); peak GPU memory {peak:.1f} GiB\n{summary}")
    for r in records:
        print(f"step {r['step']}: loss {r['loss']:.4f}, grad norm {r['grad_norm']:.3f}, "
              f"response length {r['response_length']:.0f}, entropy {r['entropy']:.2f}, "
              f"{r['generation_seconds_step']:.1f} s generating, "
              f"{r['training_seconds_step']:.1f} s training")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("gsm8k", "qwen", "both"), default="both")
    shared = find_shared_dir() / "data"
    parser.add_argument("--gsm8k-dir", type=Path, default=shared / "math" / "gsm8k")
    parser.add_argument("--gpt2-dir", type=Path, default=shared / "gpt2")
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--grpo-steps", type=int, default=40)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--eval-problems", type=int, default=256)
    parser.add_argument("--qwen-steps", type=int, default=3)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--stacks-every", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    if args.stacks_every > 0:
        faulthandler.dump_traceback_later(args.stacks_every, repeat=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_grpo: needs a CUDA GPU (or --device cpu --shape tiny for a smoke run)")
    if args.part != "gsm8k" and args.device != "cuda":
        sys.exit("bench_grpo: the qwen part needs a CUDA GPU")
    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    if args.part in ("gsm8k", "both"):
        gsm8k_part(args, work)
    if args.part in ("qwen", "both"):
        qwen_part(args, work)


if __name__ == "__main__":
    main()
