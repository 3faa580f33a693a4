"""get_batch, the shard index reader and the deterministic multi-shard sampler."""

import json

import numpy as np
import pytest
import torch

from lmlib.train import ShardSampler, get_batch, open_split, read_index
from tests.train.conftest import write_shards


def test_get_batch_windows_are_consecutive_and_shifted_by_one():
    data = np.arange(100)
    x, y = get_batch(data, batch_size=8, context_length=7, device="cpu")
    assert x.shape == y.shape == (8, 7) and x.dtype == torch.long
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(8, 6, dtype=torch.long))
    assert x.min() >= 0 and y.max() <= 99


def test_get_batch_is_reproducible_with_a_generator_and_covers_all_starts():
    data = np.arange(20, dtype=np.uint16)
    a = get_batch(data, 4, 5, "cpu", rng=np.random.default_rng(7))
    b = get_batch(data, 4, 5, "cpu", rng=np.random.default_rng(7))
    assert torch.equal(a[0], b[0])
    starts = get_batch(data, 2000, 5, "cpu", rng=np.random.default_rng(0))[0][:, 0]
    assert set(starts.tolist()) == set(range(15))


def test_get_batch_reads_a_memmap(tmp_path):
    np.arange(50, dtype=np.uint16).tofile(tmp_path / "t.bin")
    data = np.memmap(tmp_path / "t.bin", dtype=np.uint16, mode="r")
    x, y = get_batch(data, 3, 10, "cpu")
    assert torch.equal(y, x + 1)


def test_get_batch_rejects_unusable_devices_and_short_data():
    with pytest.raises(RuntimeError):
        get_batch(np.arange(100), 2, 4, "cuda:99")
    with pytest.raises(RuntimeError):
        get_batch(np.arange(100), 2, 4, "not-a-device")
    with pytest.raises(ValueError, match="too short"):
        get_batch(np.arange(5), 2, 5, "cpu")


def test_open_split_reads_every_shard_and_both_dtypes(tmp_path):
    for dtype in ("uint16", "uint32"):
        directory = write_shards(tmp_path / dtype, {"train": [300, 200], "val": [50]}, dtype=dtype)
        index = read_index(directory)
        shards = open_split(directory, "train", index)
        assert [len(s) for s in shards] == [300, 200]
        assert shards[0].dtype == np.dtype(dtype)
        assert shards[0].max() < index["vocab_size"]


def test_index_problems_raise_clear_errors(tmp_path):
    directory = write_shards(tmp_path / "s", {"train": [300]})
    with pytest.raises(ValueError, match="no split 'val'"):
        open_split(directory, "val")
    (directory / "train_00000.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        open_split(directory, "train")
    index = json.loads((directory / "index.json").read_text())
    (directory / "index.json").write_text(json.dumps({**index, "format": "other/2"}))
    with pytest.raises(ValueError, match="format"):
        read_index(directory)
    with pytest.raises(FileNotFoundError, match="token-shard directory"):
        read_index(tmp_path / "nowhere")


def test_shard_sampler_is_a_pure_function_of_seed_and_position():
    shards = [np.arange(0, 1000), np.arange(5000, 5400)]
    sampler = ShardSampler(shards, batch_size=4, context_length=16, seed=3)
    first = [sampler.next_batch("cpu")[0] for _ in range(5)]
    resumed = ShardSampler(shards, batch_size=4, context_length=16, seed=3)
    resumed.load_state_dict({"seed": 3, "position": 3})
    assert torch.equal(resumed.next_batch("cpu")[0], first[3])
    assert sampler.state_dict() == {"seed": 3, "position": 5}
    other_seed = ShardSampler(shards, batch_size=4, context_length=16, seed=4)
    assert not torch.equal(other_seed.batch_at(0, "cpu")[0], first[0])


def test_shard_sampler_never_crosses_shards_and_weights_them_by_length():
    shards = [np.arange(0, 3000), np.arange(100000, 101000), np.arange(9, 12)]  # last: too short
    sampler = ShardSampler(shards, batch_size=4000, context_length=8, seed=0)
    x, y = sampler.batch_at(0, "cpu")
    assert torch.equal(y, x + 1)  # a window spanning two shards would break the +1 pattern
    from_second = (x[:, 0] >= 100000).float().mean().item()
    assert from_second == pytest.approx(992 / (2992 + 992), abs=0.03)
    with pytest.raises(ValueError, match="no shard is longer"):
        ShardSampler([np.arange(5)], 2, 8, 0)
