"""Candidate attention kernels against the landed ones and SDPA cuDNN, in one run (H200).

Why: the landed FlashAttention-2 is 0.71-0.86x cuDNN at S >= 4k, the backward furthest behind
(benchmarks/RESULTS.md). Each candidate here tests one idea, with its prediction written in
RESULTS.md before it ran; a candidate that wins moves into lmlib.kernels, one that loses stays
here as the record of what was tried.

- `tma`: the forward with K and V (and Q, O) moved by the tensor-memory accelerator through
  device-side tensor descriptors instead of pointer loads. The one winner (4-10% at head dim
  128): built into lmlib.kernels in commit 5be051c and reverted in 0e7048e until its GPU tests
  can run.
- `ws`: forward, dK/dV and dQ kernels with one key (or query) loop masked on every tile and
  Triton's automatic warp specialisation: a producer warp group issues TMA copies, two consumer
  warp groups split the tile. (Triton 3.6 crashes specialising a kernel with two loops and
  leaves a loop with a run-time masking branch unspecialised, hence the one masked loop.)
- `ws-dkdv`: only the dK/dV kernel warp-specialised, with the landed dQ kernel.
- `more-tiles`: the landed backward with its dK/dV kernel also offered the tiles that `ptxas`
  compiles without spilling at head dim 128.
- `atomic`: the backward in one kernel per key tile that also adds each tile pair's dQ share
  into a float32 buffer with atomics: five matrix products per tile pair instead of the landed
  kernels' seven (dK/dV four, dQ three), as FlashAttention-2's CUDA kernels do.
- `atomic-tma`: the same with dQ added by the TMA's reduce-add (`cp.reduce.async.bulk.tensor`),
  as FlashAttention-3 does.

Same tensors for every candidate: bfloat16, (batch, heads, seq, dim) with batch * seq = 16k and
heads * dim = 2048, as in bench_attention.py. Outputs and gradients are checked against SDPA's
FLASH backend before any timing.

    python benchmarks/bench_attention_variants.py [--shapes 4096:128:1,...] [--json out.json]
"""

import argparse
import json
import math
import os
from functools import partial

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.nn.attention import SDPBackend, sdpa_kernel

from lmlib.kernels import flash_attention_triton as fa

INTERPRET = fa.INTERPRET


def _tiles(tiles):
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=4, num_stages=1)]
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        for m, n, w, s in tiles
    ]


# ----------------------------------------------------------------------------- forward (TMA)


