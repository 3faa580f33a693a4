"""What a finished run reports besides numbers: the loss-curve PNG and sample generations.

matplotlib and lmlib.tokenizer are imported lazily: the GPU machines may lack the first, and
lmlib.train must import with torch and numpy alone.
"""

import json
from pathlib import Path

from lmlib.formats import MERGES_FILE, TOKENIZER_CONFIG_FILE, VOCAB_FILE
from lmlib.model.generate import generate
from lmlib.plots import pyplot

SPECIAL_TOKENS = ("<|endoftext|>",)


def read_log(log_path: Path) -> list[dict]:
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def plot_loss_curve(records: list[dict], out_path: Path) -> Path | None:
    """Train and validation loss against tokens seen; None when matplotlib is missing."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "eval" and "val_loss" in r]
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        axes.plot(*zip(*train), label="train")
    if val:
        axes.plot(*zip(*val), marker="o", label="validation")
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.set_title("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)
    return out_path


def load_tokenizer(tokenizer_dir: Path):
    """lmlib.tokenizer.Tokenizer from a directory written by Tokenizer.save (tokenizer.json
    names the special tokens), or from bare GPT-2 style vocab.json + merges.txt."""
    from lmlib.tokenizer import Tokenizer

    tokenizer_dir = Path(tokenizer_dir)
    if (tokenizer_dir / TOKENIZER_CONFIG_FILE).exists():
        return Tokenizer.from_directory(tokenizer_dir)
    vocab, merges = tokenizer_dir / VOCAB_FILE, tokenizer_dir / MERGES_FILE
    for path in (vocab, merges):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {tokenizer_dir} a tokenizer directory?")
    return Tokenizer.from_files(vocab, merges, special_tokens=list(SPECIAL_TOKENS))


def sample_generations(model, tokenizer, config, eot_token_id: int | None) -> list[dict]:
    """A few completions of the configured prompts, seeded so reruns print the same text."""
    samples = []
    for number, prompt in enumerate(config.sample_prompts):
        completion = generate(
            model, tokenizer, prompt, max_new_tokens=config.sample_max_new_tokens,
            temperature=config.sample_temperature, top_p=config.sample_top_p,
            eos=eot_token_id, seed=config.seed + number,
        )
        samples.append({"prompt": prompt, "completion": completion})
    return samples

