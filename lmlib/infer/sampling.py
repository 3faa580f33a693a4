"""Sampling one token per row from float32 logits, every row with its own settings.

Notable:
- reproducible per row: the random numbers come from one torch.Generator per (seed, sample
  index), drawn on the CPU before decoding starts (one uniform per step), so a row's stream does
  not depend on the batch it shares or on the device;
- one uniform per step is enough: the token is found by inverting the cumulative distribution
  (of the filtered, renormalised probabilities), all rows at once;
- the returned log-probability is that of the sampled token under log_softmax(logits / T) of
  the *unfiltered* distribution (T = 1 for greedy rows): what RL objectives compare against;
- the cumulative sums over the vocabulary are an opaque op (`lmlib::cumsum`): Inductor's
  split-scan kernel, which it picks for one long row, cannot yet fuse the reductions around it
  (torch 2.11: "NYI TritonSplitDimKernel reductions"), so the engine's compiled step keeps ATen's.
"""

import torch

from lmlib.model.attention import softmax

_SEED_MIX = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: spreads (seed, sample) pairs apart


def row_generator(seed: int, sample_index: int) -> torch.Generator:
    """The CPU generator of sample `sample_index` of a request seeded with `seed`."""
    mixed = (seed * _SEED_MIX + sample_index * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)
    return torch.Generator().manual_seed(mixed)


def row_uniforms(seed: int, sample_index: int, steps: int) -> torch.Tensor:
    """(steps,) uniforms in [0, 1): the random stream of one sample, one number per new token."""
    return torch.rand(steps, generator=row_generator(seed, sample_index), dtype=torch.float64)


@torch.library.custom_op("lmlib::cumsum", mutates_args=())
def cumsum(x: torch.Tensor) -> torch.Tensor:
    """Cumulative sum over the last dimension, opaque to torch.compile."""
    return x.cumsum(dim=-1)


@cumsum.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """log softmax over the last dimension, stable: x - max - log(sum(exp(x - max)))."""
    shifted = x - x.amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def _invert_cdf(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Index i per row with cdf[i-1] <= u * total < cdf[i]: a draw from weights (unnormalised,
    non-negative); never an index of zero weight."""
    cdf = cumsum(weights)
    target = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    index = torch.searchsorted(cdf, target, right=True)
    return index.clamp_(max=weights.shape[-1] - 1).squeeze(-1)


def sample_tokens(logits: torch.Tensor, uniforms: torch.Tensor, temperature: torch.Tensor,
                  top_k: torch.Tensor, top_p: torch.Tensor, filtering: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (rows, vocab) float32, uniforms/temperature/top_p (rows,), top_k (rows,) int ->
    (tokens (rows,), logprobs (rows,)). temperature 0: argmax. `filtering` False promises that
    no row uses top_k or top_p (skips the sort)."""
    greedy = temperature <= 0
    scale = torch.where(greedy, torch.ones_like(temperature), temperature)
    log_probs = log_softmax(logits / scale.unsqueeze(-1))
    if filtering:
        probabilities, order = softmax(logits / scale.unsqueeze(-1), dim=-1).sort(
            dim=-1, descending=True)
        rank = torch.arange(logits.shape[-1], device=logits.device)
        keep = (top_k.unsqueeze(-1) <= 0) | (rank < top_k.unsqueeze(-1))
        # nucleus: the smallest prefix whose mass reaches top_p (the top token always stays)
        mass_before = cumsum(probabilities) - probabilities
        keep &= mass_before < top_p.unsqueeze(-1)
        keep[:, 0] = True
        sampled = order.gather(-1, _invert_cdf(probabilities * keep, uniforms).unsqueeze(-1))
        sampled = sampled.squeeze(-1)
    else:
        sampled = _invert_cdf(log_probs.exp(), uniforms)
    tokens = torch.where(greedy, logits.argmax(dim=-1), sampled)
    return tokens, log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
