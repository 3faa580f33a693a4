"""Sampling text from a TransformerLM with a KV cache, temperature and nucleus (top-p) sampling.

The tokenizer is duck-typed (anything with `encode(str) -> list[int]` and
`decode(list[int]) -> str`), so this module does not import lmlib.tokenizer.
When the context fills up, the cache is rebuilt from the most recent three quarters of it.
"""

import torch

from lmlib.model.attention import softmax
from lmlib.model.transformer import TransformerLM


def sample_next_token(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """logits (batch, vocab) -> token ids (batch,). temperature 0 means greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probabilities = softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probabilities, sorted_ids = probabilities.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the top token always stays)
        mass_before = sorted_probabilities.cumsum(dim=-1) - sorted_probabilities
        sorted_probabilities = sorted_probabilities.masked_fill(mass_before >= top_p, 0.0)
        choice = torch.multinomial(sorted_probabilities, 1, generator=generator)
        return sorted_ids.gather(-1, choice).squeeze(-1)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


def _eos_token_id(tokenizer, eos) -> int | None:
    if eos is None or isinstance(eos, int):
        return eos
    if tokenizer is None:
        raise ValueError("eos given as a string needs a tokenizer to turn it into a token id")
    ids = tokenizer.encode(eos)
    if len(ids) != 1:
        raise ValueError(f"eos {eos!r} encodes to {len(ids)} tokens; expected one special token")
    return ids[0]


@torch.no_grad()
def generate(
    model: TransformerLM,
    tokenizer,
    prompt: str | list[int],
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos: int | str | None = None,
    seed: int | None = None,
) -> str | list[int]:
    """Continue `prompt`; returns the new text (or the new token ids when tokenizer is None).

    Stops at `eos` (a token id, or a special-token string the tokenizer knows) or after
    max_new_tokens. `seed` makes sampling reproducible.
    """
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a text prompt needs a tokenizer; pass token ids instead")
        prompt_ids = tokenizer.encode(prompt)
    else:
        prompt_ids = list(prompt)
    if not prompt_ids:
        raise ValueError("prompt is empty: give at least one token")
    eos_id = _eos_token_id(tokenizer, eos)
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    context_length = model.config.context_length
    was_training = model.training
    model.eval()
    cache = model.new_kv_cache(batch_size=1)
    tokens = list(prompt_ids)
    new_ids: list[int] = []
    pending = torch.tensor([tokens[-context_length:]], device=device)
    try:
        for _ in range(max_new_tokens):
            if cache.length + pending.shape[-1] > context_length:
                cache.reset()
                pending = torch.tensor([tokens[-(3 * context_length // 4) :]], device=device)
            logits = model(pending, kv_cache=cache)[:, -1]
            next_id = int(sample_next_token(logits, temperature, top_p, generator)[0])
            if eos_id is not None and next_id == eos_id:
                break
            tokens.append(next_id)
            new_ids.append(next_id)
            pending = torch.tensor([[next_id]], device=device)
    finally:
        model.train(was_training)
    return tokenizer.decode(new_ids) if tokenizer is not None else new_ids
