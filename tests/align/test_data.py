"""Prompt/response batches, the packed SFT dataset and batch iteration, on a byte tokenizer."""

import json

import pytest
import torch

from lmlib.align.data import PackedSFTDataset, iterate_batches, tokenize_prompt_and_output
from lmlib.tokenizer import Tokenizer

EOT = 256  # "<|endoftext|>" after the 256 bytes


def byte_tokenizer() -> Tokenizer:
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])


class TransformersLikeTokenizer:
    """encode adds a BOS (1) unless told not to, as a transformers Llama tokenizer does."""

    pad_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]


def test_tokenize_prompt_and_output_shifts_pads_and_masks():
    batch = tokenize_prompt_and_output(["ab", "c"], ["cd", "e"], byte_tokenizer())
    # whole sequences: a b c d / c e <pad> <pad>, padded with <|endoftext|>
    assert batch["input_ids"].tolist() == [[97, 98, 99], [99, 101, EOT]]
    assert batch["labels"].tolist() == [[98, 99, 100], [101, EOT, EOT]]
    assert batch["response_mask"].tolist() == [[False, True, True], [True, False, False]]
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
    assert batch["response_mask"].dtype == torch.bool


def test_tokenize_prompt_and_output_with_end_of_text():
    batch = tokenize_prompt_and_output(["a"], ["b"], byte_tokenizer(), end_of_text=True)
    assert batch["input_ids"].tolist() == [[97, 98]]
    assert batch["labels"].tolist() == [[98, EOT]]
    assert batch["response_mask"].tolist() == [[True, True]]


def test_tokenize_prompt_and_output_with_a_transformers_style_tokenizer():
    batch = tokenize_prompt_and_output(["ab", "a"], ["c", "b"], TransformersLikeTokenizer())
    # no BOS between prompt and output; padding with pad_token_id
    assert batch["input_ids"].tolist() == [[97, 98], [97, 98]]
    assert batch["labels"].tolist() == [[98, 99], [98, 0]]
    assert batch["response_mask"].tolist() == [[False, True], [True, False]]


def test_tokenize_prompt_and_output_refuses_unpaired_lists():
    with pytest.raises(ValueError, match="2 prompts but 1 outputs"):
        tokenize_prompt_and_output(["a", "b"], ["c"], byte_tokenizer())


def write_records(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


RECORDS = [{"prompt": "a", "response": "b"}, {"prompt": "cc", "response": "dd"},
           {"prompt": "e", "response": "f"}]


def test_packed_sft_dataset_windows_and_label_shift(tmp_path):
    path = write_records(tmp_path / "sft.jsonl", RECORDS)
    dataset = PackedSFTDataset(byte_tokenizer(), path, seq_length=4, shuffle=False,
                               template="{prompt}|{response}")
    a, b, c, d, e, f, bar = (ord(ch) for ch in "abcdef|")
    stream = [a, bar, b, EOT, c, c, bar, d, d, EOT, e, bar, f, EOT]
    assert dataset.tokens.tolist() == stream
    assert len(dataset) == (14 - 1) // 4 == 3
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["input_ids"].shape == item["labels"].shape == (4,)
        assert item["input_ids"].tolist() == stream[4 * i: 4 * i + 4]
        assert item["labels"].tolist() == stream[4 * i + 1: 4 * i + 5]
    assert dataset[-1]["input_ids"].tolist() == dataset[2]["input_ids"].tolist()
    with pytest.raises(IndexError):
        dataset[3]


def test_packed_sft_dataset_shuffles_documents_by_seed(tmp_path):
    path = write_records(tmp_path / "sft.jsonl", [{"prompt": str(i), "response": "x"}
                                                  for i in range(10)])
    tokenizer = byte_tokenizer()

    def stream(**options):
        return PackedSFTDataset(tokenizer, path, 3, **options).tokens.tolist()

    unshuffled = stream(shuffle=False)
    assert stream(shuffle=True, seed=1) == stream(shuffle=True, seed=1)
    assert stream(shuffle=True, seed=1) != unshuffled
    assert sorted(stream(shuffle=True, seed=1)) == sorted(unshuffled)
    documents = bytes(t for t in stream(shuffle=True, seed=1) if t != EOT).decode()
    assert sorted(documents[i: i + 2] for i in range(0, 20, 2)) == [f"{i}x" for i in range(10)]


def test_packed_sft_dataset_names_a_bad_record(tmp_path):
    path = write_records(tmp_path / "sft.jsonl", [{"prompt": "a", "response": "b"},
                                                  {"prompt": "a"}])
    with pytest.raises(ValueError, match="record 2.*'response'"):
        PackedSFTDataset(byte_tokenizer(), path, 4, shuffle=False)


def test_iterate_batches_covers_one_epoch_deterministically():
    dataset = [{"x": torch.tensor([i, 10 * i])} for i in range(5)]
    batches = list(iterate_batches(dataset, 2, shuffle=False))
    assert [batch["x"][:, 0].tolist() for batch in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0]["x"].shape == (2, 2)

    def order(seed):
        batches = iterate_batches(dataset, 2, shuffle=True, seed=seed)
        return [i for batch in batches for i in batch["x"][:, 0].tolist()]

    assert order(3) == order(3)
    assert sorted(order(3)) == list(range(5))
    assert order(3) != order(4)
