"""Post-training data: prompt/response pairs as masked batches, and a packed SFT dataset.

The CS336 assignment-5 reference interface; names and semantics kept.

Notable:
- a tokenizer is ours (`lmlib.tokenizer.Tokenizer`) or a transformers one, told apart by duck
  typing: an `encode` that takes `add_special_tokens` is called with it False, so no BOS is
  slipped between prompt and response; the end-of-text token is our "<|endoftext|>" or the
  transformers `eos_token_id`; padding is `pad_token_id` when set, else the end-of-text id,
  else 0 (padding is masked out of every loss, so its id only has to be a valid one);
- `tokenize_prompt_and_output` encodes prompt and response separately and concatenates the ids,
  so the boundary is exact (encoding the joined string could merge tokens across it);
  `response_mask` is a torch.bool tensor over the label positions, True on response tokens
  only (the reference's tensor is used as a 0/1 mask; a bool one serves the same and cannot
  be mistaken for a weight);
- `PackedSFTDataset` packs whole documents, each followed by the end-of-text token, into one
  stream and cuts it into windows of seq_length + 1 tokens that overlap by one, so every token
  after the first is a label exactly once; the tail shorter than a window is dropped. Loss
  covers prompts as well as responses, as the reference's packed SFT does;
- shuffles take a seed and go through a `torch.Generator`, the same order on any machine.
"""

from __future__ import annotations

import gzip
import inspect
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from lmlib.tokenizer import DOCUMENT_SEPARATOR

END_OF_TEXT = DOCUMENT_SEPARATOR  # the token pretraining put between documents


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` with nothing added: ours as it is, a transformers tokenizer with
    add_special_tokens=False."""
    try:
        takes_flag = "add_special_tokens" in inspect.signature(tokenizer.encode).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it plainly
        takes_flag = False
    if takes_flag:
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def end_of_text_id(tokenizer: Any) -> int | None:
    """The id of "<|endoftext|>" (ours) or the eos token (transformers); None when it has none."""
    if hasattr(tokenizer, "token_id"):
        try:
            return tokenizer.token_id(END_OF_TEXT)
        except KeyError:
            return None
    return getattr(tokenizer, "eos_token_id", None)


def padding_id(tokenizer: Any) -> int:
    """`pad_token_id` when the tokenizer sets one, else the end-of-text id, else 0."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None:
        return pad
    end = end_of_text_id(tokenizer)
    return end if end is not None else 0


def tokenize_prompt_and_output(prompt_strs: Sequence[str], output_strs: Sequence[str],
                               tokenizer: Any, *, end_of_text: bool = False
                               ) -> dict[str, torch.Tensor]:
    """Prompts and outputs tokenized separately, concatenated and right-padded to the longest.

    Returns (batch, longest - 1) tensors: "input_ids" (long, the sequence without its last
    token), "labels" (long, without its first: the next token at each position) and
    "response_mask" (bool, True where the label is an output token). `end_of_text`: append the
    tokenizer's end-of-text token to each output when it has one (DPO's rendering).
    """
    if len(prompt_strs) != len(output_strs):
        raise ValueError(f"{len(prompt_strs)} prompts but {len(output_strs)} outputs: "
                         "expected one output per prompt")
    if not prompt_strs:
        raise ValueError("tokenize_prompt_and_output needs at least one prompt")
    end = end_of_text_id(tokenizer) if end_of_text else None
    prompts = [encode_text(tokenizer, prompt) for prompt in prompt_strs]
    outputs = [encode_text(tokenizer, output) + ([end] if end is not None else [])
               for output in output_strs]
    longest = max(len(prompt) + len(output) for prompt, output in zip(prompts, outputs))
    ids = torch.full((len(prompts), longest), padding_id(tokenizer), dtype=torch.long)
    is_output = torch.zeros(len(prompts), longest, dtype=torch.bool)
    for row, (prompt, output) in enumerate(zip(prompts, outputs)):
        ids[row, : len(prompt) + len(output)] = torch.tensor(prompt + output, dtype=torch.long)
        is_output[row, len(prompt): len(prompt) + len(output)] = True
    return {"input_ids": ids[:, :-1], "labels": ids[:, 1:], "response_mask": is_output[:, 1:]}


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class PackedSFTDataset(torch.utils.data.Dataset):
    """Fixed-length training windows over {"prompt", "response"} records of a JSONL file
    (gzipped when it ends in .gz).

    Each record becomes `template.format(prompt=..., response=...)` followed by the end-of-text
    token; `shuffle` orders the documents by a permutation drawn from `seed` before they are
    joined. Item i: {"input_ids": stream[i L : i L + L], "labels": stream[i L + 1 : i L + L + 1]},
    L = seq_length, both long tensors of shape (seq_length,).
    """

    def __init__(self, tokenizer: Any, dataset_path: str | Path, seq_length: int, shuffle: bool,
                 *, template: str = "{prompt}{response}", seed: int = 0):
        if seq_length <= 0:
            raise ValueError(f"seq_length must be positive, got {seq_length}")
        end = end_of_text_id(tokenizer)
        if end is None:
            raise ValueError(f"the tokenizer has no end-of-text token ({END_OF_TEXT!r} or an eos "
                             "token) to put between packed documents")
        path = Path(dataset_path)
        records = _read_jsonl(path)
        documents = []
        for line, record in enumerate(records, start=1):
            try:
                documents.append(template.format(prompt=record["prompt"],
                                                 response=record["response"]))
            except KeyError as error:
                raise ValueError(f"{path} record {line}: expected keys 'prompt' and 'response' "
                                 f"(and a template with only those fields), missing {error}"
                                 ) from None
        if shuffle:
            order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed))
            documents = [documents[i] for i in order.tolist()]
        stream = []
        for document in documents:
            stream.extend(encode_text(tokenizer, document))
            stream.append(end)
        super().__init__()
        self.seq_length = seq_length
        self.tokens = torch.tensor(stream, dtype=torch.long)

    def __len__(self) -> int:
        return max(len(self.tokens) - 1, 0) // self.seq_length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} sequences")
        start = (index % len(self)) * self.seq_length
        window = self.tokens[start: start + self.seq_length + 1]
        return {"input_ids": window[:-1], "labels": window[1:]}


def iterate_batches(dataset: Any, batch_size: int, shuffle: bool, seed: int = 0
                    ) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch over a map-style dataset of dicts of tensors: batches of `batch_size` items
    (the last may be smaller), each key stacked; with `shuffle`, a permutation drawn from `seed`."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shuffle:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        order = list(range(len(dataset)))
    for start in range(0, len(order), batch_size):
        items = [dataset[i] for i in order[start: start + batch_size]]
        yield {key: torch.stack([item[key] for item in items]) for key in items[0]}
