"""Log-likelihood scoring and bits per byte against full forwards, and against transformers."""

import math

import numpy as np
import pytest
import torch

from lmlib.eval.likelihood import (
    encode_pair,
    evaluate_texts,
    evaluate_token_shards,
    hf_logits,
    read_texts,
    score_continuations,
    token_byte_lengths,
)
from lmlib.model import ModelConfig, TransformerLM
from lmlib.tokenizer import Tokenizer
from tests.conftest import shared_path
from tests.train.conftest import write_shards


def tiny(vocab=300, context=24, **overrides) -> TransformerLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=vocab, context_length=context, d_model=32, num_layers=2,
                         num_heads=4, d_ff=64, attention_backend="torch", **overrides)
    model = TransformerLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(3.0)
    return model


def byte_tokenizer() -> Tokenizer:
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])


@torch.no_grad()
def reference_score(model, context, continuation, window):
    ids = (context + continuation)[-(window + 1):]
    logits = model(torch.tensor([ids[:-1]]))[0].float().log_softmax(-1)
    picked = logits[-len(continuation):].gather(-1, torch.tensor(continuation)[:, None])
    greedy = (logits[-len(continuation):].argmax(-1) == torch.tensor(continuation)).all()
    return float(picked.sum()), bool(greedy)


def test_continuation_scores_equal_a_full_forward_per_request_whatever_the_batching():
    model = tiny()
    generator = torch.Generator().manual_seed(3)

    def ids(n):
        return torch.randint(0, 300, (n,), generator=generator).tolist()

    shared = ids(7)
    requests = [(shared, [5]), (shared, [9]), (shared, ids(3)), (ids(4), ids(1)),
                (ids(30), ids(2)), (ids(2), ids(5))]  # the fifth is longer than the window
    expected = [reference_score(model, c, x, 24) for c, x in requests]
    for batch_size in (1, 4):
        scores = score_continuations(model, requests, batch_size=batch_size)
        for score, (logprob, greedy) in zip(scores, expected, strict=True):
            assert score.logprob == pytest.approx(logprob, abs=1e-4)
            assert score.is_greedy == greedy
    # the argmax token as a continuation is greedy
    best = int(model(torch.tensor([shared]))[0, -1].argmax())
    assert score_continuations(model, [(shared, [best])])[0].is_greedy


def test_clear_errors_for_empty_requests_and_unknown_windows():
    model = tiny()
    with pytest.raises(ValueError, match="empty continuation"):
        score_continuations(model, [([1, 2], [])])
    with pytest.raises(ValueError, match="empty context"):
        score_continuations(model, [([], [1])])
    with pytest.raises(ValueError, match="max_length is required"):
        score_continuations(lambda ids: model(ids), [([1], [2])])


def test_encode_pair_moves_the_contexts_trailing_spaces_as_the_harness_does():
    tokenizer = Tokenizer.from_files(shared_path("data/gpt2/gpt2_vocab.json"),
                                     shared_path("data/gpt2/gpt2_merges.txt"),
                                     ["<|endoftext|>"])
    context, continuation = encode_pair(tokenizer, "Answer: ", "B")
    assert context == tokenizer.encode("Answer:") and continuation == tokenizer.encode(" B")
    context, continuation = encode_pair(tokenizer, "Answer:", " B")
    assert tokenizer.decode(continuation) == " B"


def test_shard_bits_per_byte_is_the_summed_nll_over_the_bytes_of_non_special_targets(tmp_path):
    shards = write_shards(tmp_path / "shards", {"train": [100], "val": [130]})
    model, tokenizer = tiny(vocab=300, context=16), byte_tokenizer()
    result = evaluate_token_shards(model, tokenizer, shards, max_tokens=100, window=16,
                                   batch_size=3)
    stream = np.fromfile(shards / "val_00000.bin", dtype="<u2")[:101].astype(np.int64)
    lengths = token_byte_lengths(tokenizer)
    nll = byte_nll = 0.0
    for start in range(0, 100, 16):
        window = torch.tensor(stream[start : start + 17])
        with torch.no_grad():
            logp = model(window[None, :-1])[0].log_softmax(-1)
        token_nll = -logp.gather(-1, window[1:, None]).squeeze(-1).double().numpy()
        nll += token_nll.sum()
        byte_nll += token_nll[lengths[window[1:].numpy()] > 0].sum()
    assert result.tokens == 100
    assert result.loss == pytest.approx(nll / 100, rel=1e-5)
    assert result.bytes == int(lengths[stream[1:101]].sum())
    assert result.bits_per_byte == pytest.approx(byte_nll / (math.log(2) * result.bytes), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(result.loss))


def test_bits_per_byte_on_enwiki_is_the_same_through_transformers(tmp_path):
    """The check against the field: our scorer on our model and on transformers' model of the
    exported weights give the same bits per byte of real text."""
    transformers = pytest.importorskip("transformers")
    from lmlib.hf import export

    tokenizer = Tokenizer.from_files(shared_path("data/gpt2/gpt2_vocab.json"),
                                     shared_path("data/gpt2/gpt2_merges.txt"),
                                     ["<|endoftext|>"])
    texts = [text[:1500] for text in
             read_texts(shared_path("data/text/enwiki-excerpt.jsonl.gz"), limit=3)]
    model = tiny(vocab=50257, context=64)
    export(model, None, tmp_path)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ours = evaluate_texts(model, tokenizer, texts, batch_size=8)
    theirs = evaluate_texts(hf_logits(reference), tokenizer, texts, window=64, batch_size=8)
    assert ours.bytes == sum(len(t.encode()) for t in texts) == theirs.bytes
    assert ours.tokens == theirs.tokens > 300
    assert ours.bits_per_byte == pytest.approx(theirs.bits_per_byte, rel=1e-5)
    assert ours.loss == pytest.approx(theirs.loss, rel=1e-5)


def test_compiled_scoring_gives_the_eager_scores(monkeypatch):
    """compile=True traces one graph with dynamic shapes (aot_eager here: the trace, not
    Inductor's code generation, is what could differ) and scores as the eager path does."""
    from lmlib.eval.likelihood import _Scorer

    monkeypatch.setattr(_Scorer, "compile_backend", "aot_eager")
    torch._dynamo.reset()
    model = tiny()
    generator = torch.Generator().manual_seed(7)
    requests = [(torch.randint(0, 300, (n,), generator=generator).tolist(), [n % 7, 3][: 1 + n % 2])
                for n in (3, 5, 9, 14, 20, 30)]
    eager = score_continuations(model, requests, batch_size=2)
    compiled = score_continuations(model, requests, batch_size=2, compile=True)
    for a, b in zip(eager, compiled, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy


def test_scoring_compiles_by_default_only_on_cuda():
    """The default (compile=None) is the engine's rule: compiled where launches dominate (CUDA),
    eager on CPU, where compilation would cost more than it saves on a short evaluation."""
    from lmlib.eval.likelihood import _scored_logits, _Scorer

    model = tiny()
    assert _Scorer(model, torch.device("cpu")).forward is _scored_logits
    assert _Scorer(model, torch.device("cuda")).forward is not _scored_logits
    assert _Scorer(model, torch.device("cuda"), compile=False).forward is _scored_logits
