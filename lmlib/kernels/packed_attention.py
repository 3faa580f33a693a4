"""FlashAttention-2 straight from the packed q/k/v projection, with RoPE in one kernel each way.

Why: in a training step attention sits between one (batch, seq, 3 * d) projection and that
projection's gradient. Left to torch.compile, the RoPE backward and the concatenation of dQ, dK
and dV into the gradient were one Inductor kernel of 6 ms in a 67 ms GPT-2-small step on an
H200. Here the backward kernels write dQ, dK and dV into slices of one (batch, seq, 3, heads,
dim) buffer, which is the projection's gradient as it stands, and RoPE's backward turns dQ and
dK in place: nothing is concatenated, transposed or copied. The two rotation kernels take
1.3 ms per step, and the step runs at 1.06x the compiled torch.nn reference against 0.98x
before (benchmarks/RESULTS.md).

- RoPE rotates adjacent pairs, as `lmlib.model.layers.RotaryPositionalEmbedding` does, in
  float32 from the same (seq, dim / 2) cos and sin tables. The forward writes rotated q and k
  once, to a (batch, seq, 2, heads, dim) buffer the backward reads again (the memory the
  unpacked path keeps for them too). The backward rotates by the negative angle (R^T = R(-a)).
- What it covers: plain multi-head causal or full attention, positions 0 .. seq-1, power-of-two
  head dims from 16 to 256. The model takes this path when all of that holds (training and
  scoring), and the unpacked one otherwise (KV-cache decoding, given positions, GQA, QK-norm).
"""

import math

import torch
import triton
import triton.language as tl

from lmlib.kernels.flash_attention_triton import (
    MAX_HEAD_DIM,
    MIN_HEAD_DIM,
    _check_inputs,
    launch_backward,
    launch_forward,
)

ROTATE_BLOCK = 64  # sequence positions per rotation program


