"""MMLU log-likelihood scoring throughput: lmlib.eval against transformers, same weights, same run.

Input: real MMLU test questions (Hendrycks' CSVs, from ../shared/data/mmlu or --mmlu-dir), the
first --per-subject of each subject, 5-shot prompts from the dev split exactly as
lm-evaluation-harness writes them, tokenized with the GPT-2 tokenizer (../shared/data/gpt2)
and cut from the left to the model's 1,024-token window. The model: random weights of the
GPT-2-small shape (or --shape), bf16.

Ours: `lmlib.eval.score_continuations` on our TransformerLM (one row per question for its four
one-token letters, longest first, projecting only the scored position to the vocabulary), eager
(`compile=False`) and compiled (torch.compile, dynamic shapes: the default on CUDA; its
compilation is reported apart, from the untimed first pass).
The peer: the same weights exported with `lmlib.hf.export` and loaded by transformers, scored
the way lm-evaluation-harness's HFLM does it (its logits cache: one forward per question,
batches sorted longest first and right-padded with an attention mask, full logits, log-softmax,
the four letters read at the last context position). Both at the same batch size, timed on a
second pass over all questions after an untimed one (steady state: our attention's autotuning
is done once per sequence-length bucket and cached). Reported:
questions/s and the fraction of questions where both pick the same letter (bf16 near ties
aside, 100%). `--profile N` then profiles N batches of each side: GPU kernel time against wall
time (is the side bound by the GPU?) and its largest kernels.

    python benchmarks/bench_eval.py [--per-subject 40] [--batch-size 32] [--shape gpt2-small]
        [--device cuda] [--mmlu-dir DIR] [--gpt2-dir DIR] [--profile N]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import find_shared_dir, header  # noqa: E402
from lmlib.eval import encode_pair, score_continuations  # noqa: E402
from lmlib.model import ModelConfig, TransformerLM  # noqa: E402
from lmlib.tasks import MMLU_CONTINUATIONS, load_mmlu, mmlu_prompt, mmlu_shots  # noqa: E402
from lmlib.tokenizer import Tokenizer  # noqa: E402

SHAPES = {
    "tiny": dict(d_model=64, num_layers=2, num_heads=4),
    "gpt2-small": dict(d_model=768, num_layers=12, num_heads=12),
    "0.5b": dict(d_model=1024, num_layers=24, num_heads=16),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device):
    sync(device)
    start = time.perf_counter()
    result = function()
    sync(device)
    return result, time.perf_counter() - start


def requests_for(questions, dev, tokenizer, window: int):
    shots, requests = {}, []
    for example in questions:
        if example.subject not in shots:
            shots[example.subject] = mmlu_shots(dev, example.subject, 5)
        prompt = mmlu_prompt(example, shots[example.subject])
        for letter in MMLU_CONTINUATIONS:
            context, continuation = encode_pair(tokenizer, prompt, letter)
            requests.append((context[-window:], continuation))
    return requests


def ours(model, requests, batch_size, compile: bool = False):
    scores = score_continuations(model, requests, batch_size=batch_size, compile=compile)
    return [max(range(4), key=lambda j, i=i: scores[4 * i + j].logprob)
            for i in range(len(requests) // 4)]


@torch.no_grad()
def peer(model, requests, batch_size, device):
    """lm-evaluation-harness's HFLM with its logits cache: one forward per question."""
    questions = [(requests[4 * i][0], [requests[4 * i + j][1][0] for j in range(4)])
                 for i in range(len(requests) // 4)]
    order = sorted(range(len(questions)), key=lambda i: -len(questions[i][0]))
    choices = [0] * len(questions)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        longest = max(len(questions[i][0]) for i in batch)
        ids = torch.zeros(len(batch), longest, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(batch):
            context = questions[i][0]
            ids[row, : len(context)] = torch.tensor(context)
            mask[row, : len(context)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        scores = torch.log_softmax(logits.float(), dim=-1)
        for row, i in enumerate(batch):
            last = scores[row, len(questions[i][0]) - 1, questions[i][1]]
            choices[i] = int(last.argmax())
    return choices


def profile_batches(label: str, run, batches: int) -> str:
    """GPU kernel time against wall time over `batches` batches, and the largest kernels."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        run()
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    kernels = [e for e in profiler.key_averages()
               if e.device_type == torch.autograd.DeviceType.CUDA and e.self_device_time_total > 0]
    kernels.sort(key=lambda e: e.self_device_time_total, reverse=True)
    gpu = sum(e.self_device_time_total for e in kernels) / 1e6
    lines = [f"### profile {label}: {1e3 * wall / batches:.1f} ms wall per batch (profiler on), "
             f"{1e3 * gpu / batches:.1f} ms of GPU kernels"]
    lines += [f"  {e.self_device_time_total / 1e3 / batches:7.2f} ms {e.count / batches:6.1f}x  "
              f"{e.key[:90]}" for e in kernels[:12]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-subject", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shape", default="gpt2-small", choices=sorted(SHAPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mmlu-dir", type=Path, default=find_shared_dir() / "data" / "mmlu")
    parser.add_argument("--gpt2-dir", type=Path, default=find_shared_dir() / "data" / "gpt2")
    parser.add_argument("--profile", type=int, default=0, metavar="BATCHES")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    from lmlib.hf import export

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = Tokenizer.from_files(args.gpt2_dir / "gpt2_vocab.json",
                                     args.gpt2_dir / "gpt2_merges.txt", ["<|endoftext|>"])
    test, dev = load_mmlu(args.mmlu_dir, "test"), load_mmlu(args.mmlu_dir, "dev")
    per_subject: dict[str, int] = {}
    questions = []
    for example in test:
        per_subject[example.subject] = per_subject.get(example.subject, 0) + 1
        if per_subject[example.subject] <= args.per_subject:
            questions.append(example)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50304, context_length=1024, **SHAPES[args.shape])
    model = TransformerLM(config).eval()
    requests = requests_for(questions, dev, tokenizer, config.context_length)
    tokens = sum(len(context) for context, _ in requests[::4])
    directory = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    export(model, None, directory, dtype=dtype)
    theirs = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device).eval()
    model = model.to(device=device, dtype=dtype)
    # a whole untimed pass each first: our attention kernels autotune once per sequence-length
    # bucket (then cached on disk), which a short warm-up would leave inside the timed pass
    ours(model, requests, args.batch_size), peer(theirs, requests, args.batch_size, device)
    _, compile_seconds = timed(lambda: ours(model, requests, args.batch_size, True), device)
    ours_choices, ours_seconds = timed(lambda: ours(model, requests, args.batch_size), device)
    compiled_choices, compiled_seconds = timed(
        lambda: ours(model, requests, args.batch_size, True), device)
    peer_choices, peer_seconds = timed(lambda: peer(theirs, requests, args.batch_size, device),
                                       device)
    same = sum(a == b for a, b in zip(ours_choices, peer_choices, strict=True))
    compiled_same = sum(a == b for a, b in zip(compiled_choices, peer_choices, strict=True))
    count = len(questions)
    print(header("MMLU log-likelihood scoring: lmlib.eval vs transformers (harness method)"))
    print(f"{count} questions ({args.per_subject} per subject, 5-shot, {tokens:,} prompt tokens), "
          f"{args.shape} shape, random weights, {str(dtype).removeprefix('torch.')}, "
          f"batch {args.batch_size}, {device}\n")
    print("| scorer | questions/s | seconds | same letter as transformers |")
    print("|---|---:|---:|---:|")
    print(f"| lmlib.eval.score_continuations, compile=False | {count / ours_seconds:,.1f} | "
          f"{ours_seconds:.2f} | {same}/{count} |")
    print(f"| the same, compiled (the default on CUDA) | {count / compiled_seconds:,.1f} | "
          f"{compiled_seconds:.2f} | {compiled_same}/{count} |")
    print(f"| transformers, harness method | {count / peer_seconds:,.1f} | {peer_seconds:.2f} "
          f"| {same}/{count} |")
    print(f"\nratio: {peer_seconds / ours_seconds:.2f}x eager, "
          f"{peer_seconds / compiled_seconds:.2f}x compiled (its first pass, compilation "
          f"included: {compile_seconds:.1f} s)")
    if args.profile and device.type == "cuda":
        some = requests[: 4 * args.batch_size * args.profile]
        print(profile_batches("ours", lambda: ours(model, some, args.batch_size), args.profile))
        print(profile_batches("transformers", lambda: peer(theirs, some, args.batch_size, device),
                              args.profile))


if __name__ == "__main__":
    main()
