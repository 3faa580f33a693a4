"""Batched generation: many prompts, a group of samples each, over one preallocated KV cache.

Notable:
- requests become rows (one per sample); rows run in waves of at most max_batch_size; in a wave
  each distinct prompt is prefilled once and its keys/values copied to the rows of its samples;
- every step advances all rows of the wave by one token at their own positions (prompts differ
  in length); a finished row keeps stepping (its tokens are dropped) until the whole wave is
  done, checked every `done_check_every` steps so the GPU is not waited on each step;
- on CUDA a whole step (decode, sampling in float32, bookkeeping) is compiled by torch.compile
  (Inductor fuses the norms, RoPE, masking, softmax and sampling into a few kernels: a step of
  eager kernels spends its time in hundreds of tiny launches) and then replayed as one CUDA graph
  per batch bucket (lmlib.infer.loop, lmlib.infer.cuda_graphs); on the CPU the same step runs
  eagerly;
- `dtype` other than the model's makes a cast copy of the model; `sync_weights()` refreshes it
  in place after the model's weights change (graphs keep pointing at the same storage).
"""

import copy
from collections.abc import Callable

import torch

from lmlib.infer.cuda_graphs import CapturedStep, bucket_for
from lmlib.infer.decode import DecodeStep, StaticKVCache, check_supported, prefill
from lmlib.infer.loop import DecodeLoop
from lmlib.infer.requests import Completion, Request
from lmlib.model.transformer import TransformerLM


