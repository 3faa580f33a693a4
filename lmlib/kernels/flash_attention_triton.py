"""FlashAttention-2 forward and backward in Triton.

What is notable:
- Forward: one program per (query tile, batch*head); float32 online softmax in base 2 (the
  softmax scale is folded with log2(e), so every exponential is an `exp2`). Key tiles are walked in
  two loops: an unmasked loop over full key tiles below the diagonal, then a masked loop over the
  diagonal tile(s) and the ragged last tile. Causal programs skip key tiles wholly above the
  diagonal and start with the heaviest query tiles, which balances the grid.
- Saves O and the natural-log logsumexp L: (batch, n_queries) for 3-D input,
  (batch, heads, n_queries) for 4-D input.
- Backward by recomputation, three kernels and no atomics: D = rowsum(dO * O); dK and dV with
  one program per key tile looping over query tiles; dQ with one program per query tile looping
  over key tiles. Each is split into unmasked and masked loops like the forward.
- Tile sizes, warps and pipeline stages are autotuned per head dim, dtype, causality and sequence
  bucket on the GPU; the choice is cached on disk and reported when made (lmlib.kernels.tuning). Under TRITON_INTERPRET=1 one large tile is used (the interpreter's cost is
  programs x iterations) and 16-bit tiles are upcast to float32, since the interpreter's bf16
  `tl.dot` is wrong.
- Head dims that are not powers of two are zero-padded (scores and outputs are unchanged).
- O, dQ, dK and dV are (batch, heads, seq, dim) views of (batch, seq, heads, dim) memory, the
  layout the model's projections read and write, so no transposing copy surrounds the kernels
  (the kernels take any strides with a unit stride on the head dim).
- Kernel launches are wrapped as `torch.library` custom ops, so `torch.compile` treats them as
  opaque calls and traces the autograd Function around them.
"""

import math
import os

import torch
import triton
import triton.language as tl

from lmlib.kernels.tuning import autotune, launch

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# LMLIB_ATTENTION_AUTOTUNE=0 takes each kernel's first (default) tiles: quick GPU test runs.
AUTOTUNE = os.environ.get("LMLIB_ATTENTION_AUTOTUNE", "1") != "0"
MIN_HEAD_DIM = 16
MAX_HEAD_DIM = 256


def _configs(tiles: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    if INTERPRET:  # one big tile: the interpreter's cost is programs x iterations
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=1)]
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        for m, n, w, s in (tiles if AUTOTUNE else tiles[:1])
    ]


# (BLOCK_M queries, BLOCK_N keys, warps, stages). Forward and dQ need BLOCK_M % BLOCK_N == 0,
# dK/dV needs BLOCK_N % BLOCK_M == 0, so diagonal tiles line up.
FWD_TILES = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 4), (64, 64, 4, 3)]
FWD_TILES_256 = [(64, 32, 4, 2), (64, 64, 4, 2), (128, 32, 8, 2), (64, 32, 4, 3)]
DKDV_TILES = [(32, 128, 4, 3), (64, 128, 8, 3), (32, 64, 4, 3), (64, 64, 4, 3), (32, 128, 4, 4)]
DKDV_TILES_256 = [(32, 64, 4, 2), (16, 64, 4, 2), (32, 32, 4, 2), (64, 64, 8, 2)]
DQ_TILES = [(128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3), (64, 32, 4, 3)]
DQ_TILES_256 = [(64, 32, 4, 2), (64, 16, 4, 2), (32, 32, 4, 2), (64, 64, 8, 2)]
TUNE_KEY = ["seq_bucket", "HEAD_DIM", "IS_CAUSAL"]  # the autotuner adds the tensors' dtypes


# ----------------------------------------------------------------------------- forward


