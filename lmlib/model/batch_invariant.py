"""Batch-invariant parameter gradients: the opt-in mode `ModelConfig.batch_invariant_gradients`.

Why it exists: data parallelism claims to compute the gradient of the mean loss over the global
batch. In float32 each row's activations and activation gradients are bitwise the same whatever
batch the row sits in; what differs is the reductions over rows that form parameter gradients.
One process sums a weight gradient's rows inside one matmul (chains of fused multiply-adds over
all rows), while each rank must round its partial sum before the ranks add them, so a
data-parallel run drifts from a single full-batch run by a few ulps per step. In this mode every
parameter gradient is instead

    per-sequence partial sums (one per row of the (batch, seq, ...) input, each computed the
    same way whatever the batch size), combined by a fixed halving tree over the batch index:
    tree(rows[0:n]) = tree(rows[0:n//2]) + tree(rows[n//2:n]).

Two ranks holding the two contiguous halves of an even global batch each compute exactly one
subtree of the full-batch tree, the two-rank all-reduce (a + b, exact to commute) reproduces its
root, and dividing by 2 is exact: DDP and FSDP then train bitwise like one process running one
forward and backward over the whole global batch (tests/dist/workers.py checks it). Gradient
accumulation keeps this when each rank runs two equal micro-batches (their sum is the next level
of the tree); more ranks need an all-reduce that adds in the same tree order, which gloo's and
NCCL's ring and tree algorithms do not promise, so exactness is claimed for two ranks only.

How: each parameter enters the graph through `per_sequence(weight, sequences)`, a broadcast to
(sequences, *weight.shape) (a stride-0 view, no copy) whose backward is the tree. The layers'
Functions below leave their forward and their input gradient as in the default path and return
one gradient per sequence: Linear by one matmul per sequence, grad_out[b]^T @ x[b]; RMSNorm's
gain by adding each sequence's rows pairwise (elementwise adds only); the embedding by
scattering each sequence's rows into a dense per-sequence table in position order. A weight
used twice (tied embeddings) gets one broadcast per forward, so its two uses add per sequence
before the tree (not under FSDP, which gathers the two uses separately: each use then has a
tree of its own, and the tied gradient is not exact across ranks).

What it costs: transient memory of batch x weight size per parameter use in backward (for a
GPT-2-small LM head, batch 16: 16 x 154 MB), a Python loop of one small matmul per sequence (on
copies of that sequence's rows) instead of one large matmul, and a dense table per sequence for
the embedding. It is for verification and exact reproducibility across world sizes (two ranks
against one process), not for speed; the default path is untouched. Verified bitwise on CPU
(MKL, one thread, deterministic algorithms: how the gloo ranks of tests/dist run, and what the
per-row invariance of activations and their gradients was established under); on GPUs, check
before relying on it.
"""

import torch


def sequence_count(x: torch.Tensor) -> int:
    """Sequences in a layer's input: dim 0 of a (batch, seq, ...) tensor; a (seq, d) or (d,)
    input counts as one sequence."""
    return x.shape[0] if x.dim() >= 3 else 1


def tree_sum_over_sequences(per_sequence: torch.Tensor) -> torch.Tensor:
    """Sum over dim 0 by the fixed halving rule tree(0:n) = tree(0:n//2) + tree(n//2:n): the
    halves of an evenly split batch are exact subtrees of the whole batch's tree."""
    count = per_sequence.shape[0]
    if count == 1:
        return per_sequence[0]
    half = count // 2
    return tree_sum_over_sequences(per_sequence[:half]) + tree_sum_over_sequences(
        per_sequence[half:])


def pairwise_sum_of_rows(values: torch.Tensor) -> torch.Tensor:
    """(sequences, rows, d) -> (sequences, d): rows added pairwise, level by level (an odd last
    row waits for the next level). Elementwise adds only, so a sequence's result cannot depend
    on how many other sequences share the tensor."""
    while values.shape[1] > 1:
        rows = values.shape[1]
        paired = values[:, 0 : rows - 1 : 2] + values[:, 1:rows:2]
        values = torch.cat((paired, values[:, rows - 1 :]), dim=1) if rows % 2 else paired
    return values[:, 0]