class Engine:
    """engine.generate(requests) -> completions, ordered by (request_index, sample_index)."""

    done_check_every = 8  # steps between looks at whether every row has finished
    compile_backend = "inductor"  # tests trace the CPU step with "aot_eager"

    def __init__(self, model: TransformerLM, max_batch_size: int, max_seq_len: int | None = None,
                 dtype: torch.dtype | None = None, cuda_graphs: bool = True,
                 compile: bool = True):
        check_supported(model)
        max_seq_len = max_seq_len or model.config.context_length
        if max_seq_len > model.config.context_length:
            raise ValueError(f"max_seq_len={max_seq_len} exceeds the model's context_length="
                             f"{model.config.context_length} (its RoPE tables end there)")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size} must be positive")
        self.source_model = model
        weight = model.lm_head.weight
        self.device, self.dtype = weight.device, dtype or weight.dtype
        self.model = model if self.dtype == weight.dtype else self._cast_copy(model, self.dtype)
        self.max_batch_size, self.max_seq_len = max_batch_size, max_seq_len
        self.cache = StaticKVCache(self.model, max_batch_size, max_seq_len, self.device,
                                   self.dtype)
        self.decode = DecodeStep(self.model, self.cache)
        self.graphed = cuda_graphs and self.device.type == "cuda" and torch.cuda.is_available()
        self.compiled = compile and self.graphed
        # (rows, filtering) -> the loop's buffers and its step (captured, compiled or eager)
        self.loops: dict[tuple[int, bool], tuple[DecodeLoop, Callable[[], None]]] = {}
        self.prefill_calls = 0  # forward passes over prompts, for tests and metrics

    @staticmethod
    def _cast_copy(model: TransformerLM, dtype: torch.dtype) -> TransformerLM:
        """The model with parameters in `dtype`; buffers (RoPE tables) stay in float32."""
        cast = copy.deepcopy(model).eval()
        for parameter in cast.parameters():
            parameter.data = parameter.data.to(dtype)
        return cast

    @torch.no_grad()
    def sync_weights(self) -> None:
        """Copies the source model's current weights into the engine's cast copy, in place."""
        if self.model is self.source_model:
            return
        for source, target in zip(self.source_model.parameters(), self.model.parameters(),
                                  strict=True):
            target.copy_(source)

    @torch.no_grad()
    def generate(self, requests: list[Request]) -> list[Completion]:
        vocab_size = self.model.config.vocab_size
        for index, request in enumerate(requests):
            request.validate(index, self.max_seq_len, vocab_size)
        rows = [(index, sample) for index, request in enumerate(requests)
                for sample in range(request.n)]
        was_training = self.model.training
        self.model.eval()
        try:
            completions = []
            for start in range(0, len(rows), self.max_batch_size):
                completions += self._run_wave(requests, rows[start : start + self.max_batch_size])
        finally:
            self.model.train(was_training)
        return completions

    def generate_batch(self, prompts: list[list[int]], n: int = 1, max_new_tokens: int = 64,
                       **settings) -> list[list[Completion]]:
        """The same settings for every prompt; returns each prompt's n completions."""
        requests = [Request(list(prompt), n=n, max_new_tokens=max_new_tokens, **settings)
                    for prompt in prompts]
        grouped: list[list[Completion]] = [[] for _ in prompts]
        for completion in self.generate(requests):
            grouped[completion.request_index].append(completion)
        return grouped

    def _loop(self, rows: int, filtering: bool) -> tuple[DecodeLoop, Callable[[], None]]:
        """The loop for `rows` rows (a bucket on CUDA), captured on first use. Call it before
        the cache is filled: capturing runs steps that write into the cache."""
        if self.graphed:
            rows = bucket_for(rows, self.max_batch_size)
        key = (rows, filtering)
        if key not in self.loops:
            loop = DecodeLoop(self.decode, rows, self.max_seq_len, self.model.config.vocab_size,
                              self.device, filtering)
            step = compiled_step(loop, self.compile_backend) if self.compiled else loop.advance
            self.loops[key] = (loop, CapturedStep(step, self.device) if self.graphed else step)
        return self.loops[key]

    def _run_wave(self, requests: list[Request], rows: list[tuple[int, int]]
                  ) -> list[Completion]:
        wave = [requests[request_index] for request_index, _ in rows]
        filtering = any((r.top_k > 0 or r.top_p < 1.0) and r.temperature > 0 for r in wave)
        loop, step_once = self._loop(len(rows), filtering)
        prompt_requests = sorted({request_index for request_index, _ in rows})
        slot = {request_index: index for index, request_index in enumerate(prompt_requests)}
        prefilled, last_logits = prefill(self.model, [requests[i].prompt for i in prompt_requests],
                                         self.device, self.dtype)
        self.prefill_calls += 1
        source_rows = torch.tensor([slot[request_index] for request_index, _ in rows],
                                   device=self.device)
        self.cache.fill_rows(prefilled, source_rows)
        del prefilled
        loop.load(wave, [sample for _, sample in rows])
        logits = last_logits.new_zeros(loop.rows, last_logits.shape[-1])
        logits[: len(rows)] = last_logits[source_rows]
        loop.sample_and_record(logits)  # the first new token comes from the prefill
        steps = max(request.max_new_tokens for request in wave)
        for step in range(1, steps):
            if step % self.done_check_every == 0 and bool(loop.done.all()):
                break
            step_once()
        return _completions(rows, loop)


def compiled_step(loop: DecodeLoop, backend: str = "inductor"):
    """loop.advance through torch.compile, one static-shape graph per loop (bucket). Every
    bucket is its own compilation of the same code, hence the raised recompile limit."""
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(getattr(config, limit), 64))
    return torch.compile(loop.advance, backend=backend, fullgraph=True, dynamic=False)


def _completions(rows: list[tuple[int, int]], loop: DecodeLoop) -> list[Completion]:
    count = len(rows)
    tokens, logprobs = loop.tokens[:count].tolist(), loop.logprobs[:count].tolist()
    last_step, stopped = loop.last_step[:count].tolist(), loop.stopped[:count].tolist()
    return [
        Completion(request_index, sample, tokens[index][: last_step[index] + 1],
                   logprobs[index][: last_step[index] + 1],
                   "stop" if stopped[index] else "length")
        for index, (request_index, sample) in enumerate(rows)
    ]