@triton.jit
def _fwd_key_loop(
    acc, row_sum, row_max, q, k_base, v_base, stride_ks, stride_vs,
    offs_m, offs_d, key_lo, key_hi, seq_k, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(key_lo, key_hi, BLOCK_N):
        key_index = start_n + offs_n
        k_ptrs = k_base + key_index[:, None] * stride_ks + offs_d[None, :]
        v_ptrs = v_base + key_index[:, None] * stride_vs + offs_d[None, :]
        if MASKED:
            k = tl.load(k_ptrs, mask=key_index[:, None] < seq_k, other=0.0)
            v = tl.load(v_ptrs, mask=key_index[:, None] < seq_k, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if MASKED:
            keep = key_index[None, :] < seq_k
            if IS_CAUSAL:
                keep = keep & (key_index[None, :] <= offs_m[:, None])
            scores = tl.where(keep, scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, 1) * qk_scale)
        probs = tl.exp2(scores * qk_scale - new_max[:, None])
        correction = tl.exp2(row_max - new_max)
        row_sum = row_sum * correction + tl.sum(probs, 1)
        acc = acc * correction[:, None]
        acc = tl.dot(probs.to(v.dtype), v, acc, input_precision=PRECISION)
        row_max = new_max
    return acc, row_sum, row_max


@triton.jit
def _fwd_kernel(
    Q, K, V, Out, LSE, sm_scale,
    stride_qz, stride_qh, stride_qs, stride_kz, stride_kh, stride_ks,
    stride_vz, stride_vh, stride_vs, stride_oz, stride_oh, stride_os,
    n_heads, seq_q, seq_k, seq_bucket,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    if IS_CAUSAL:  # the last query tiles see the most keys: start them first
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    z = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    q_base = Q + z * stride_qz + h * stride_qh
    k_base = K + z * stride_kz + h * stride_kh
    v_base = V + z * stride_vz + h * stride_vh
    o_base = Out + z * stride_oz + h * stride_oh

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m[:, None] < seq_q
    q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :], mask=row_ok, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    qk_scale = sm_scale * 1.4426950408889634  # base-2 softmax
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
    acc, row_sum, row_max = _fwd_key_loop(
        acc, row_sum, row_max, q, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
        0, unmasked_end, seq_k, qk_scale, BLOCK_N, False, IS_CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip
    acc, row_sum, row_max = _fwd_key_loop(
        acc, row_sum, row_max, q, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
        unmasked_end, masked_end, seq_k, qk_scale, BLOCK_N, True, IS_CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip

    acc = acc / row_sum[:, None]
    lse = (row_max + tl.log2(row_sum)) * 0.6931471805599453  # natural-log logsumexp
    o_ptrs = o_base + offs_m[:, None] * stride_os + offs_d[None, :]
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=row_ok)
    tl.store(LSE + bh.to(tl.int64) * seq_q + offs_m, lse, mask=offs_m < seq_q)


# ----------------------------------------------------------------------------- backward


@triton.jit
def _bwd_delta_kernel(
    Out, DO, DELTA, stride_oz, stride_oh, stride_os, stride_dz, stride_dh, stride_ds,
    n_heads, seq_q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
):  # fmt: skip
    """D = rowsum(dO * O), the softmax Jacobian's row term, one float per query."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    z = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m[:, None] < seq_q
    o = tl.load(
        Out + z * stride_oz + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :],
        mask=row_ok, other=0.0,
    ).to(tl.float32)  # fmt: skip
    do = tl.load(
        DO + z * stride_dz + h * stride_dh + offs_m[:, None] * stride_ds + offs_d[None, :],
        mask=row_ok, other=0.0,
    ).to(tl.float32)  # fmt: skip
    tl.store(DELTA + bh.to(tl.int64) * seq_q + offs_m, tl.sum(o * do, 1), mask=offs_m < seq_q)


@triton.jit
def _dkdv_query_loop(
    dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qs, stride_dos,
    offs_n, offs_d, query_lo, query_hi, seq_q, qk_scale,
    BLOCK_M: tl.constexpr, MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    offs_m = tl.arange(0, BLOCK_M)
    for start_m in range(query_lo, query_hi, BLOCK_M):
        query_index = start_m + offs_m
        q_ptrs = q_base + query_index[:, None] * stride_qs + offs_d[None, :]
        do_ptrs = do_base + query_index[:, None] * stride_dos + offs_d[None, :]
        if MASKED:  # padded queries load zeros: their P rows then meet dO = 0 and D = 0
            row_ok = query_index < seq_q
            q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
            do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
            lse = tl.load(lse_base + query_index, mask=row_ok, other=0.0)
            delta = tl.load(delta_base + query_index, mask=row_ok, other=0.0)
        else:
            q = tl.load(q_ptrs)
            do = tl.load(do_ptrs)
            lse = tl.load(lse_base + query_index)
            delta = tl.load(delta_base + query_index)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        scores_t = tl.dot(k, tl.trans(q), input_precision=PRECISION)  # (BLOCK_N, BLOCK_M)
        probs_t = tl.exp2(scores_t * qk_scale - (lse * 1.4426950408889634)[None, :])
        if MASKED and IS_CAUSAL:
            probs_t = tl.where(query_index[None, :] >= offs_n[:, None], probs_t, 0.0)
        dv = tl.dot(probs_t.to(do.dtype), do, dv, input_precision=PRECISION)
        grad_probs_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        grad_scores_t = probs_t * (grad_probs_t - delta[None, :])
        dk = tl.dot(grad_scores_t.to(q.dtype), q, dk, input_precision=PRECISION)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, sm_scale,
    stride_qz, stride_qh, stride_qs, stride_kz, stride_kh, stride_ks,
    stride_vz, stride_vh, stride_vs, stride_doz, stride_doh, stride_dos,
    stride_dkz, stride_dkh, stride_dks, stride_dvz, stride_dvh, stride_dvs,
    n_heads, seq_q, seq_k, seq_bucket,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    z = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    q_base = Q + z * stride_qz + h * stride_qh
    do_base = DO + z * stride_doz + h * stride_doh
    lse_base = LSE + bh.to(tl.int64) * seq_q
    delta_base = DELTA + bh.to(tl.int64) * seq_q

    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = offs_n[:, None] < seq_k
    k = tl.load(K + z * stride_kz + h * stride_kh + offs_n[:, None] * stride_ks + offs_d[None, :],
                mask=key_ok, other=0.0)  # fmt: skip
    v = tl.load(V + z * stride_vz + h * stride_vh + offs_n[:, None] * stride_vs + offs_d[None, :],
                mask=key_ok, other=0.0)  # fmt: skip
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)

    full_q_end = (seq_q // BLOCK_M) * BLOCK_M
    if IS_CAUSAL:
        # Queries before this key tile see none of it; the diagonal tiles are masked.
        dk, dv = _dkdv_query_loop(
            dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qs, stride_dos,
            offs_n, offs_d, start_n, tl.minimum(start_n + BLOCK_N, seq_q), seq_q, qk_scale,
            BLOCK_M, True, IS_CAUSAL, UPCAST, PRECISION,
        )  # fmt: skip
        query_lo = start_n + BLOCK_N
    else:
        query_lo = 0
    dk, dv = _dkdv_query_loop(
        dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qs, stride_dos,
        offs_n, offs_d, query_lo, full_q_end, seq_q, qk_scale,
        BLOCK_M, False, IS_CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip
    dk, dv = _dkdv_query_loop(  # the ragged last query tile
        dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qs, stride_dos,
        offs_n, offs_d, tl.maximum(query_lo, full_q_end), seq_q, seq_q, qk_scale,
        BLOCK_M, True, IS_CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip

    dk = dk * sm_scale
    tl.store(DK + z * stride_dkz + h * stride_dkh + offs_n[:, None] * stride_dks + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=key_ok)  # fmt: skip
    tl.store(DV + z * stride_dvz + h * stride_dvh + offs_n[:, None] * stride_dvs + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=key_ok)  # fmt: skip


@triton.jit
def _dq_key_loop(
    dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs,
    offs_m, offs_d, key_lo, key_hi, seq_k, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(key_lo, key_hi, BLOCK_N):
        key_index = start_n + offs_n
        k_ptrs = k_base + key_index[:, None] * stride_ks + offs_d[None, :]
        v_ptrs = v_base + key_index[:, None] * stride_vs + offs_d[None, :]
        if MASKED:
            k = tl.load(k_ptrs, mask=key_index[:, None] < seq_k, other=0.0)
            v = tl.load(v_ptrs, mask=key_index[:, None] < seq_k, other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        probs = tl.exp2(scores * qk_scale - lse2[:, None])
        if MASKED:
            keep = key_index[None, :] < seq_k
            if IS_CAUSAL:
                keep = keep & (key_index[None, :] <= offs_m[:, None])
            probs = tl.where(keep, probs, 0.0)
        grad_probs = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        grad_scores = probs * (grad_probs - delta[:, None])
        dq = tl.dot(grad_scores.to(k.dtype), k, dq, input_precision=PRECISION)
    return dq


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, sm_scale,
    stride_qz, stride_qh, stride_qs, stride_kz, stride_kh, stride_ks,
    stride_vz, stride_vh, stride_vs, stride_doz, stride_doh, stride_dos,
    stride_dqz, stride_dqh, stride_dqs,
    n_heads, seq_q, seq_k, seq_bucket,
    HEAD_DIM: tl.constexpr, IS_CAUSAL: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    if IS_CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    z = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    k_base = K + z * stride_kz + h * stride_kh
    v_base = V + z * stride_vz + h * stride_vh

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < seq_q
    q = tl.load(Q + z * stride_qz + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)  # fmt: skip
    do = tl.load(
        DO + z * stride_doz + h * stride_doh + offs_m[:, None] * stride_dos + offs_d[None, :],
        mask=row_ok[:, None], other=0.0,
    )  # fmt: skip
    lse2 = (
        tl.load(LSE + bh.to(tl.int64) * seq_q + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
    )
    delta = tl.load(DELTA + bh.to(tl.int64) * seq_q + offs_m, mask=row_ok, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    full_k_end = (seq_k // BLOCK_N) * BLOCK_N
    if IS_CAUSAL:
        unmasked_end = tl.minimum(pid_m * BLOCK_M, full_k_end)
        masked_end = tl.minimum((pid_m + 1) * BLOCK_M, seq_k)
    else:
        unmasked_end = full_k_end
        masked_end = seq_k
    dq = _dq_key_loop(
        dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
        0, unmasked_end, seq_k, qk_scale, BLOCK_N, False, IS_CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip
    dq = _dq_key_loop(
        dq, q, do, lse2, delta, k_base, v_base, stride_ks, stride_vs, offs_m, offs_d,
        unmasked_end, masked_end, seq_k, qk_scale, BLOCK_N, True, IS_CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip
    dq = dq * sm_scale
    tl.store(DQ + z * stride_dqz + h * stride_dqh + offs_m[:, None] * stride_dqs + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])  # fmt: skip


def _autotuned(kernel, tiles, tiles_256):
    """Two autotuned wrappers of one kernel: head dims up to 128, and 256 (less shared memory)."""
    return {
        "up_to_128": autotune(_configs(tiles), TUNE_KEY)(kernel),
        "256": autotune(_configs(tiles_256), TUNE_KEY)(kernel),
    }


_FWD = _autotuned(_fwd_kernel, FWD_TILES, FWD_TILES_256)
_DKDV = _autotuned(_bwd_dkdv_kernel, DKDV_TILES, DKDV_TILES_256)
_DQ = _autotuned(_bwd_dq_kernel, DQ_TILES, DQ_TILES_256)


# ----------------------------------------------------------------------------- launchers


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _common_meta(q: torch.Tensor, is_causal: bool) -> dict:
    return {
        "HEAD_DIM": q.shape[-1],
        "IS_CAUSAL": is_causal,
        "UPCAST": INTERPRET and q.dtype != torch.float32,
        "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
    }


def _seq_bucket(seq_q: int, seq_k: int) -> int:
    """Tuning bucket: the best tiles change with short sequences, not past a few thousand."""
    return min(triton.next_power_of_2(max(seq_q, seq_k)), 4096)


def _tuning_shape(q: torch.Tensor, seq_k: int, is_causal: bool) -> str:
    """The tuning key in words, for the autotuning report."""
    mask = "causal" if is_causal else "full"
    return (f"head dim {q.shape[-1]}, {str(q.dtype).removeprefix('torch.')}, {mask}, sequence "
            f"bucket {_seq_bucket(q.shape[2], seq_k)}")


def _sequence_major(t: torch.Tensor) -> torch.Tensor:
    """An empty (batch, heads, seq, dim) tensor laid out as (batch, seq, heads, dim) in memory:
    the model's own layout, so O feeds the output projection and dQ, dK, dV flow back into the
    q/k/v projections as views, with no transposing copy on either side."""
    batch, heads, seq, dim = t.shape
    return t.new_empty((batch, seq, heads, dim)).transpose(1, 2)


def _size_class(head_dim: int) -> str:
    return "256" if head_dim > 128 else "up_to_128"


def launch_forward(q, k, v, out, lse, is_causal: bool, sm_scale: float) -> None:
    """The forward kernel on (batch, heads, seq, dim) views of any strides (unit stride on dim),
    writing O into `out` and the logsumexp into `lse` (batch, heads, seq_q)."""
    batch, heads, seq_q, _ = q.shape
    seq_k = k.shape[2]
    kernel = _FWD[_size_class(q.shape[-1])]

    def grid(meta):
        return (triton.cdiv(seq_q, meta["BLOCK_M"]), batch * heads)

    launch(
        kernel, grid, "attention forward", _tuning_shape(q, seq_k, is_causal),
        q, k, v, out, lse, sm_scale, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
        heads, seq_q, seq_k, _seq_bucket(seq_q, seq_k), **_common_meta(q, is_causal),
    )  # fmt: skip


@torch.library.custom_op("lmlib::flash_attention_forward", mutates_args=())
def _forward_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool, sm_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    out = _sequence_major(q)
    lse = torch.empty(q.shape[:-1], device=q.device, dtype=torch.float32)
    launch_forward(q, k, v, out, lse, is_causal, sm_scale)
    return out, lse


@_forward_op.register_fake
def _forward_fake(q, k, v, is_causal, sm_scale):
    out = _sequence_major(q)
    return out, q.new_empty(q.shape[:-1], dtype=torch.float32)


def launch_backward(
    grad_out, q, k, v, out, lse, grad_q, grad_k, grad_v, is_causal: bool, sm_scale: float
) -> None:
    """The three backward kernels, writing dQ, dK, dV into the given (batch, heads, seq, dim)
    views of any strides (unit stride on dim)."""
    batch, heads, seq_q, head_dim = q.shape
    seq_k = k.shape[2]
    if grad_out.stride(-1) != 1:
        grad_out = grad_out.contiguous()
    delta = torch.empty_like(lse)
    delta_block = 64 if INTERPRET else 128
    _bwd_delta_kernel[(triton.cdiv(seq_q, delta_block), batch * heads)](
        out, grad_out, delta, *_strides(out), *_strides(grad_out), heads, seq_q,
        HEAD_DIM=head_dim, BLOCK_M=delta_block,
    )  # fmt: skip
    meta = _common_meta(q, is_causal)
    bucket = _seq_bucket(seq_q, seq_k)
    size = _size_class(head_dim)

    def grid_keys(m):
        return (triton.cdiv(seq_k, m["BLOCK_N"]), batch * heads)

    shape = _tuning_shape(q, seq_k, is_causal)
    launch(
        _DKDV[size], grid_keys, "attention backward dK/dV", shape,
        q, k, v, grad_out, grad_k, grad_v, lse, delta, sm_scale,
        *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out),
        *_strides(grad_k), *_strides(grad_v), heads, seq_q, seq_k, bucket, **meta,
    )  # fmt: skip

    def grid_queries(m):
        return (triton.cdiv(seq_q, m["BLOCK_M"]), batch * heads)

    launch(
        _DQ[size], grid_queries, "attention backward dQ", shape,
        q, k, v, grad_out, grad_q, lse, delta, sm_scale,
        *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(grad_q),
        heads, seq_q, seq_k, bucket, **meta,
    )  # fmt: skip


@torch.library.custom_op("lmlib::flash_attention_backward", mutates_args=())
def _backward_op(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    is_causal: bool,
    sm_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad_q, grad_k, grad_v = _sequence_major(q), _sequence_major(k), _sequence_major(v)
    launch_backward(grad_out, q, k, v, out, lse, grad_q, grad_k, grad_v, is_causal, sm_scale)
    return grad_q, grad_k, grad_v


@_backward_op.register_fake
def _backward_fake(grad_out, q, k, v, out, lse, is_causal, sm_scale):
    return _sequence_major(q), _sequence_major(k), _sequence_major(v)


# ----------------------------------------------------------------------------- public API


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() not in (3, 4):
        raise ValueError(
            f"flash attention expects (batch, seq, d) or (batch, heads, seq, d); got {tuple(q.shape)}"
        )
    if k.shape != v.shape or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            "q, k, v must share batch, heads and head dim, and k.shape must equal v.shape; got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (
        torch.float32, torch.bfloat16, torch.float16,
    ):  # fmt: skip
        raise ValueError(f"q, k, v must all be float32, bfloat16 or float16; got {q.dtype}")
    if q.shape[-1] > MAX_HEAD_DIM:
        raise ValueError(f"head dim {q.shape[-1]} is over the supported {MAX_HEAD_DIM}")
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        raise ValueError("flash attention needs at least one query and one key")
    if not INTERPRET and not q.is_cuda:
        raise ValueError(
            "the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 set before import); "
            "use implementation='torch' on the CPU"
        )


def _to_kernel_layout(t: torch.Tensor, padded_dim: int) -> torch.Tensor:
    """4-D, unit stride on the head dim, head dim zero-padded to a power of two."""
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.shape[-1] != padded_dim:
        t = torch.nn.functional.pad(t, (0, padded_dim - t.shape[-1]))
    if t.stride(-1) != 1:
        t = t.contiguous()
    return t


def _padded_head_dim(head_dim: int) -> int:
    return max(MIN_HEAD_DIM, triton.next_power_of_2(head_dim))


def flash_attention_triton_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward only: O (shaped like q) and L, (batch, n_queries) or (batch, heads, n_queries)."""
    _check_inputs(q, k, v)
    head_dim = q.shape[-1]
    padded = _padded_head_dim(head_dim)
    q4, k4, v4 = (_to_kernel_layout(t, padded) for t in (q, k, v))
    out, lse = _forward_op(q4, k4, v4, is_causal, 1.0 / math.sqrt(head_dim))
    out = out[..., :head_dim]
    if q.dim() == 3:
        out, lse = out.squeeze(1), lse.squeeze(1)
    return out, lse


class FlashAttention2(torch.autograd.Function):
    """FlashAttention-2 with Triton kernels: `FlashAttention2.apply(q, k, v, is_causal=False)`."""

    @staticmethod
    def forward(ctx, q, k, v, is_causal=False):
        _check_inputs(q, k, v)
        head_dim = q.shape[-1]
        padded = _padded_head_dim(head_dim)
        sm_scale = 1.0 / math.sqrt(head_dim)
        q4, k4, v4 = (_to_kernel_layout(t, padded) for t in (q, k, v))
        out4, lse = _forward_op(q4, k4, v4, is_causal, sm_scale)
        ctx.save_for_backward(q4, k4, v4, out4, lse.squeeze(1) if q.dim() == 3 else lse)
        ctx.is_causal = is_causal
        ctx.sm_scale = sm_scale
        ctx.input_dim = q.dim()
        ctx.head_dim = head_dim
        out = out4[..., :head_dim]
        return out.squeeze(1) if q.dim() == 3 else out

    @staticmethod
    def backward(ctx, grad_out):
        q4, k4, v4, out4, lse = ctx.saved_tensors
        if ctx.input_dim == 3:
            lse = lse.unsqueeze(1)
        grad_out4 = _to_kernel_layout(grad_out, q4.shape[-1])
        grads = _backward_op(grad_out4, q4, k4, v4, out4, lse, ctx.is_causal, ctx.sm_scale)
        grads = [g[..., : ctx.head_dim] for g in grads]
        if ctx.input_dim == 3:
            grads = [g.squeeze(1) for g in grads]
        return *grads, None
