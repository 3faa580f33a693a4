"""ModelConfig.batch_invariant_gradients (lmlib.model.batch_invariant) in one process: the
whole batch's parameter gradients equal its halves' gradients summed, bitwise; the forward
and the activation gradients are the default path's; with the mode off nothing changes.
(tests/dist/test_parallel_equivalence.py checks the consequence on two DDP and FSDP ranks.)"""

import pytest
import torch

from lmlib.model import Linear, ModelConfig, RMSNorm, TransformerLM, cross_entropy
from lmlib.model.batch_invariant import pairwise_sum_of_rows, tree_sum_over_sequences
from lmlib.model.layers import Embedding

TINY = dict(vocab_size=32, context_length=8, d_model=16, num_layers=2, num_heads=2, d_ff=32,
            attention_backend="torch")
ABLATIONS = [{}, {"tie_embeddings": True}, {"qk_norm": True},
             {"silu_ffn": True, "post_norm": True}, {"no_rmsnorm": True}]


@pytest.fixture(autouse=True)
def one_thread_deterministic():
    """The settings of the gloo ranks in tests/dist, under which a row's activations and their
    gradients are the same bits in any batch (the mode's per-sequence sums hold with more
    threads too; matmuls over all rows of a batch need not)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def tiny_model(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(**{**TINY, **overrides}))


def batch(rows: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (rows, TINY["context_length"] + 1),
                         generator=torch.Generator().manual_seed(seed))


def parameter_grads(model, tokens, loss_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Gradients of loss_scale x the mean loss over `tokens` (fresh, not accumulated)."""
    model.zero_grad(set_to_none=True)
    (cross_entropy(model(tokens[:, :-1]), tokens[:, 1:]) * loss_scale).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_tree_sum_halves_the_batch_and_pairwise_rows_add_neighbours():
    a, b, c, d, e, f = (torch.tensor([float(2 ** i) + 0.1 * i]) for i in range(6))
    stacked = torch.stack
    assert torch.equal(tree_sum_over_sequences(stacked([a, b, c, d])), (a + b) + (c + d))
    assert torch.equal(tree_sum_over_sequences(stacked([a, b, c])), a + (b + c))
    assert torch.equal(tree_sum_over_sequences(stacked([a, b, c, d, e, f])),
                       (a + (b + c)) + (d + (e + f)))  # halves of 3: what two ranks compute
    rows = stacked([a, b, c, d, e]).unsqueeze(0)  # (1 sequence, 5 rows, 1)
    assert torch.equal(pairwise_sum_of_rows(rows)[0], ((a + b) + (c + d)) + e)


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("rows", [4, 6])
def test_whole_batch_gradients_equal_its_halves_summed_bitwise(overrides, rows):
    """What two data-parallel ranks compute: each half's gradients of half the loss (its
    rows' share of the global mean), then added. Exact for any even batch, tied weights too."""
    model = tiny_model(batch_invariant_gradients=True, **overrides)
    tokens = batch(rows)
    whole = parameter_grads(model, tokens)
    first, second = (parameter_grads(model, half, 0.5) for half in tokens.chunk(2))
    for name, expected in whole.items():
        assert torch.equal(first[name] + second[name], expected), name


def test_quarters_are_subtrees_of_the_whole_batch_tree():
    """Four ranks would be exact too if their all-reduce added (r0 + r1) + (r2 + r3)."""
    model = tiny_model(batch_invariant_gradients=True)
    tokens = batch(8)
    whole = parameter_grads(model, tokens)
    q = [parameter_grads(model, quarter, 0.25) for quarter in tokens.chunk(4)]
    for name, expected in whole.items():
        assert torch.equal((q[0][name] + q[1][name]) + (q[2][name] + q[3][name]), expected), name


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sequences,seq,width,out", [(4, 64, 48, 96), (6, 33, 17, 5)])
def test_each_layer_gives_every_sequence_the_same_gradient_in_any_batch(sequences, seq, width,
                                                                         out, threads):
    """Layer by layer, at less tiny shapes: one sequence's parameter gradient is the same
    bits alone as in a batch (so the tree's leaves do not depend on the batch), with one
    thread or two (a bmm over the batch failed this at (6, 33, 17, 5) with two)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = [Linear(width, out), RMSNorm(width), Embedding(50, width)]
    for layer in layers:
        layer.batch_invariant_gradients = True
    x = torch.randn(sequences, seq, width)
    ids = torch.randint(0, 50, (sequences, seq))
    grad_out = {id(layers[0]): torch.randn(sequences, seq, out)}

    def gradient(layer, rows):
        layer.zero_grad(set_to_none=True)
        inputs = ids[rows] if isinstance(layer, Embedding) else x[rows]
        upstream = grad_out.get(id(layer), x.flip(-1))[rows]
        layer(inputs).backward(upstream)
        return layer.weight.grad.clone()

    for layer in layers:
        whole = gradient(layer, slice(0, sequences))
        singles = torch.stack([gradient(layer, slice(b, b + 1)) for b in range(sequences)])
        assert torch.equal(tree_sum_over_sequences(singles), whole), type(layer).__name__


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: ",".join(o) or "default")
def test_mode_keeps_the_forward_and_activation_gradients_and_moves_parameter_gradients_by_ulps(
        overrides):
    default, invariant = tiny_model(**overrides), tiny_model(batch_invariant_gradients=True,
                                                             **overrides)
    tokens = batch(4)
    captured = {}
    for label, model in (("default", default), ("invariant", invariant)):
        embedded = []

        def capture_gradient(module, args, output, embedded=embedded) -> None:
            output.register_hook(embedded.append)

        handle = model.token_embeddings.register_forward_hook(capture_gradient)
        logits = model(tokens[:, :-1])
        cross_entropy(logits, tokens[:, 1:]).backward()
        handle.remove()
        captured[label] = logits.detach(), embedded[0]
    assert torch.equal(captured["default"][0], captured["invariant"][0])  # logits
    assert torch.equal(captured["default"][1], captured["invariant"][1])  # d loss / d embedded
    for (name, p), q in zip(default.named_parameters(), invariant.parameters()):
        scale = torch.finfo(torch.float32).eps * p.grad.abs().max()
        assert (p.grad - q.grad).abs().max() <= 8 * scale, name  # only the sums' order differs
    with torch.no_grad():  # evaluation takes the default path: no per-sequence copies
        assert torch.equal(default(tokens[:, :-1]), invariant(tokens[:, :-1]))


def _graph_node_names(tensor: torch.Tensor) -> set[str]:
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: ",".join(o) or "default")
def test_mode_off_records_the_plain_autograd_graph(overrides):
    """With the mode off the layers run the plain expressions they always ran (the gradients
    were checked bitwise against the previous implementation when the mode was added); with it
    on, every parameter passes through the per-sequence broadcast."""
    tokens = batch(2)
    plain = _graph_node_names(cross_entropy(tiny_model(**overrides)(tokens[:, :-1]),
                                            tokens[:, 1:]))
    assert not any("Sequence" in name for name in plain), plain
    invariant_model = tiny_model(batch_invariant_gradients=True, **overrides)
    invariant = _graph_node_names(cross_entropy(invariant_model(tokens[:, :-1]), tokens[:, 1:]))
    assert "_BroadcastOverSequencesBackward" in invariant
    assert "_SequenceLinearBackward" in invariant
    assert "_SequenceEmbeddingBackward" in invariant
