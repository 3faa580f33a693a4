"""The buffers of one wave of rows and the step that advances every row by one token.

Everything a step touches lives in fixed buffers (settings, random streams, output tokens and
log-probabilities, done flags, the step counter as a device tensor), so the whole step, decode,
sampling and bookkeeping, can be captured as one CUDA graph and replayed with no work in Python.
Rows past the wave's own (bucket padding) start done and are never read.
"""

import torch

from lmlib.infer.decode import DecodeStep
from lmlib.infer.requests import Request
from lmlib.infer.sampling import row_uniforms, sample_tokens


class DecodeLoop:
    def __init__(self, decode: DecodeStep, rows: int, max_seq_len: int, vocab_size: int,
                 device: torch.device, filtering: bool):
        self.decode, self.rows, self.max_seq_len = decode, rows, max_seq_len
        self.filtering = filtering  # whether any row uses top-k or top-p (costs a sort)

        def buffer(dtype, *shape):
            return torch.zeros(*shape, dtype=dtype, device=device)

        self.prompt_lengths = buffer(torch.long, rows)
        self.max_new_tokens = buffer(torch.long, rows)
        self.temperature = buffer(torch.float32, rows)
        self.top_k = buffer(torch.long, rows)
        self.top_p = buffer(torch.float32, rows)
        self.stop_mask = buffer(torch.bool, rows, vocab_size)  # [row, token]: token ends row
        self.uniforms = buffer(torch.float64, rows, max_seq_len)  # [row, step]
        self.tokens = buffer(torch.long, rows, max_seq_len)
        self.logprobs = buffer(torch.float32, rows, max_seq_len)
        self.done = buffer(torch.bool, rows)
        self.stopped = buffer(torch.bool, rows)
        self.last_step = buffer(torch.long, rows)
        self.last_token = buffer(torch.long, rows)
        self.step = buffer(torch.long, 1)

    def load(self, requests: list[Request], sample_indices: list[int]) -> None:
        """Settings and random streams of the wave's rows (one request per row, in order)."""
        count = len(requests)
        uniforms = torch.zeros(self.rows, self.max_seq_len, dtype=torch.float64)
        stop_mask = torch.zeros(self.rows, self.stop_mask.shape[1], dtype=torch.bool)
        for row, (request, sample) in enumerate(zip(requests, sample_indices, strict=True)):
            stop_mask[row, list(request.stop_tokens)] = True
            if request.temperature > 0:  # drawn for the request's length: same stream any wave
                uniforms[row, : request.max_new_tokens] = row_uniforms(
                    request.seed, sample, request.max_new_tokens)
        self.uniforms.copy_(uniforms)
        self.stop_mask.copy_(stop_mask)
        for name, values in (("prompt_lengths", [len(r.prompt) for r in requests]),
                             ("max_new_tokens", [r.max_new_tokens for r in requests]),
                             ("temperature", [r.temperature for r in requests]),
                             ("top_k", [r.top_k for r in requests]),
                             ("top_p", [r.top_p for r in requests])):
            target = getattr(self, name)
            target.zero_()
            target[:count] = torch.tensor(values, dtype=target.dtype)
        self.done.fill_(True)
        self.done[:count] = False
        for flag in (self.stopped, self.last_step, self.last_token, self.step):
            flag.zero_()

    def sample_and_record(self, logits: torch.Tensor) -> None:
        """Samples each row's token at the current step from logits (rows, vocab), records it."""
        column = self.step.expand(self.rows).unsqueeze(-1)
        uniforms = self.uniforms.gather(-1, column).squeeze(-1)
        token, logprob = sample_tokens(logits, uniforms, self.temperature, self.top_k,
                                       self.top_p, self.filtering)
        self.tokens.scatter_(-1, column, token.unsqueeze(-1))
        self.logprobs.scatter_(-1, column, logprob.unsqueeze(-1))
        hit_stop = self.stop_mask.gather(-1, token.unsqueeze(-1)).squeeze(-1)
        finishing = ~self.done & (hit_stop | (self.max_new_tokens <= self.step + 1))
        self.last_step.copy_(torch.where(finishing, self.step, self.last_step))
        self.stopped |= finishing & hit_stop
        self.done |= finishing
        self.last_token.copy_(token)
        self.step += 1

    def advance(self) -> None:
        """Decodes each row's last token at its position, then samples and records the next.
        A finished row keeps stepping, clamped inside its cache slot; its tokens are dropped."""
        positions = (self.prompt_lengths + self.step - 1).clamp(0, self.max_seq_len - 1)
        self.sample_and_record(self.decode(self.last_token, positions))