class _BroadcastOverSequences(torch.autograd.Function):
    """Forward: the weight seen by every sequence (a stride-0 view). Backward: the tree."""

    @staticmethod
    def forward(ctx, weight, sequences):
        return weight.expand(sequences, *weight.shape)

    @staticmethod
    def backward(ctx, grad_per_sequence):
        return tree_sum_over_sequences(grad_per_sequence), None


def per_sequence(weight: torch.Tensor, sequences: int) -> torch.Tensor:
    """`weight` broadcast to (sequences, *weight.shape); its gradient is the tree of the
    per-sequence gradients the layers return."""
    return _BroadcastOverSequences.apply(weight, sequences)


class _SequenceLinear(torch.autograd.Function):
    """x @ W^T with the weight gradient per sequence: grad_out[b]^T @ x[b]."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, weight_per_sequence):
        ctx.save_for_backward(x, weight_per_sequence)
        return x @ weight_per_sequence[0].t()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_output):
        x, weight_per_sequence = ctx.saved_tensors
        weight = weight_per_sequence[0]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output @ weight  # the default path's mm, on the same strides
        if ctx.needs_input_grad[1]:
            sequences, (out_features, in_features) = weight_per_sequence.shape[0], weight.shape
            rows_out = grad_output.reshape(sequences, -1, out_features)
            rows_in = x.reshape(sequences, -1, in_features).to(rows_out.dtype)
            # one mm per sequence on fresh (aligned) copies: the same call whatever the batch.
            # A bmm over the batch is not: with two CPU threads it splits (6, 5, 33) @ (6, 33,
            # 17) differently from one matrix of it (tests/model/test_batch_invariant.py).
            grad_weight = torch.stack([
                rows_out[b].clone().t().mm(rows_in[b].clone()) for b in range(sequences)])
        return grad_x, grad_weight


def sequence_linear(x: torch.Tensor, weight_per_sequence: torch.Tensor) -> torch.Tensor:
    """x (batch, ..., in) @ W^T, W given as per_sequence(W, batch)."""
    return _SequenceLinear.apply(x, weight_per_sequence)


class _SequenceEmbedding(torch.autograd.Function):
    """weight[token_ids] with the table's gradient per sequence, each sequence's rows added into
    a zeroed (+0) table in position order."""

    @staticmethod
    def forward(ctx, token_ids, weight_per_sequence):
        ctx.save_for_backward(token_ids)
        ctx.table_shape = tuple(weight_per_sequence.shape)
        return weight_per_sequence[0][token_ids]

    @staticmethod
    def backward(ctx, grad_output):
        (token_ids,) = ctx.saved_tensors
        sequences, vocabulary, width = ctx.table_shape
        ids = token_ids.reshape(sequences, -1)
        offsets = torch.arange(sequences, device=ids.device).unsqueeze(1) * vocabulary
        tables = grad_output.new_zeros(sequences * vocabulary, width)
        tables.index_add_(0, (ids + offsets).reshape(-1), grad_output.reshape(-1, width))
        return None, tables.view(sequences, vocabulary, width)


def sequence_embedding(token_ids: torch.Tensor, weight_per_sequence: torch.Tensor) -> torch.Tensor:
    """weight[token_ids] for token_ids (batch, ...), the table given as per_sequence(W, batch)."""
    return _SequenceEmbedding.apply(token_ids, weight_per_sequence)


class _SequenceScale(torch.autograd.Function):
    """x * gain over the last dim (RMSNorm's gain) with the gain's gradient per sequence."""

    @staticmethod
    def forward(ctx, x, gain_per_sequence):
        ctx.save_for_backward(x, gain_per_sequence)
        return x * gain_per_sequence[0]

    @staticmethod
    def backward(ctx, grad_output):
        x, gain_per_sequence = ctx.saved_tensors
        grad_x = grad_gain = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output * gain_per_sequence[0]
        if ctx.needs_input_grad[1]:
            sequences, width = gain_per_sequence.shape
            products = (grad_output * x).reshape(sequences, -1, width)
            grad_gain = pairwise_sum_of_rows(products)
        return grad_x, grad_gain


def sequence_scale(x: torch.Tensor, gain_per_sequence: torch.Tensor) -> torch.Tensor:
    """x (batch, ..., d) * gain (d,), the gain given as per_sequence(gain, batch)."""
    return _SequenceScale.apply(x, gain_per_sequence)
