"""Reading token shards with numpy alone and drawing training batches from them.

Shard format ("lmpipe-token-shards/1", written by lmlib.tokenizer): a directory with index.json
and raw little-endian `<split>_<NNNNN>.bin` files of uint16 or uint32 tokens, opened with
np.memmap so a corpus of any size costs no memory.

Batches are random windows. A `ShardSampler` draws batch number n from a generator seeded with
(seed, n), so its whole state is one integer: a resumed run draws exactly the batches an
uninterrupted one would have. Windows are sampled uniformly over all usable start positions of
all shards, which picks each shard in proportion to its length.
"""

import json
from pathlib import Path

import numpy as np
import torch

from lmlib.formats import TOKEN_SHARDS_FORMAT, TOKEN_SHARDS_INDEX_FILE

INDEX_FORMAT = TOKEN_SHARDS_FORMAT
INDEX_FILE = TOKEN_SHARDS_INDEX_FILE


def check_device(device: str | torch.device) -> torch.device:
    """The torch.device for `device`; raises RuntimeError when it cannot be used here."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device} asked for, but only {torch.cuda.device_count()} CUDA devices exist"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {device} asked for, but MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise RuntimeError(f"device {device} is not supported: use cpu, cuda or mps")
    return device


def _windows_to_tensors(windows: np.ndarray, device: torch.device):
    tokens = torch.from_numpy(windows.astype(np.int64))
    if device.type == "cuda":
        tokens = tokens.pin_memory().to(device, non_blocking=True)
    else:
        tokens = tokens.to(device)
    return tokens[:, :-1], tokens[:, 1:]


def get_batch(
    dataset: np.ndarray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a 1-D token array: x (batch, context) and y = x shifted by one.

    Uses `rng` (a numpy Generator) when given, else numpy's global RNG.
    """
    device = check_device(device)
    if dataset.ndim != 1:
        raise ValueError(f"dataset must be a 1-D token array, got shape {dataset.shape}")
    num_starts = len(dataset) - context_length
    if num_starts <= 0:
        raise ValueError(
            f"dataset of {len(dataset)} tokens is too short for context_length={context_length}"
        )
    if rng is None:
        starts = np.random.randint(0, num_starts, size=batch_size)
    else:
        starts = rng.integers(0, num_starts, size=batch_size)
    windows = np.stack([np.asarray(dataset[s : s + context_length + 1]) for s in starts])
    return _windows_to_tensors(windows, device)


def read_index(data_dir: str | Path) -> dict:
    """index.json of a shard directory, checked for format and for the files it names."""
    data_dir = Path(data_dir)
    index_path = data_dir / INDEX_FILE
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} not found: is {data_dir} a token-shard directory?")
    index = json.loads(index_path.read_text())
    if index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{index_path}: format {index.get('format')!r}, expected {INDEX_FORMAT!r}")
    if index.get("dtype") not in ("uint16", "uint32"):
        raise ValueError(f"{index_path}: dtype must be uint16 or uint32, got {index.get('dtype')!r}")
    for key in ("vocab_size", "eot_token_id", "splits"):
        if key not in index:
            raise ValueError(f"{index_path}: missing {key!r}")
    return index


def open_split(data_dir: str | Path, split: str, index: dict | None = None) -> list[np.memmap]:
    """Memory maps of every shard of `split`, checked against the sizes in the index."""
    data_dir = Path(data_dir)
    index = index or read_index(data_dir)
    if split not in index["splits"]:
        raise ValueError(
            f"{data_dir / INDEX_FILE} has no split {split!r}; splits: {sorted(index['splits'])}"
        )
    dtype = np.dtype(index["dtype"]).newbyteorder("<")
    shards = []
    for shard in index["splits"][split]["shards"]:
        path = data_dir / shard["file"]
        if not path.exists():
            raise FileNotFoundError(f"shard {path} named in the index is missing")
        expected_bytes = shard["tokens"] * dtype.itemsize
        if path.stat().st_size != expected_bytes:
            raise ValueError(
                f"shard {path} holds {path.stat().st_size} bytes; the index says "
                f"{shard['tokens']} tokens ({expected_bytes} bytes): the shard directory is corrupt"
            )
        if shard["tokens"]:
            shards.append(np.memmap(path, dtype=dtype, mode="r"))
    return shards


class ShardSampler:
    """Deterministic random windows over several shards; its state is (seed, position).

    With world_size > 1, batch number n is the global batch of batch_size * world_size windows
    (the same one a single process with that batch size draws) and this sampler yields rank
    `rank`'s contiguous slice of it: ranks never overlap, and the data a run sees does not
    depend on how its global batch is split.
    """

    def __init__(self, shards: list[np.ndarray], batch_size: int, context_length: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        self.shards = [s for s in shards if len(s) > context_length]
        if not self.shards:
            longest = max((len(s) for s in shards), default=0)
            raise ValueError(
                f"no shard is longer than context_length={context_length} tokens (longest: "
                f"{longest}); use a bigger corpus or a smaller context_length"
            )
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.context_length = context_length
        self.seed = seed
        self.position = 0
        # shard i owns global start indices [cumulative[i], cumulative[i + 1])
        starts_per_shard = [len(s) - context_length for s in self.shards]
        self._cumulative = np.concatenate([[0], np.cumsum(starts_per_shard)])

    @property
    def num_tokens(self) -> int:
        return sum(len(s) for s in self.shards)

    def batch_at(self, position: int, device: str | torch.device):
        """Batch number `position`: the same windows whenever it is asked for."""
        rng = np.random.default_rng([self.seed, position])
        global_starts = rng.integers(0, self._cumulative[-1], size=self.batch_size * self.world_size)
        global_starts = global_starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        shard_ids = np.searchsorted(self._cumulative, global_starts, side="right") - 1
        windows = np.stack([
            np.asarray(self.shards[i][s - self._cumulative[i] : s - self._cumulative[i]
                                      + self.context_length + 1])
            for i, s in zip(shard_ids, global_starts)
        ])
        return _windows_to_tensors(windows, check_device(device))

    def next_batch(self, device: str | torch.device):
        batch = self.batch_at(self.position, device)
        self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler {self.seed}")
        self.position = int(state["position"])
