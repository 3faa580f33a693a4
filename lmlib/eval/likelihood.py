"""Log-likelihood scoring on a causal LM, batched: continuations given contexts (multiple choice)
and loss, perplexity and bits per byte of text (language modelling).

Notable:
- a model is an `lmlib.model.TransformerLM`, or any callable from (batch, time) token ids to
  (batch, time, vocab) logits (a transformers model through `hf_logits`); the same code scores
  both, which is how the tests compare us with transformers. A TransformerLM projects to the
  vocabulary only the positions that are scored (one per MMLU question, not the whole prompt);
- continuation requests follow lm-evaluation-harness: trailing spaces of the context move to the
  continuation, the continuation's tokens are those of context + continuation after the
  context's own (`encode_pair`), the score is their summed log-probability and `is_greedy` says
  whether each was the argmax; inputs longer than the window are cut from the left;
- requests sharing a context whose continuations are one token each are one row (MMLU: one
  forward per question for its four letters, as the harness's logits cache does); rows run
  longest first, right-padded, so causal attention keeps padding away from real tokens;
- bits per byte = summed NLL in nats / (ln 2 x UTF-8 bytes), comparable across tokenizers.
  Token shards are read in windows of the context length (targets that are special tokens, 0
  bytes, stay in the loss but out of bits per byte, as nanochat does); a text is scored after
  an <|endoftext|> so its first token is predicted too, in consecutive windows.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmlib.model.transformer import TransformerLM
from lmlib.tokenizer import Tokenizer
from lmlib.tokenizer.corpus import DOCUMENT_SEPARATOR as END_OF_TEXT

LogitsModel = Callable[[torch.Tensor], torch.Tensor]


def hf_logits(model) -> LogitsModel:
    """A transformers causal LM as a LogitsModel."""
    return lambda token_ids: model(input_ids=token_ids).logits


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str
                ) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness's `_encode_pair` makes them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids):]


@dataclass(frozen=True)
class ContinuationScore:
    logprob: float  # summed over the continuation's tokens
    is_greedy: bool  # every continuation token was the argmax
    tokens: int


def _on(device: torch.device, data) -> torch.Tensor:
    """Host data as a tensor on `device`, queued behind the GPU's work rather than waiting for
    it: a plain host-to-GPU copy synchronizes the stream, which would stall every batch."""
    tensor = data if isinstance(data, torch.Tensor) else torch.tensor(data)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _scored_logits(model: TransformerLM, ids: torch.Tensor, row_index: torch.Tensor,
                   column: torch.Tensor) -> torch.Tensor:
    """Logits at the (row, column) positions only: the vocabulary projection skips the rest."""
    x = model.token_embeddings(ids)
    for index, layer in enumerate(model.layers):
        x = layer(x, None, None, index)
    return model.lm_head(model.ln_final(x[row_index, column]))


class _Scorer:
    """Log-probabilities at chosen positions of right-padded rows."""

    compile_backend = "inductor"  # tests trace with "aot_eager"

    def __init__(self, model: TransformerLM | LogitsModel, device: torch.device | None,
                 compile: bool | None = None):
        self.model = model
        self.forward = _scored_logits
        if isinstance(model, TransformerLM):
            self.device = device or model.lm_head.weight.device
            if compile is None:
                compile = self.device.type == "cuda"
            if compile:  # one graph for every batch and length (dynamic shapes)
                self.forward = torch.compile(_scored_logits, backend=self.compile_backend,
                                             dynamic=True)
        else:
            self.device = device or torch.device("cpu")

    @torch.no_grad()
    def log_probs(self, rows: list[list[int]], positions: list[list[int]]) -> list[torch.Tensor]:
        """For each row, float32 log-softmax (len(positions[r]), vocab) at its positions."""
        longest = max(map(len, rows))
        ids = torch.zeros(len(rows), longest, dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row)
        ids = _on(self.device, ids)
        row_index = _on(self.device, [r for r, p in enumerate(positions) for _ in p])
        column = _on(self.device, [c for p in positions for c in p])
        if isinstance(self.model, TransformerLM):
            logits = self.forward(self.model, ids, row_index, column)
        else:
            logits = self.model(ids)[row_index, column]
        scores = torch.log_softmax(logits.float(), dim=-1)
        return list(scores.split([len(p) for p in positions]))


def score_continuations(model: TransformerLM | LogitsModel,
                        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                        batch_size: int = 32, max_length: int | None = None,
                        device: torch.device | None = None, compile: bool | None = None
                        ) -> list[ContinuationScore]:
    """Each (context ids, continuation ids): the continuation's summed log-probability given the
    context. `max_length`: the model's window (its context_length by default). `compile`:
    run a TransformerLM's forward through torch.compile (one graph with dynamic shapes; it pays
    for its compilation on long evaluations on a GPU, where eager elementwise kernels and their
    launches dominate). None, the default: compiled on CUDA, eager elsewhere (as the engine)."""
    if max_length is None:
        if not isinstance(model, TransformerLM):
            raise ValueError("max_length is required for a model other than a TransformerLM")
        max_length = model.config.context_length
    for index, (context, continuation) in enumerate(requests):
        if not continuation:
            raise ValueError(f"request {index} has an empty continuation")
        if not context:
            raise ValueError(f"request {index} has an empty context (start it with a token "
                             "such as <|endoftext|>)")
    # rows: (input ids, [(request index, first scored position, continuation ids)])
    rows: dict[tuple, tuple[list[int], list]] = {}
    for index, (context, continuation) in enumerate(requests):
        if len(continuation) == 1:
            key = ("shared", tuple(context))
            ids = list(context)[-max_length:]
        else:
            key = ("own", index)
            ids = (list(context) + list(continuation))[-(max_length + 1):][:-1]
        entry = rows.setdefault(key, (ids, []))
        entry[1].append((index, len(ids) - len(continuation), list(continuation)))
    ordered = sorted(rows.values(), key=lambda row: -len(row[0]))
    scorer, results = _Scorer(model, device, compile), [None] * len(requests)

    def store(indices: list[int], on_host: torch.Tensor, copied) -> None:
        if copied is not None:
            copied.synchronize()
        logprobs, misses = on_host.tolist()
        for index, logprob, miss in zip(indices, logprobs, misses, strict=True):
            results[index] = ContinuationScore(logprob, miss == 0, len(requests[index][1]))

    # a batch's scores reach the host while the next batch runs: the GPU is never left idle
    # while Python prepares a batch and reads the last one back
    pending = None
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        positions = [sorted({p for _, first, cont in targets for p in range(first, first + len(cont))})
                     for _, targets in batch]
        scores = torch.cat(scorer.log_probs([ids for ids, _ in batch], positions))
        # every continuation token of the batch at once: its score row, its id, its request
        # (one transfer to the host per batch, not two per request)
        score_rows, token_ids, owners, places, indices, offset = [], [], [], [], [], 0
        for (_, targets), row_positions in zip(batch, positions, strict=True):
            at = {position: offset + i for i, position in enumerate(row_positions)}
            for index, first, continuation in targets:
                score_rows += [at[first + i] for i in range(len(continuation))]
                token_ids += continuation
                owners += [len(indices)] * len(continuation)
                places += range(len(continuation))
                indices.append(index)
            offset += len(row_positions)
        rows_at, wanted = _on(scores.device, score_rows), _on(scores.device, token_ids)
        # (request, token) tables summed along a row: the same sum in the same order on every
        # run (an index_add would sum in whatever order the GPU's atomics land)
        where = (_on(scores.device, owners), _on(scores.device, places))
        table = torch.zeros(len(indices), max(places) + 1, device=scores.device)
        logprobs = table.index_put(where, scores[rows_at, wanted]).sum(dim=-1)
        missed = (scores[rows_at].argmax(dim=-1) != wanted).to(table.dtype)
        misses = table.index_put(where, missed).sum(dim=-1)
        on_host = torch.stack((logprobs, misses)).to("cpu", non_blocking=True)
        copied = None
        if scores.device.type == "cuda":
            copied = torch.cuda.Event()
            copied.record()
        if pending is not None:
            store(*pending)
        pending = (indices, on_host, copied)
    if pending is not None:
        store(*pending)
    return results


@dataclass
class LanguageModelingResult:
    loss: float  # mean NLL per predicted token, nats
    perplexity: float
    bits_per_byte: float
    tokens: int  # predicted tokens
    bytes: int  # UTF-8 bytes of the predicted tokens that are not special tokens

    @classmethod
    def from_sums(cls, nll_sum: float, tokens: int, byte_nll_sum: float, byte_count: int
                  ) -> LanguageModelingResult:
        loss = nll_sum / max(tokens, 1)
        return cls(loss=loss, perplexity=math.exp(min(loss, 700.0)),
                   bits_per_byte=byte_nll_sum / (math.log(2) * max(byte_count, 1)),
                   tokens=tokens, bytes=byte_count)


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """Bytes of each token id (0 for special tokens)."""
    lengths = np.zeros(max(tokenizer.vocab) + 1, dtype=np.int64)
    for token_id, token in tokenizer.vocab.items():
        lengths[token_id] = len(token)
    for token in tokenizer.special_tokens:
        lengths[tokenizer.token_id(token)] = 0
    return lengths


def _score_windows(model: TransformerLM | LogitsModel, windows: list[list[int]],
                   byte_lengths: np.ndarray, batch_size: int, device) -> tuple[float, int, float, int]:
    """Each window predicts its tokens after the first: (NLL sum, tokens, NLL sum over tokens
    with bytes, their bytes)."""
    scorer = _Scorer(model, device)
    nll, tokens, byte_nll, byte_count = 0.0, 0, 0.0, 0
    windows = sorted(windows, key=len, reverse=True)
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        positions = [list(range(len(w) - 1)) for w in batch]
        for window, scores in zip(batch, scorer.log_probs([w[:-1] for w in batch], positions),
                                  strict=True):
            targets = torch.tensor(window[1:], device=scores.device)
            token_nll = -scores.gather(-1, targets[:, None]).squeeze(-1).double().cpu().numpy()
            lengths = byte_lengths[np.asarray(window[1:])]
            nll += float(token_nll.sum())
            tokens += len(token_nll)
            byte_nll += float(token_nll[lengths > 0].sum())
            byte_count += int(lengths.sum())
    return nll, tokens, byte_nll, byte_count


def evaluate_token_shards(model: TransformerLM | LogitsModel, tokenizer: Tokenizer,
                          shards_dir: str | Path, split: str = "val",
                          max_tokens: int | None = None, window: int | None = None,
                          batch_size: int = 16, device=None) -> LanguageModelingResult:
    """Loss, perplexity and bits per byte over the first `max_tokens` tokens of a split of the
    token shards, in consecutive windows of `window` (the model's context length) predictions."""
    from lmlib.train.data import open_split, read_index  # the shard reader, numpy only

    window = window or _context_length(model)
    index = read_index(shards_dir)
    stream = np.concatenate([np.asarray(shard) for shard in open_split(shards_dir, split, index)])
    if max_tokens is not None:
        stream = stream[: max_tokens + 1]
    if len(stream) < 2:
        raise ValueError(f"the {split} split of {shards_dir} has fewer than 2 tokens")
    windows = [stream[i : i + window + 1].astype(np.int64).tolist()
               for i in range(0, len(stream) - 1, window)]
    windows = [w for w in windows if len(w) >= 2]
    return LanguageModelingResult.from_sums(
        *_score_windows(model, windows, token_byte_lengths(tokenizer), batch_size, device))


def evaluate_texts(model: TransformerLM | LogitsModel, tokenizer: Tokenizer,
                   texts: Iterable[str], window: int | None = None, batch_size: int = 16,
                   device=None) -> LanguageModelingResult:
    """Loss, perplexity and bits per byte of documents, each scored from its first token (after
    <|endoftext|>) in consecutive windows of `window` predictions. Bytes are the texts' own."""
    window = window or _context_length(model)
    start_id = tokenizer.token_id(END_OF_TEXT)
    windows = []
    for text in texts:
        ids = [start_id] + tokenizer.encode(text)
        windows += [ids[i : i + window + 1] for i in range(0, len(ids) - 1, window)]
    if not windows:
        raise ValueError("no text to score")
    return LanguageModelingResult.from_sums(
        *_score_windows(model, windows, token_byte_lengths(tokenizer), batch_size, device))


def read_texts(path: str | Path, field: str = "text", limit: int | None = None) -> list[str]:
    """Documents of a .txt file (the whole file is one) or a .jsonl / .jsonl.gz file (its
    `field` of each line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if path.suffix == ".gz" else open
        texts = []
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    record = json.loads(line)
                    if field not in record:
                        raise KeyError(f"{path}:{number} has no field {field!r}")
                    texts.append(record[field])
                if limit is not None and len(texts) >= limit:
                    break
        return texts
    return [path.read_text(encoding="utf-8")]


def _context_length(model: TransformerLM | LogitsModel) -> int:
    if isinstance(model, TransformerLM):
        return model.config.context_length
    raise ValueError("window is required for a model other than a TransformerLM")