@triton.jit
def _rotate_pairs_kernel(
    X, Y, COS, SIN, stride_xz, stride_xs, stride_xh, stride_yz, stride_ys, stride_yh,
    seq, sin_sign, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    """Y[z, s, h] = pairs of X[z, s, h] rotated by angle s * frequency (by its negative when
    sin_sign is -1), computed in float32; X and Y may be the same memory. Rows are loaded and
    stored whole and split into even and odd lanes in registers: loads and stores of every
    other element ran at a twentieth of the memory bandwidth on an H200."""
    z = tl.program_id(1).to(tl.int64)
    h = tl.program_id(2).to(tl.int64)
    offs_s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_i = tl.arange(0, HEAD_DIM // 2)
    rows_ok = offs_s[:, None] < seq
    rows = offs_s[:, None].to(tl.int64)
    x = tl.load(X + z * stride_xz + h * stride_xh + rows * stride_xs + offs_d[None, :],
                mask=rows_ok, other=0.0).to(tl.float32)  # fmt: skip
    even, odd = tl.split(tl.reshape(x, (BLOCK_S, HEAD_DIM // 2, 2)))
    table = rows * (HEAD_DIM // 2) + offs_i[None, :]
    cos = tl.load(COS + table, mask=rows_ok, other=0.0).to(tl.float32)
    sin = tl.load(SIN + table, mask=rows_ok, other=0.0).to(tl.float32) * sin_sign
    y = tl.reshape(tl.join(even * cos - odd * sin, even * sin + odd * cos), (BLOCK_S, HEAD_DIM))
    tl.store(Y + z * stride_yz + h * stride_yh + rows * stride_ys + offs_d[None, :],
             y.to(Y.dtype.element_ty), mask=rows_ok)  # fmt: skip


def _rotate(source: torch.Tensor, target: torch.Tensor, cos, sin, sin_sign: float) -> None:
    """Rotates (batch, seq, heads, dim) `source` into `target` (unit stride on dim)."""
    batch, seq, heads, head_dim = source.shape
    grid = (triton.cdiv(seq, ROTATE_BLOCK), batch, heads)
    _rotate_pairs_kernel[grid](
        source, target, cos, sin, source.stride(0), source.stride(1), source.stride(2),
        target.stride(0), target.stride(1), target.stride(2), seq, sin_sign,
        HEAD_DIM=head_dim, BLOCK_S=ROTATE_BLOCK,
    )  # fmt: skip


def _split(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(batch, seq, 3 * heads * dim) -> (batch, seq, 3 * heads, dim), a view."""
    return qkv.view(*qkv.shape[:2], 3 * num_heads, -1)


def _heads(buffer: torch.Tensor, part: int, num_heads: int) -> torch.Tensor:
    """Part `part` (0 q, 1 k, 2 v) of a (batch, seq, parts * heads, dim) buffer as the kernels'
    (batch, heads, seq, dim) view."""
    return buffer[:, :, part * num_heads : (part + 1) * num_heads].transpose(1, 2)


@torch.library.custom_op("lmlib::packed_attention_forward", mutates_args=())
def _forward_op(
    qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int, is_causal: bool,
    sm_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    batch, seq, width = qkv.shape
    heads = _split(qkv, num_heads)
    rotated = qkv.new_empty(batch, seq, 2 * num_heads, heads.shape[-1])
    _rotate(heads[:, :, : 2 * num_heads], rotated, cos, sin, 1.0)
    out = qkv.new_empty(batch, seq, num_heads, heads.shape[-1])
    lse = torch.empty((batch, num_heads, seq), device=qkv.device, dtype=torch.float32)
    launch_forward(
        _heads(rotated, 0, num_heads), _heads(rotated, 1, num_heads), _heads(heads, 2, num_heads),
        out.transpose(1, 2), lse, is_causal, sm_scale,
    )  # fmt: skip
    return out.view(batch, seq, width // 3), lse, rotated


@_forward_op.register_fake
def _forward_fake(qkv, cos, sin, num_heads, is_causal, sm_scale):
    batch, seq, width = qkv.shape
    return (
        qkv.new_empty(batch, seq, width // 3),
        qkv.new_empty((batch, num_heads, seq), dtype=torch.float32),
        qkv.new_empty(batch, seq, 2 * num_heads, width // (3 * num_heads)),
    )


@torch.library.custom_op("lmlib::packed_attention_backward", mutates_args=())
def _backward_op(
    grad_out: torch.Tensor, qkv: torch.Tensor, rotated: torch.Tensor, out: torch.Tensor,
    lse: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int, is_causal: bool,
    sm_scale: float,
) -> torch.Tensor:  # fmt: skip
    batch, seq, width = qkv.shape
    heads = _split(qkv, num_heads)
    head_dim = heads.shape[-1]
    grad = torch.empty_like(heads, memory_format=torch.contiguous_format)
    grad_out = grad_out.reshape(batch, seq, num_heads, head_dim).transpose(1, 2)
    launch_backward(
        grad_out, _heads(rotated, 0, num_heads), _heads(rotated, 1, num_heads),
        _heads(heads, 2, num_heads), out.view(batch, seq, num_heads, head_dim).transpose(1, 2),
        lse, *(_heads(grad, part, num_heads) for part in range(3)), is_causal, sm_scale,
    )  # fmt: skip
    rotated_grads = grad[:, :, : 2 * num_heads]
    _rotate(rotated_grads, rotated_grads, cos, sin, -1.0)  # in place: R(a)^T = R(-a)
    return grad.view(batch, seq, width)


@_backward_op.register_fake
def _backward_fake(grad_out, qkv, rotated, out, lse, cos, sin, num_heads, is_causal, sm_scale):
    return torch.empty_like(qkv, memory_format=torch.contiguous_format)


def packed_attention_applies(head_dim: int) -> bool:
    """Whether the packed kernels take this head dim (a power of two, 16 to 256)."""
    return MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM and head_dim & (head_dim - 1) == 0


class PackedFlashAttention(torch.autograd.Function):
    """`PackedFlashAttention.apply(qkv, num_heads, cos, sin, is_causal)`: attention with RoPE on
    q and k from the (batch, seq, 3 * d) projection [q | k | v], heads of d / num_heads each;
    returns (batch, seq, d), the output projection's input. cos, sin: (seq, head_dim / 2)."""

    @staticmethod
    def forward(ctx, qkv, num_heads, cos, sin, is_causal=True):
        batch, seq, width = qkv.shape
        if width % (3 * num_heads):
            raise ValueError(f"packed q/k/v width {width} is not 3 x {num_heads} heads")
        head_dim = width // (3 * num_heads)
        if not packed_attention_applies(head_dim):
            raise ValueError(f"packed attention needs a power-of-two head dim from {MIN_HEAD_DIM} "
                             f"to {MAX_HEAD_DIM}, got {head_dim}")
        if cos.shape != (seq, head_dim // 2) or sin.shape != cos.shape:
            raise ValueError(f"RoPE tables must be ({seq}, {head_dim // 2}); got "
                             f"{tuple(cos.shape)} and {tuple(sin.shape)}")
        qkv = qkv.contiguous()
        heads = _split(qkv, num_heads)
        _check_inputs(*(_heads(heads, part, num_heads) for part in range(3)))
        cos, sin = cos.contiguous(), sin.contiguous()
        sm_scale = 1.0 / math.sqrt(head_dim)
        out, lse, rotated = _forward_op(qkv, cos, sin, num_heads, is_causal, sm_scale)
        ctx.save_for_backward(qkv, rotated, out, lse, cos, sin)
        ctx.num_heads, ctx.is_causal, ctx.sm_scale = num_heads, is_causal, sm_scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qkv, rotated, out, lse, cos, sin = ctx.saved_tensors
        grad = _backward_op(grad_out, qkv, rotated, out, lse, cos, sin, ctx.num_heads,
                            ctx.is_causal, ctx.sm_scale)
        return grad, None, None, None, None


def packed_flash_attention(
    qkv: torch.Tensor, num_heads: int, cos: torch.Tensor, sin: torch.Tensor, is_causal: bool = True
) -> torch.Tensor:
    """Attention from the packed projection: see `PackedFlashAttention`. CUDA, or the CPU under
    TRITON_INTERPRET=1 (the kernels' input checks say so otherwise)."""
    if qkv.dim() != 3:
        raise ValueError(f"packed attention expects (batch, seq, 3 * d); got {tuple(qkv.shape)}")
    return PackedFlashAttention.apply(qkv, num_heads, cos, sin, is_causal)
