"""A fake token-shard directory in the lmpipe-token-shards/1 format, for the trainer tests."""

import json
from pathlib import Path

import numpy as np
import pytest

VOCAB = 64
EOT = 0


def predictable_tokens(count: int, seed: int) -> np.ndarray:
    """Documents where each token mostly follows from the last (t -> 5t + 3 mod 63, plus 1),
    so a tiny model's loss falls fast; EOT closes each document."""
    rng = np.random.default_rng(seed)
    tokens, current = [], 1
    while len(tokens) < count:
        for _ in range(int(rng.integers(20, 60))):
            tokens.append(current)
            current = (5 * current + 3) % 63 + 1 if rng.random() > 0.1 else int(rng.integers(1, 64))
        tokens.append(EOT)
    return np.asarray(tokens[:count])


def write_shards(directory: Path, split_sizes: dict[str, list[int]], dtype: str = "uint16",
                 seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split_number, (split, sizes) in enumerate(split_sizes.items()):
        shards = []
        for number, size in enumerate(sizes):
            tokens = predictable_tokens(size, seed + 100 * split_number + number)
            name = f"{split}_{number:05d}.bin"
            tokens.astype(np.dtype(dtype).newbyteorder("<")).tofile(directory / name)
            shards.append({"file": name, "tokens": size, "documents": int((tokens == EOT).sum())})
        splits[split] = {
            "tokens": sum(sizes), "documents": sum(s["documents"] for s in shards), "shards": shards,
        }
    index = {"format": "lmpipe-token-shards/1", "dtype": dtype, "vocab_size": VOCAB,
             "eot_token_id": EOT, "splits": splits}
    (directory / "index.json").write_text(json.dumps(index))
    return directory


@pytest.fixture
def shard_dir(tmp_path) -> Path:
    return write_shards(tmp_path / "shards", {"train": [6000, 3000], "val": [1500]})
