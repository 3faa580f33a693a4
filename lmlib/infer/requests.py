"""What a caller asks of the engine (`Request`) and what it gets back (`Completion`).

A request is one prompt sampled `n` times; each sample is one `Completion`. Stop tokens are
included in the returned tokens (with their log-probabilities: RL needs the end-of-sequence
token's probability), and `finish_reason` says whether a stop token or the length limit ended
the sample.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One prompt (token ids), sampled `n` times.

    temperature 0 is greedy decoding; top_k 0 and top_p 1.0 switch those filters off. `seed`
    fixes the random stream of every sample: sample j of a request with seed s draws the same
    numbers whatever else is in the batch, so two requests with the same prompt, settings and
    seed give the same completions.
    """

    prompt: list[int]
    n: int = 1
    max_new_tokens: int = 64
    stop_tokens: tuple[int, ...] = ()
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def validate(self, index: int, max_seq_len: int, vocab_size: int) -> None:
        """Raises ValueError naming request `index` and the setting to change."""
        where = f"request {index}"
        if not self.prompt:
            raise ValueError(f"{where}: prompt is empty; give at least one token id")
        if min(self.prompt) < 0 or max(self.prompt) >= vocab_size:
            raise ValueError(f"{where}: prompt token ids must lie in [0, {vocab_size}), got "
                             f"{min(self.prompt)} .. {max(self.prompt)}")
        if self.n < 1:
            raise ValueError(f"{where}: n={self.n}; ask for at least one sample")
        if self.max_new_tokens < 1:
            raise ValueError(f"{where}: max_new_tokens={self.max_new_tokens} must be positive")
        if len(self.prompt) + self.max_new_tokens > max_seq_len:
            raise ValueError(
                f"{where}: prompt of {len(self.prompt)} tokens + max_new_tokens="
                f"{self.max_new_tokens} exceeds the engine's max_seq_len={max_seq_len}; "
                "shorten the prompt, lower max_new_tokens or build the Engine with a larger "
                "max_seq_len")
        if self.temperature < 0:
            raise ValueError(f"{where}: temperature={self.temperature} must be >= 0 (0: greedy)")
        if self.top_k < 0:
            raise ValueError(f"{where}: top_k={self.top_k} must be >= 0 (0: off)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"{where}: top_p={self.top_p} must lie in (0, 1] (1: off)")


@dataclass
class Completion:
    """Sample `sample_index` of request `request_index`: the new tokens (a stop token that ended
    it included), the log-probability of each under softmax(logits / temperature) of the
    unfiltered model distribution (temperature 1 for greedy requests), and why it ended."""

    request_index: int
    sample_index: int
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" | "length"
