"""The model's forward pass for inference, over a static KV cache shared by all rows.

Notable:
- the cache is preallocated once: per layer, keys and values of (max_batch_size, kv_heads,
  max_seq_len, head_dim); grouped-query models cache their kv heads only;
- prefill runs the model's own blocks (their attention kernels: FlashAttention on CUDA) on the
  distinct prompts, right-padded to one length (causal attention keeps the padding from
  reaching real tokens), then copies each prompt's keys/values to the rows of its samples and
  projects only each prompt's last position to logits;
- a decode step takes one token per row at that row's own position, walking the model's modules
  (embedding, norms, q/k/v projections, QK-norm, RoPE, feed-forward, final norm, output layer):
  every shape is fixed by the number of rows, so the step can be captured as a CUDA graph;
- decode attention is ours: one query per head against the row's whole cache slot, positions
  beyond the row's own masked out, query heads grouped onto their kv head without repeating
  the cache.
"""

import math

import torch

from lmlib.model.attention import KVCache, softmax
from lmlib.model.transformer import TransformerLM


def check_supported(model: TransformerLM) -> None:
    """Refuses, with the reason, a model whose forward this module does not reproduce."""
    for name in ("token_embeddings", "layers", "ln_final", "lm_head", "config"):
        if not hasattr(model, name):
            raise TypeError(f"lmlib.infer needs an lmlib.model.TransformerLM; {type(model).__name__}"
                            f" has no `{name}`")
    for index, layer in enumerate(model.layers):
        attn = layer.attn
        if attn.num_heads % attn.num_kv_heads:
            raise ValueError(f"layer {index}: num_heads={attn.num_heads} is not a multiple of "
                             f"num_kv_heads={attn.num_kv_heads}")


class StaticKVCache:
    """Keys and values of every layer and row, allocated once; rows hold their own lengths.

    One (max_batch_size, kv_heads, max_seq_len, head_dim) tensor per layer for keys and one for
    values, not one tensor for all: a compiled step that writes into a slice of a single large
    graph input is functionalized into a copy of the whole input every step (33 ms a step for a
    256-row cache on an H200), while a write indexed into a whole input is done in place."""

    def __init__(self, model: TransformerLM, max_batch_size: int, max_seq_len: int,
                 device: torch.device, dtype: torch.dtype):
        attn = model.layers[0].attn
        shape = (max_batch_size, attn.num_kv_heads, max_seq_len, attn.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in model.layers]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in model.layers]
        self.max_batch_size = max_batch_size
        self.max_seq_len = max_seq_len
        self.dtype = dtype

    def layer(self, index: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (rows, kv_heads, max_seq_len, head_dim) of the keys and values of a layer."""
        return self.keys[index][:rows], self.values[index][:rows]

    def write(self, index: int, positions: torch.Tensor, keys: torch.Tensor,
              values: torch.Tensor) -> None:
        """Row r's key and value (rows, kv_heads, head_dim) of layer `index` at positions[r]."""
        row_ids = torch.arange(positions.shape[0], device=positions.device)
        self.keys[index][row_ids, :, positions] = keys
        self.values[index][row_ids, :, positions] = values

    def fill_rows(self, prefilled: KVCache, source_rows: torch.Tensor) -> None:
        """Row r gets prefilled row source_rows[r], for the prefilled length."""
        length = prefilled.keys.shape[-2]
        rows = source_rows.shape[0]
        for index in range(len(self.keys)):
            self.keys[index][:rows, :, :length] = prefilled.keys[index, source_rows]
            self.values[index][:rows, :, :length] = prefilled.values[index, source_rows]


def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     positions: torch.Tensor) -> torch.Tensor:
    """q (rows, heads, head_dim) against keys/values (rows, kv_heads, slots, head_dim); row r sees
    slots 0 .. positions[r]. Returns (rows, heads, head_dim). Scores in float32, as in
    lmlib.model.attention."""
    rows, heads, head_dim = q.shape
    kv_heads, slots = keys.shape[1], keys.shape[2]
    # query heads kv * group .. (kv + 1) * group - 1 share kv head kv: (rows, kv, group, head_dim)
    grouped = q.view(rows, kv_heads, heads // kv_heads, head_dim)
    scores = (grouped @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    visible = torch.arange(slots, device=q.device) <= positions.unsqueeze(-1)  # (rows, slots)
    scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    out = softmax(scores, dim=-1).to(values.dtype) @ values  # (rows, kv, group, head_dim)
    return out.view(rows, heads, head_dim)


class DecodeStep:
    """(token_ids (rows,), positions (rows,)) -> float32 logits (rows, vocab), writing each row's
    new key and value into the cache at its position. Rows are cache rows 0 .. rows-1."""

    def __init__(self, model: TransformerLM, cache: StaticKVCache):
        check_supported(model)
        self.model = model
        self.cache = cache

    @torch.no_grad()
    def __call__(self, token_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        model = self.model
        x = model.token_embeddings(token_ids)  # (rows, d_model)
        for index, layer in enumerate(model.layers):
            if layer.post_norm:
                x = layer.ln1(x + self._attention(layer.attn, x, positions, index))
                x = layer.ln2(x + layer.ffn(x))
            else:
                x = x + self._attention(layer.attn, layer.ln1(x), positions, index)
                x = x + layer.ffn(layer.ln2(x))
        return model.lm_head(model.ln_final(x)).float()

    def _attention(self, attn, x: torch.Tensor, positions: torch.Tensor, index: int
                   ) -> torch.Tensor:
        rows = x.shape[0]
        # (rows, heads, 1, head_dim): the sequence axis of one lets RoPE and QK-norm run as is
        q = attn.q_proj(x).view(rows, attn.num_heads, 1, attn.head_dim)
        k = attn.k_proj(x).view(rows, attn.num_kv_heads, 1, attn.head_dim)
        v = attn.v_proj(x).view(rows, attn.num_kv_heads, attn.head_dim)
        if attn.qk_norm:
            q, k = attn.q_norm(q), attn.k_norm(k)
        if attn.rope is not None:
            row_positions = positions.view(rows, 1, 1)
            q, k = attn.rope(q, row_positions), attn.rope(k, row_positions)
        self.cache.write(index, positions, k.squeeze(2), v)
        keys, values = self.cache.layer(index, rows)
        out = decode_attention(q.squeeze(2), keys, values, positions)
        return attn.output_proj(out.reshape(rows, -1))


@torch.no_grad()
def prefill(model: TransformerLM, prompts: list[list[int]], device: torch.device,
            dtype: torch.dtype) -> tuple[KVCache, torch.Tensor]:
    """Runs the distinct prompts once, right-padded to the longest, through the model's blocks.

    Returns their KVCache (batch = len(prompts), slots = longest prompt) and the float32 logits
    at each prompt's last token, (prompts, vocab)."""
    longest = max(len(prompt) for prompt in prompts)
    token_ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = torch.tensor(prompt)
    token_ids = token_ids.to(device)
    attn = model.layers[0].attn
    cache = KVCache(len(model.layers), len(prompts), attn.num_kv_heads, longest, attn.head_dim,
                    device=device, dtype=dtype)
    x = model.token_embeddings(token_ids)
    for index, layer in enumerate(model.layers):
        x = layer(x, None, cache, index)
    last = torch.tensor([len(prompt) - 1 for prompt in prompts], device=device)
    x = x[torch.arange(len(prompts), device=device), last]  # (prompts, d_model)
    return cache, model.lm_head(model.ln_final(x)).float()
