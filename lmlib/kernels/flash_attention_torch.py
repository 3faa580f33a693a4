"""FlashAttention-2 in plain PyTorch: the readable reference the Triton kernels are checked against.

What is notable:
- The forward pass walks query tiles and, inside each, key tiles, keeping a running row maximum
  and row sum (the online softmax), so the (n_queries, n_keys) score matrix never exists whole.
- Only the output O and the logsumexp L (one float per query) are saved for the backward pass.
- The backward pass recomputes each probability tile from L (P = exp(S - L)) instead of storing P,
  and uses D = rowsum(dO * O) in place of the softmax Jacobian's row sums.
- Causal attention is top-left aligned (query i sees keys 0..i), the convention of PyTorch's
  SDPA with is_causal=True; key tiles that lie wholly above the diagonal are skipped.
- Works on any leading dimensions: (batch, seq, d) or (batch, heads, seq, d). Tiles are computed
  in float32 whatever the input dtype; results are cast back.
"""

import math

import torch

TILE_QUERIES = 64
TILE_KEYS = 64


def _causal_keep(query_start: int, n_q: int, key_start: int, n_k: int, device) -> torch.Tensor:
    """(n_q, n_k) boolean mask: True where key index <= query index."""
    query_index = torch.arange(query_start, query_start + n_q, device=device)
    key_index = torch.arange(key_start, key_start + n_k, device=device)
    return key_index[None, :] <= query_index[:, None]


def flash_attention_torch_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled forward pass. Returns O (like q) and the logsumexp L (q.shape[:-1], float32)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    n_queries, n_keys = q.shape[-2], k.shape[-2]
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    logsumexp = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
    for q_start in range(0, n_queries, TILE_QUERIES):
        q_tile = q[..., q_start : q_start + TILE_QUERIES, :].float()
        n_q = q_tile.shape[-2]
        row_max = torch.full(q_tile.shape[:-1], float("-inf"), device=q.device)
        row_sum = torch.zeros(q_tile.shape[:-1], device=q.device)
        acc = torch.zeros(q_tile.shape, device=q.device)
        # Causal: keys past the tile's last query are masked for every row of the tile.
        key_end = min(n_keys, q_start + n_q) if is_causal else n_keys
        for k_start in range(0, key_end, TILE_KEYS):
            k_tile = k[..., k_start : k_start + TILE_KEYS, :].float()
            v_tile = v[..., k_start : k_start + TILE_KEYS, :].float()
            scores = q_tile @ k_tile.transpose(-1, -2) * scale
            if is_causal and k_start + k_tile.shape[-2] - 1 > q_start:  # touches the diagonal
                keep = _causal_keep(q_start, n_q, k_start, k_tile.shape[-2], q.device)
                scores = scores.masked_fill(~keep, float("-inf"))
            new_max = torch.maximum(row_max, scores.amax(dim=-1))
            probs = torch.exp(scores - new_max[..., None])
            correction = torch.exp(row_max - new_max)  # rescales what was summed so far
            row_sum = row_sum * correction + probs.sum(dim=-1)
            acc = acc * correction[..., None] + probs @ v_tile
            row_max = new_max
        out[..., q_start : q_start + n_q, :] = acc / row_sum[..., None]
        logsumexp[..., q_start : q_start + n_q] = row_max + torch.log(row_sum)
    return out.to(q.dtype), logsumexp


def flash_attention_torch_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    logsumexp: torch.Tensor,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiled backward pass by recomputation: P = exp(S - L), dS = P * (dP - rowsum(dO * O))."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    n_queries, n_keys = q.shape[-2], k.shape[-2]
    delta = (grad_out.float() * out.float()).sum(dim=-1)  # D, one per query
    grad_q = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    grad_k = torch.zeros(k.shape, dtype=torch.float32, device=q.device)
    grad_v = torch.zeros(v.shape, dtype=torch.float32, device=q.device)
    for k_start in range(0, n_keys, TILE_KEYS):
        k_tile = k[..., k_start : k_start + TILE_KEYS, :].float()
        v_tile = v[..., k_start : k_start + TILE_KEYS, :].float()
        n_k = k_tile.shape[-2]
        # Causal: queries before the tile's first key see none of its keys.
        q_begin = (k_start // TILE_QUERIES) * TILE_QUERIES if is_causal else 0
        for q_start in range(q_begin, n_queries, TILE_QUERIES):
            q_slice = slice(q_start, q_start + TILE_QUERIES)
            q_tile = q[..., q_slice, :].float()
            do_tile = grad_out[..., q_slice, :].float()
            n_q = q_tile.shape[-2]
            scores = q_tile @ k_tile.transpose(-1, -2) * scale
            probs = torch.exp(scores - logsumexp[..., q_slice, None])
            if is_causal:
                probs = probs * _causal_keep(q_start, n_q, k_start, n_k, q.device)
            grad_v[..., k_start : k_start + n_k, :] += probs.transpose(-1, -2) @ do_tile
            grad_probs = do_tile @ v_tile.transpose(-1, -2)
            grad_scores = probs * (grad_probs - delta[..., q_slice, None])
            grad_q[..., q_slice, :] += grad_scores @ k_tile * scale
            grad_k[..., k_start : k_start + n_k, :] += (
                grad_scores.transpose(-1, -2) @ q_tile * scale
            )
    return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype)


class FlashAttention2Torch(torch.autograd.Function):
    """FlashAttention-2 as an autograd Function in PyTorch: saves only q, k, v, O and L."""

    @staticmethod
    def forward(ctx, q, k, v, is_causal=False):
        if q.dim() not in (3, 4) or q.shape[:-2] != k.shape[:-2] or k.shape != v.shape:
            raise ValueError(
                "flash attention expects q, k, v of shape (batch, seq, d) or (batch, heads, seq, d)"
                f" with matching batch/heads and k.shape == v.shape; got {tuple(q.shape)},"
                f" {tuple(k.shape)}, {tuple(v.shape)}"
            )
        out, logsumexp = flash_attention_torch_forward(q, k, v, is_causal)
        ctx.save_for_backward(q, k, v, out, logsumexp)
        ctx.is_causal = is_causal
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, logsumexp = ctx.saved_tensors
        grads = flash_attention_torch_backward(grad_out, q, k, v, out, logsumexp, ctx.is_causal)
        return *grads, None