@triton.jit
def _kv_descriptor(X, stride_z, stride_s, batch, n_heads, seq, HEAD_MAJOR: tl.constexpr,
                   HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """A 3-D descriptor over a (batch, heads, seq, dim) view: (batch * heads, seq, dim) for
    head-major memory, (batch, seq, heads * dim) for sequence-major memory."""
    if HEAD_MAJOR:
        return tl.make_tensor_descriptor(
            X, shape=[batch * n_heads, seq, HEAD_DIM], strides=[stride_z // n_heads, stride_s, 1],
            block_shape=[1, BLOCK, HEAD_DIM],
        )  # fmt: skip
    return tl.make_tensor_descriptor(
        X, shape=[batch, seq, n_heads * HEAD_DIM], strides=[stride_z, stride_s, 1],
        block_shape=[1, BLOCK, HEAD_DIM],
    )  # fmt: skip


@triton.jit
def _tile(desc, z, h, row, n_heads, HEAD_MAJOR: tl.constexpr, HEAD_DIM: tl.constexpr,
          BLOCK: tl.constexpr):  # fmt: skip
    if HEAD_MAJOR:
        block = desc.load([z * n_heads + h, row, 0])
    else:
        block = desc.load([z, row, h * HEAD_DIM])
    return block.reshape(BLOCK, HEAD_DIM)


@triton.jit
def _softmax_step(acc, row_sum, row_max, scores, v, qk_scale):
    """One key tile of the online softmax in base 2 (the landed forward's update)."""
    new_max = tl.maximum(row_max, tl.max(scores, 1) * qk_scale)
    probs = tl.exp2(scores * qk_scale - new_max[:, None])
    correction = tl.exp2(row_max - new_max)
    row_sum = row_sum * correction + tl.sum(probs, 1)
    acc = acc * correction[:, None]
    acc = tl.dot(probs.to(v.dtype), v, acc)
    return acc, row_sum, new_max


@triton.jit
def _fwd_tma_loop(
    acc, row_sum, row_max, q, k_desc, v_desc, z, h, n_heads, offs_m, key_lo, key_hi, seq_k,
    qk_scale, HEAD_MAJOR: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr,
):  # fmt: skip
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(key_lo, key_hi, BLOCK_N):
        k = _tile(k_desc, z, h, start_n, n_heads, HEAD_MAJOR, HEAD_DIM, BLOCK_N)
        v = _tile(v_desc, z, h, start_n, n_heads, HEAD_MAJOR, HEAD_DIM, BLOCK_N)
        scores = tl.dot(q, tl.trans(k))
        if MASKED:
            key_index = start_n + offs_n
            keep = key_index[None, :] < seq_k
            if IS_CAUSAL:
                keep = keep & (key_index[None, :] <= offs_m[:, None])
            scores = tl.where(keep, scores, float("-inf"))
        acc, row_sum, row_max = _softmax_step(acc, row_sum, row_max, scores, v, qk_scale)
    return acc, row_sum, row_max


@triton.jit
def _fwd_tma_kernel(
    Q, K, V, Out, LSE, sm_scale, stride_qz, stride_qs, stride_kz, stride_ks, stride_vz,
    stride_vs, stride_oz, stride_os, batch, n_heads, seq_q, seq_k, seq_bucket,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, HEAD_MAJOR: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    if IS_CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    z = bh // n_heads
    h = bh % n_heads
    q_desc = _kv_descriptor(Q, stride_qz, stride_qs, batch, n_heads, seq_q, HEAD_MAJOR,
                            HEAD_DIM, BLOCK_M)  # fmt: skip
    k_desc = _kv_descriptor(K, stride_kz, stride_ks, batch, n_heads, seq_k, HEAD_MAJOR,
                            HEAD_DIM, BLOCK_N)  # fmt: skip
    v_desc = _kv_descriptor(V, stride_vz, stride_vs, batch, n_heads, seq_k, HEAD_MAJOR,
                            HEAD_DIM, BLOCK_N)  # fmt: skip
    o_desc = _kv_descriptor(Out, stride_oz, stride_os, batch, n_heads, seq_q, HEAD_MAJOR,
                            HEAD_DIM, BLOCK_M)  # fmt: skip
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    q = _tile(q_desc, z, h, pid_m * BLOCK_M, n_heads, HEAD_MAJOR, HEAD_DIM, BLOCK_M)
    qk_scale = sm_scale * 1.4426950408889634
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full_k_end = (seq_k // BLOCK_N) * BLOCK_N
    if IS_CAUSAL:
        unmasked_end = tl.minimum(pid_m * BLOCK_M, full_k_end)
        masked_end = tl.minimum((pid_m + 1) * BLOCK_M, seq_k)
    else:
        unmasked_end = full_k_end
        masked_end = seq_k
    acc, row_sum, row_max = _fwd_tma_loop(
        acc, row_sum, row_max, q, k_desc, v_desc, z, h, n_heads, offs_m, 0, unmasked_end, seq_k,
        qk_scale, HEAD_MAJOR, HEAD_DIM, BLOCK_N, False, IS_CAUSAL,
    )  # fmt: skip
    acc, row_sum, row_max = _fwd_tma_loop(
        acc, row_sum, row_max, q, k_desc, v_desc, z, h, n_heads, offs_m, unmasked_end,
        masked_end, seq_k, qk_scale, HEAD_MAJOR, HEAD_DIM, BLOCK_N, True, IS_CAUSAL,
    )  # fmt: skip
    acc = acc / row_sum[:, None]
    lse = (row_max + tl.log2(row_sum)) * 0.6931471805599453
    out = acc.to(Out.dtype.element_ty).reshape(1, BLOCK_M, HEAD_DIM)
    if HEAD_MAJOR:
        o_desc.store([z * n_heads + h, pid_m * BLOCK_M, 0], out)
    else:
        o_desc.store([z, pid_m * BLOCK_M, h * HEAD_DIM], out)
    tl.store(LSE + bh.to(tl.int64) * seq_q + offs_m, lse, mask=offs_m < seq_q)


FWD_TMA_TILES = [(128, 64, 4, 3), (128, 128, 8, 3), (128, 64, 8, 3), (128, 128, 8, 2)]
_FWD_TMA = triton.autotune(_tiles(FWD_TMA_TILES), fa.TUNE_KEY)(_fwd_tma_kernel)


def _head_major(t: torch.Tensor) -> bool:
    """Head-major (batch, heads, seq, dim) memory, or sequence-major (batch, seq, heads, dim)."""
    batch, heads, seq, dim = t.shape
    if t.stride(1) == seq * dim and t.stride(2) == dim and t.stride(0) == heads * seq * dim:
        return True
    if t.stride(1) == dim and t.stride(3) == 1:
        return False
    raise ValueError(f"no descriptor layout for strides {t.stride()}")


def forward_tma(q, k, v, is_causal: bool):
    batch, heads, seq_q, dim = q.shape
    seq_k = k.shape[2]
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:-1], device=q.device, dtype=torch.float32)
    head_major = _head_major(q)
    assert _head_major(k) == head_major == _head_major(v)

    def grid(meta):
        return (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads)

    _FWD_TMA[grid](
        q, k, v, out, lse, 1.0 / math.sqrt(dim), q.stride(0), q.stride(2), k.stride(0),
        k.stride(2), v.stride(0), v.stride(2), out.stride(0), out.stride(2), batch, heads, seq_q,
        seq_k, fa._seq_bucket(seq_q, seq_k), HEAD_DIM=dim, IS_CAUSAL=is_causal,
        HEAD_MAJOR=head_major,
    )  # fmt: skip
    return out, lse


# ----------------------------------------------------------------------------- backward (atomic dQ)


@triton.jit
def _atomic_query_loop(
    dk, dv, k, v, q_base, do_base, lse_base, delta_base, dq_base, dq_desc, bh, stride_qs,
    stride_dos, offs_n, offs_d, query_lo, query_hi, seq_q, qk_scale,
    BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
    IS_CAUSAL: tl.constexpr, TMA_DQ: tl.constexpr,
):  # fmt: skip
    offs_m = tl.arange(0, BLOCK_M)
    for start_m in range(query_lo, query_hi, BLOCK_M):
        query_index = start_m + offs_m
        row_ok = query_index < seq_q
        q_ptrs = q_base + query_index[:, None] * stride_qs + offs_d[None, :]
        do_ptrs = do_base + query_index[:, None] * stride_dos + offs_d[None, :]
        if MASKED:
            q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
            do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
            lse = tl.load(lse_base + query_index, mask=row_ok, other=0.0)
            delta = tl.load(delta_base + query_index, mask=row_ok, other=0.0)
        else:
            q = tl.load(q_ptrs)
            do = tl.load(do_ptrs)
            lse = tl.load(lse_base + query_index)
            delta = tl.load(delta_base + query_index)
        scores_t = tl.dot(k, tl.trans(q))
        probs_t = tl.exp2(scores_t * qk_scale - (lse * 1.4426950408889634)[None, :])
        if MASKED and IS_CAUSAL:
            probs_t = tl.where(query_index[None, :] >= offs_n[:, None], probs_t, 0.0)
        dv = tl.dot(probs_t.to(do.dtype), do, dv)
        grad_probs_t = tl.dot(v, tl.trans(do))
        grad_scores_t = (probs_t * (grad_probs_t - delta[None, :])).to(q.dtype)
        dk = tl.dot(grad_scores_t, q, dk)
        dq = tl.dot(tl.trans(grad_scores_t), k)  # this tile pair's share of dQ (unscaled)
        if TMA_DQ:
            dq_desc.atomic_add([bh, start_m, 0], dq.reshape(1, BLOCK_M, HEAD_DIM))
        else:
            tl.atomic_add(dq_base + query_index[:, None] * HEAD_DIM + offs_d[None, :], dq,
                          mask=row_ok[:, None], sem="relaxed")  # fmt: skip
    return dk, dv


@triton.jit
def _bwd_atomic_kernel(
    Q, K, V, DO, DK, DV, DQACC, LSE, DELTA, sm_scale,
    stride_qz, stride_qh, stride_qs, stride_kz, stride_kh, stride_ks,
    stride_vz, stride_vh, stride_vs, stride_doz, stride_doh, stride_dos,
    stride_dkz, stride_dkh, stride_dks, stride_dvz, stride_dvh, stride_dvs,
    n_heads, seq_q, seq_k, seq_bucket, n_bh,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, TMA_DQ: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    z = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    q_base = Q + z * stride_qz + h * stride_qh
    do_base = DO + z * stride_doz + h * stride_doh
    lse_base = LSE + bh.to(tl.int64) * seq_q
    delta_base = DELTA + bh.to(tl.int64) * seq_q
    dq_base = DQACC + bh.to(tl.int64) * seq_q * HEAD_DIM
    dq_desc = tl.make_tensor_descriptor(
        DQACC, shape=[n_bh, seq_q, HEAD_DIM], strides=[seq_q * HEAD_DIM, HEAD_DIM, 1],
        block_shape=[1, BLOCK_M, HEAD_DIM],
    )  # fmt: skip

    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = offs_n[:, None] < seq_k
    k = tl.load(K + z * stride_kz + h * stride_kh + offs_n[:, None] * stride_ks + offs_d[None, :],
                mask=key_ok, other=0.0)  # fmt: skip
    v = tl.load(V + z * stride_vz + h * stride_vh + offs_n[:, None] * stride_vs + offs_d[None, :],
                mask=key_ok, other=0.0)  # fmt: skip
    qk_scale = sm_scale * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    full_q_end = (seq_q // BLOCK_M) * BLOCK_M
    if IS_CAUSAL:
        dk, dv = _atomic_query_loop(
            dk, dv, k, v, q_base, do_base, lse_base, delta_base, dq_base, dq_desc, bh, stride_qs,
            stride_dos, offs_n, offs_d, start_n, tl.minimum(start_n + BLOCK_N, seq_q), seq_q,
            qk_scale, BLOCK_M, HEAD_DIM, True, IS_CAUSAL, TMA_DQ,
        )  # fmt: skip
        query_lo = start_n + BLOCK_N
    else:
        query_lo = 0
    dk, dv = _atomic_query_loop(
        dk, dv, k, v, q_base, do_base, lse_base, delta_base, dq_base, dq_desc, bh, stride_qs,
        stride_dos, offs_n, offs_d, query_lo, full_q_end, seq_q, qk_scale,
        BLOCK_M, HEAD_DIM, False, IS_CAUSAL, TMA_DQ,
    )  # fmt: skip
    dk, dv = _atomic_query_loop(
        dk, dv, k, v, q_base, do_base, lse_base, delta_base, dq_base, dq_desc, bh, stride_qs,
        stride_dos, offs_n, offs_d, tl.maximum(query_lo, full_q_end), seq_q, seq_q, qk_scale,
        BLOCK_M, HEAD_DIM, True, IS_CAUSAL, TMA_DQ,
    )  # fmt: skip
    dk = dk * sm_scale
    tl.store(DK + z * stride_dkz + h * stride_dkh + offs_n[:, None] * stride_dks + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=key_ok)  # fmt: skip
    tl.store(DV + z * stride_dvz + h * stride_dvh + offs_n[:, None] * stride_dvs + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=key_ok)  # fmt: skip


ATOMIC_TILES = [(64, 128, 8, 2), (64, 128, 8, 3), (32, 128, 4, 3), (64, 64, 4, 3), (32, 128, 8, 3)]
_ATOMIC = triton.autotune(_tiles(ATOMIC_TILES), fa.TUNE_KEY + ["TMA_DQ"], reset_to_zero=["DQACC"])(
    _bwd_atomic_kernel
)


def backward_atomic(grad_out, q, k, v, out, lse, is_causal: bool, tma_dq: bool):
    batch, heads, seq_q, dim = q.shape
    seq_k = k.shape[2]
    delta = torch.empty_like(lse)
    fa._bwd_delta_kernel[(triton.cdiv(seq_q, 64), batch * heads)](
        out, grad_out, delta, *fa._strides(out), *fa._strides(grad_out), heads, seq_q,
        HEAD_DIM=dim, BLOCK_M=64,
    )  # fmt: skip
    dq_acc = torch.zeros(batch, heads, seq_q, dim, device=q.device, dtype=torch.float32)
    grad_k, grad_v = torch.empty_like(k), torch.empty_like(v)

    def grid(meta):
        return (triton.cdiv(seq_k, meta["BLOCK_N"]), batch * heads)

    _ATOMIC[grid](
        q, k, v, grad_out, grad_k, grad_v, dq_acc, lse, delta, 1.0 / math.sqrt(dim),
        *fa._strides(q), *fa._strides(k), *fa._strides(v), *fa._strides(grad_out),
        *fa._strides(grad_k), *fa._strides(grad_v), heads, seq_q, seq_k,
        fa._seq_bucket(seq_q, seq_k), batch * heads, HEAD_DIM=dim, IS_CAUSAL=is_causal,
        TMA_DQ=tma_dq,
    )  # fmt: skip
    grad_q = (dq_acc * (1.0 / math.sqrt(dim))).to(q.dtype)
    return grad_q, grad_k, grad_v


# ----------------------------------------------------------------------------- warp-specialised


@triton.jit
def _rows(X, total_rows, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """A 2-D descriptor over contiguous head-major memory: (batch * heads * seq, dim). Tiles past
    a sequence's end read the next sequence's rows; the masks zero what they contribute."""
    return tl.make_tensor_descriptor(X, shape=[total_rows, HEAD_DIM], strides=[HEAD_DIM, 1],
                                     block_shape=[BLOCK, HEAD_DIM])  # fmt: skip


@triton.jit
def _fwd_ws_kernel(
    Q, K, V, Out, LSE, sm_scale, seq, total_rows, seq_bucket,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One key loop, masked on every tile, with Triton's warp specialisation: one producer warp
    group issues the TMA copies, two consumer warp groups split the query tile (Triton 3.6
    specialises a single loop only: two loops, or a mask under a run-time branch, are refused
    or left unspecialised)."""
    pid_m = tl.program_id(0)
    if IS_CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    row0 = bh * seq
    k_desc = _rows(K, total_rows, HEAD_DIM, BLOCK_N)
    v_desc = _rows(V, total_rows, HEAD_DIM, BLOCK_N)
    q = _rows(Q, total_rows, HEAD_DIM, BLOCK_M).load([row0 + pid_m * BLOCK_M, 0])
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    qk_scale = sm_scale * 1.4426950408889634
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    key_hi = tl.minimum((pid_m + 1) * BLOCK_M, seq) if IS_CAUSAL else seq
    for start_n in tl.range(0, key_hi, BLOCK_N, warp_specialize=True):
        k = k_desc.load([row0 + start_n, 0])
        v = v_desc.load([row0 + start_n, 0])
        scores = tl.dot(q, tl.trans(k))
        key_index = start_n + offs_n
        keep = key_index[None, :] < seq
        if IS_CAUSAL:
            keep = keep & (key_index[None, :] <= offs_m[:, None])
        scores = tl.where(keep, scores, float("-inf"))
        acc, row_sum, row_max = _softmax_step(acc, row_sum, row_max, scores, v, qk_scale)
    acc = acc / row_sum[:, None]
    row_ok = offs_m < seq
    offs_d = tl.arange(0, HEAD_DIM)
    rows = (row0 + offs_m).to(tl.int64)
    tl.store(Out + rows[:, None] * HEAD_DIM + offs_d[None, :], acc.to(Out.dtype.element_ty),
             mask=row_ok[:, None])  # fmt: skip
    tl.store(LSE + rows, (row_max + tl.log2(row_sum)) * 0.6931471805599453, mask=row_ok)


@triton.jit
def _dkdv_ws_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, sm_scale, seq, total_rows, seq_bucket,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """dK and dV for one key tile, one masked query loop, warp-specialised."""
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    row0 = bh * seq
    q_desc = _rows(Q, total_rows, HEAD_DIM, BLOCK_M)
    do_desc = _rows(DO, total_rows, HEAD_DIM, BLOCK_M)
    start_n = pid_n * BLOCK_N
    k = _rows(K, total_rows, HEAD_DIM, BLOCK_N).load([row0 + start_n, 0])
    v = _rows(V, total_rows, HEAD_DIM, BLOCK_N).load([row0 + start_n, 0])
    offs_n = start_n + tl.arange(0, BLOCK_N)
    qk_scale = sm_scale * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    query_lo = (start_n // BLOCK_M) * BLOCK_M if IS_CAUSAL else 0
    for start_m in tl.range(query_lo, seq, BLOCK_M, warp_specialize=True):
        q = q_desc.load([row0 + start_m, 0])
        do = do_desc.load([row0 + start_m, 0])
        query_index = start_m + tl.arange(0, BLOCK_M)
        row_ok = query_index < seq
        lse = tl.load(LSE + row0 + query_index, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + row0 + query_index, mask=row_ok, other=0.0)
        scores_t = tl.dot(k, tl.trans(q))
        probs_t = tl.exp2(scores_t * qk_scale - (lse * 1.4426950408889634)[None, :])
        keep = row_ok[None, :]
        if IS_CAUSAL:
            keep = keep & (query_index[None, :] >= offs_n[:, None])
        probs_t = tl.where(keep, probs_t, 0.0)
        dv = tl.dot(probs_t.to(do.dtype), do, dv)
        grad_scores_t = probs_t * (tl.dot(v, tl.trans(do)) - delta[None, :])
        dk = tl.dot(grad_scores_t.to(q.dtype), q, dk)
    key_ok = offs_n[:, None] < seq
    rows = (row0 + offs_n).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    tl.store(DK + rows[:, None] * HEAD_DIM + offs_d[None, :],
             (dk * sm_scale).to(DK.dtype.element_ty), mask=key_ok)  # fmt: skip
    tl.store(DV + rows[:, None] * HEAD_DIM + offs_d[None, :], dv.to(DV.dtype.element_ty),
             mask=key_ok)  # fmt: skip


@triton.jit
def _dq_ws_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, sm_scale, seq, total_rows, seq_bucket,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """dQ for one query tile, one masked key loop, warp-specialised."""
    pid_m = tl.program_id(0)
    if IS_CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    row0 = bh * seq
    k_desc = _rows(K, total_rows, HEAD_DIM, BLOCK_N)
    v_desc = _rows(V, total_rows, HEAD_DIM, BLOCK_N)
    start_m = pid_m * BLOCK_M
    q = _rows(Q, total_rows, HEAD_DIM, BLOCK_M).load([row0 + start_m, 0])
    do = _rows(DO, total_rows, HEAD_DIM, BLOCK_M).load([row0 + start_m, 0])
    offs_m = start_m + tl.arange(0, BLOCK_M)
    row_ok = offs_m < seq
    lse2 = tl.load(LSE + row0 + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + row0 + offs_m, mask=row_ok, other=0.0)
    qk_scale = sm_scale * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    key_hi = tl.minimum(start_m + BLOCK_M, seq) if IS_CAUSAL else seq
    for start_n in tl.range(0, key_hi, BLOCK_N, warp_specialize=True):
        k = k_desc.load([row0 + start_n, 0])
        v = v_desc.load([row0 + start_n, 0])
        key_index = start_n + tl.arange(0, BLOCK_N)
        probs = tl.exp2(tl.dot(q, tl.trans(k)) * qk_scale - lse2[:, None])
        keep = key_index[None, :] < seq
        if IS_CAUSAL:
            keep = keep & (key_index[None, :] <= offs_m[:, None])
        probs = tl.where(keep, probs, 0.0)
        grad_scores = probs * (tl.dot(do, tl.trans(v)) - delta[:, None])
        dq = tl.dot(grad_scores.to(k.dtype), k, dq)
    rows = (row0 + offs_m).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    tl.store(DQ + rows[:, None] * HEAD_DIM + offs_d[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])  # fmt: skip


FWD_WS_TILES = [(128, 64, 4, 3), (128, 64, 4, 2), (128, 128, 4, 2), (128, 32, 4, 3)]
DKDV_WS_TILES = [(32, 128, 4, 3), (64, 128, 4, 2), (64, 64, 4, 3), (32, 128, 4, 2)]
DQ_WS_TILES = [(64, 64, 4, 3), (64, 64, 4, 2), (64, 32, 4, 3)]
_FWD_WS = triton.autotune(_tiles(FWD_WS_TILES), fa.TUNE_KEY)(_fwd_ws_kernel)
_DKDV_WS = triton.autotune(_tiles(DKDV_WS_TILES), fa.TUNE_KEY)(_dkdv_ws_kernel)
_DQ_WS = triton.autotune(_tiles(DQ_WS_TILES), fa.TUNE_KEY)(_dq_ws_kernel)


def _check_head_major(*tensors) -> None:
    for t in tensors:
        if not (t.is_contiguous() and _head_major(t)):
            raise ValueError("the warp-specialised candidates take contiguous head-major tensors")


def forward_ws(q, k, v, is_causal: bool):
    _check_head_major(q, k, v)
    batch, heads, seq, dim = q.shape
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:-1], device=q.device, dtype=torch.float32)

    def grid(meta):
        return (triton.cdiv(seq, meta["BLOCK_M"]), batch * heads)

    _FWD_WS[grid](q, k, v, out, lse, 1.0 / math.sqrt(dim), seq, batch * heads * seq,
                  fa._seq_bucket(seq, seq), HEAD_DIM=dim, IS_CAUSAL=is_causal)  # fmt: skip
    return out, lse


def backward_ws(grad_out, q, k, v, out, lse, is_causal: bool, ws_dq: bool = True):
    """The landed delta kernel, then the warp-specialised dK/dV kernel, then dQ (specialised
    too, or the landed dQ kernel)."""
    _check_head_major(grad_out, q, k, v, out)
    batch, heads, seq, dim = q.shape
    sm_scale = 1.0 / math.sqrt(dim)
    delta = torch.empty_like(lse)
    fa._bwd_delta_kernel[(triton.cdiv(seq, 64), batch * heads)](
        out, grad_out, delta, *fa._strides(out), *fa._strides(grad_out), heads, seq,
        HEAD_DIM=dim, BLOCK_M=64,
    )  # fmt: skip
    grad_q, grad_k, grad_v = (torch.empty_like(t) for t in (q, k, v))
    rows, bucket = batch * heads * seq, fa._seq_bucket(seq, seq)

    def keys(meta):
        return (triton.cdiv(seq, meta["BLOCK_N"]), batch * heads)

    def queries(meta):
        return (triton.cdiv(seq, meta["BLOCK_M"]), batch * heads)

    _DKDV_WS[keys](q, k, v, grad_out, grad_k, grad_v, lse, delta, sm_scale, seq, rows, bucket,
                   HEAD_DIM=dim, IS_CAUSAL=is_causal)  # fmt: skip
    if ws_dq:
        _DQ_WS[queries](q, k, v, grad_out, grad_q, lse, delta, sm_scale, seq, rows, bucket,
                        HEAD_DIM=dim, IS_CAUSAL=is_causal)  # fmt: skip
    else:
        fa.launch(
            fa._DQ["up_to_128"], queries, "dq", "landed", q, k, v, grad_out, grad_q, lse, delta,
            sm_scale, *fa._strides(q), *fa._strides(k), *fa._strides(v),
            *fa._strides(grad_out), *fa._strides(grad_q), heads, seq, seq, bucket,
            **fa._common_meta(q, is_causal),
        )  # fmt: skip
    return grad_q, grad_k, grad_v


# ----------------------------------------------------------------------------- landed, more tiles

# Tiles the landed lists lack that ptxas compiles without spilling at head dim 128 (checked off
# the GPU with Triton 3.6's ptxas): the landed dK/dV choice, 64x128 on 8 warps, spills.
_DKDV_MORE = triton.autotune(
    _tiles(fa.DKDV_TILES + [(32, 128, 8, 3), (64, 64, 8, 3), (32, 128, 8, 2)]), fa.TUNE_KEY
)(fa._bwd_dkdv_kernel)


def backward_more_tiles(grad_out, q, k, v, out, lse, is_causal: bool):
    """The landed backward with the dK/dV kernel tuned over more tiles."""
    saved = fa._DKDV["up_to_128"]
    fa._DKDV["up_to_128"] = _DKDV_MORE
    try:
        return landed_backward(grad_out, q, k, v, out, lse, is_causal)
    finally:
        fa._DKDV["up_to_128"] = saved


# ----------------------------------------------------------------------------- harness


def landed_forward(q, k, v, is_causal):
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:-1], device=q.device, dtype=torch.float32)
    fa.launch_forward(q, k, v, out, lse, is_causal, 1.0 / math.sqrt(q.shape[-1]))
    return out, lse


def landed_backward(grad_out, q, k, v, out, lse, is_causal):
    grads = [torch.empty_like(t) for t in (q, k, v)]
    fa.launch_backward(grad_out, q, k, v, out, lse, *grads, is_causal, 1.0 / math.sqrt(q.shape[-1]))
    return grads


def _reference(q, k, v, grad_out, is_causal):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    backend = SDPBackend.MATH if INTERPRET else SDPBackend.FLASH_ATTENTION
    with sdpa_kernel(backend):
        out = F.scaled_dot_product_attention(*leaves, is_causal=is_causal)
    out.backward(grad_out)
    return out.detach(), [t.grad for t in leaves]


def _max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


FORWARDS = {  # name -> fn(q, k, v, is_causal) -> (O, logsumexp)
    "landed": landed_forward,
    "tma": forward_tma,
    "ws": forward_ws,
}
BACKWARDS = {  # name -> fn(grad_out, q, k, v, O, logsumexp, is_causal) -> (dQ, dK, dV)
    "landed": landed_backward,
    "more-tiles": backward_more_tiles,
    "atomic": lambda *a: backward_atomic(*a, tma_dq=False),
    "atomic-tma": lambda *a: backward_atomic(*a, tma_dq=True),
    "ws": backward_ws,
    "ws-dkdv": lambda *a: backward_ws(*a, ws_dq=False),
}


def check(q, k, v, grad_out, is_causal) -> dict:
    """Largest absolute differences of each candidate's O, dQ, dK, dV from SDPA's; the error's
    text for a candidate that fails to compile or run."""
    ref_out, ref_grads = _reference(q, k, v, grad_out, is_causal)
    out, lse = landed_forward(q, k, v, is_causal)
    found = {}
    for name, forward in FORWARDS.items():
        try:
            found[f"{name}_fwd"] = _max_diff(forward(q, k, v, is_causal)[0], ref_out)
        except Exception as error:  # a candidate may not compile here
            found[f"{name}_fwd"] = f"failed: {str(error)[:300]}"
    for name, backward in BACKWARDS.items():
        try:
            grads = backward(grad_out, q, k, v, out, lse, is_causal)
            found[f"{name}_bwd"] = max(_max_diff(g, r) for g, r in zip(grads, ref_grads))
        except Exception as error:
            found[f"{name}_bwd"] = f"failed: {str(error)[:300]}"
    return found


def bench(seq: int, head_dim: int, causal: bool) -> dict:
    heads, batch = 2048 // head_dim, max(1, 16384 // seq)
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, grad_out = (
        torch.randn(batch, heads, seq, head_dim, device="cuda", generator=gen).to(torch.bfloat16)
        for _ in range(4)
    )
    row = {"seq": seq, "head_dim": head_dim, "causal": causal, "batch": batch, "heads": heads}
    row["max_abs_diff"] = check(q, k, v, grad_out, causal)
    fwd_flops = 4.0 * batch * heads * seq * seq * head_dim / (2 if causal else 1)
    out, lse = landed_forward(q, k, v, causal)
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        cudnn_out = F.scaled_dot_product_attention(*leaves, is_causal=causal)

    def cudnn_fwd():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    forwards = {"cuDNN": cudnn_fwd} | {
        name: partial(f, q, k, v, causal) for name, f in FORWARDS.items()
    }
    backwards = {"cuDNN": lambda: cudnn_out.backward(grad_out, retain_graph=True)} | {
        name: partial(f, grad_out, q, k, v, out, lse, causal) for name, f in BACKWARDS.items()
    }
    for mode, fns, flops in (("fwd", forwards, fwd_flops), ("bwd", backwards, 2.5 * fwd_flops)):
        for name, fn in fns.items():
            if isinstance(row["max_abs_diff"].get(f"{name}_{mode}"), str):
                continue
            ms = triton.testing.do_bench(fn, grad_to_none=leaves, return_mode="median")
            row[f"{name}_{mode}_ms"] = ms
            row[f"{name}_{mode}_tflops"] = flops / (ms * 1e-3) / 1e12
    return row


def profile_once(seq: int, head_dim: int, causal: bool) -> None:
    """One call of each kernel between cudaProfilerStart/Stop, after a warm-up, for
    `ncu --profile-from-start off` (tiles come from the disk cache a timed run left)."""
    heads, batch = 2048 // head_dim, max(1, 16384 // seq)
    q, k, v, grad_out = (torch.randn(batch, heads, seq, head_dim, device="cuda",
                                     dtype=torch.bfloat16) for _ in range(4))  # fmt: skip
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out, lse = landed_forward(q, k, v, causal)

    def everything():
        for name, forward in FORWARDS.items():
            try:
                forward(q, k, v, causal)
            except Exception as error:  # a candidate that does not compile is left out
                print(f"{name} left out of the profile: {str(error)[:200]}")
        for name, backward in BACKWARDS.items():
            try:
                backward(grad_out, q, k, v, out, lse, causal)
            except Exception as error:
                print(f"{name} left out of the profile: {str(error)[:200]}")
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            F.scaled_dot_product_attention(*leaves, is_causal=causal).backward(grad_out)

    everything()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    everything()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4096:128:1,4096:128:0,16384:128:1,4096:64:1",
                        help="seq:head_dim:causal, comma-separated")  # fmt: skip
    parser.add_argument("--json", default=None)
    parser.add_argument("--profile", default=None, metavar="SEQ:DIM:CAUSAL",
                        help="run each kernel once for ncu instead of timing")  # fmt: skip
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_attention_variants needs a CUDA GPU")
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8,
                                                                 device="cuda"))  # fmt: skip
    if args.profile:
        seq, dim, causal = (int(x) for x in args.profile.split(":"))
        profile_once(seq, dim, bool(causal))
        return
    rows = []
    for spec in args.shapes.split(","):
        seq, dim, causal = (int(x) for x in spec.split(":"))
        rows.append(bench(seq, dim, bool(causal)))
        r = rows[-1]
        print(f"\nS {seq} d {dim} causal {bool(causal)}: max |diff| {r['max_abs_diff']}")
        for mode in ("fwd", "bwd"):
            cudnn = r.get(f"cuDNN_{mode}_tflops", math.nan)
            for name in ("cuDNN", *(FORWARDS if mode == "fwd" else BACKWARDS)):
                if f"{name}_{mode}_tflops" in r:
                    t = r[f"{name}_{mode}_tflops"]
                    print(f"  {mode} {name:>10}: {r[f'{name}_{mode}_ms']:.3f} ms "
                          f"{t:.0f} TFLOP/s ({t / cudnn:.2f}x cuDNN)", flush=True)  # fmt: skip
    configs = {
        name: {str(key): str(cfg) for key, cfg in kernel.cache.items()}
        for name, kernel in (
            ("tma", _FWD_TMA),
            ("atomic", _ATOMIC),
            ("ws_fwd", _FWD_WS),
            ("ws_dkdv", _DKDV_WS),
            ("ws_dq", _DQ_WS),
            ("more-tiles_dkdv", _DKDV_MORE),
        )
    }
    print(json.dumps(configs, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "configs": configs}, handle, indent=1)


if __name__ == "__main__" and os.environ.get("LMLIB_VARIANTS_CPU_CHECK") != "1":
    main()
