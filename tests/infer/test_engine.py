"""lmlib.infer.Engine on the CPU against a reference loop over the model's full forward."""

import pytest
import torch

from lmlib.infer import Engine, Request
from lmlib.infer.sampling import log_softmax
from lmlib.model import ModelConfig, TransformerLM, generate

VOCAB = 61

CONFIGS = {
    "default": {},
    "gqa_bias": {"num_kv_heads": 2, "qkv_bias": True},
    "mqa_tied_qk_norm": {"num_kv_heads": 1, "tie_embeddings": True, "qk_norm": True},
    "post_norm_silu": {"post_norm": True, "silu_ffn": True},
    "no_rope": {"no_rope": True},
}


def tiny(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB, context_length=48, d_model=32, num_layers=2,
                         num_heads=4, attention_backend="torch", **overrides)
    model = TransformerLM(config).eval()
    with torch.no_grad():  # larger weights than the init: sharper, more varied distributions
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(0.1 * torch.randn_like(parameter))
            else:
                parameter.mul_(3.0)
    return model


def prompts(lengths=(3, 9, 5)) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, VOCAB, (n,), generator=generator).tolist() for n in lengths]


@torch.no_grad()
def reference_greedy(model, prompt, steps, temperature=1.0):
    """Full forward over the growing sequence, argmax each step; logprobs at temperature T."""
    sequence, logprobs = list(prompt), []
    for _ in range(steps):
        logits = model(torch.tensor([sequence]))[0, -1].float()
        token = int(logits.argmax())
        logprobs.append(float(log_softmax(logits / temperature)[token]))
        sequence.append(token)
    return sequence[len(prompt):], logprobs


@torch.no_grad()
def full_forward_logprobs(model, prompt, tokens, temperature):
    logits = model(torch.tensor([prompt + tokens]))[0, len(prompt) - 1 : -1].float()
    return log_softmax(logits / temperature).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_equals_the_full_forward_argmax_loop_for_prompts_of_different_lengths(name):
    model = tiny(**CONFIGS[name])
    engine = Engine(model, max_batch_size=8, max_seq_len=32)
    requests = [Request(p, max_new_tokens=12, temperature=0.0) for p in prompts()]
    completions = engine.generate(requests)
    assert [(c.request_index, c.sample_index) for c in completions] == [(0, 0), (1, 0), (2, 0)]
    for request, completion in zip(requests, completions, strict=True):
        expected, expected_logprobs = reference_greedy(model, request.prompt, 12)
        assert completion.tokens == expected
        assert completion.finish_reason == "length"
        torch.testing.assert_close(torch.tensor(completion.logprobs),
                                   torch.tensor(expected_logprobs), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["default", "gqa_bias"])
def test_sampled_logprobs_equal_log_softmax_of_full_forward_logits_over_temperature(name):
    model = tiny(**CONFIGS[name])
    engine = Engine(model, max_batch_size=8, max_seq_len=32)
    for temperature, top_k, top_p in [(0.7, 0, 1.0), (1.3, 5, 0.9)]:
        requests = [Request(p, n=2, max_new_tokens=10, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=3) for p in prompts()]
        for completion in engine.generate(requests):
            prompt = requests[completion.request_index].prompt
            expected = full_forward_logprobs(model, prompt, completion.tokens, temperature)
            torch.testing.assert_close(torch.tensor(completion.logprobs), expected, atol=1e-4,
                                       rtol=0)


def test_samples_of_a_prompt_share_one_prefill_and_differ_and_seeds_reproduce():
    model = tiny(num_kv_heads=2)
    engine = Engine(model, max_batch_size=16, max_seq_len=32)
    calls = []
    handle = model.layers[0].register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    requests = [Request(p, n=4, max_new_tokens=10, seed=7) for p in prompts()]
    completions = engine.generate(requests)
    handle.remove()
    assert len(calls) == 1 and calls[0][0] == 3  # one prefill, one row per distinct prompt
    assert engine.prefill_calls == 1
    for index in range(3):
        samples = {tuple(c.tokens) for c in completions if c.request_index == index}
        assert len(samples) > 1
    again = engine.generate(requests)
    assert [c.tokens for c in again] == [c.tokens for c in completions]
    other_seed = engine.generate([Request(p, n=4, max_new_tokens=10, seed=8) for p in prompts()])
    assert [c.tokens for c in other_seed] != [c.tokens for c in completions]


def test_a_requests_outputs_do_not_depend_on_the_rest_of_the_batch():
    model = tiny(num_kv_heads=2, qkv_bias=True)
    engine = Engine(model, max_batch_size=16, max_seq_len=40)
    alone_request = Request(prompts()[1], n=3, max_new_tokens=10, seed=11, top_p=0.95)
    alone = engine.generate([alone_request])
    others = [Request(p, n=2, max_new_tokens=20, seed=5) for p in prompts((4, 12, 2))]
    crowded = engine.generate([others[0], alone_request, *others[1:]])
    mine = [c for c in crowded if c.request_index == 1]
    assert [c.tokens for c in mine] == [c.tokens for c in alone]
    for a, b in zip(alone, mine, strict=True):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5,
                                   rtol=0)


def test_rows_beyond_max_batch_size_run_in_waves_with_the_same_results():
    model = tiny()
    requests = [Request(p, n=3, max_new_tokens=8, seed=2) for p in prompts()]
    wide = Engine(model, max_batch_size=16, max_seq_len=32).generate(requests)
    narrow_engine = Engine(model, max_batch_size=4, max_seq_len=32)
    narrow = narrow_engine.generate(requests)
    assert narrow_engine.prefill_calls == 3  # 9 rows in waves of 4
    assert [(c.request_index, c.sample_index, c.tokens) for c in narrow] == \
        [(c.request_index, c.sample_index, c.tokens) for c in wide]


def test_stop_tokens_end_their_row_with_the_stop_token_included_while_others_continue():
    model = tiny()
    engine = Engine(model, max_batch_size=8, max_seq_len=32)
    greedy = engine.generate([Request(p, max_new_tokens=12, temperature=0.0) for p in prompts()])
    stop = greedy[0].tokens[4]
    first_stop = greedy[0].tokens.index(stop)
    requests = [Request(prompts()[0], max_new_tokens=12, temperature=0.0, stop_tokens=(stop,)),
                Request(prompts()[1], max_new_tokens=12, temperature=0.0),
                Request(prompts()[2], max_new_tokens=5, temperature=0.0)]
    stopped, running, short = engine.generate(requests)
    assert stopped.finish_reason == "stop"
    assert stopped.tokens == greedy[0].tokens[: first_stop + 1]
    assert len(stopped.logprobs) == len(stopped.tokens)
    assert running.finish_reason == "length" and running.tokens == greedy[1].tokens
    assert short.finish_reason == "length" and short.tokens == greedy[2].tokens[:5]


def test_top_k_one_and_a_tiny_top_p_equal_greedy():
    model = tiny(num_kv_heads=2)
    engine = Engine(model, max_batch_size=8, max_seq_len=32)
    greedy = engine.generate([Request(p, max_new_tokens=10, temperature=0.0) for p in prompts()])
    for settings in ({"top_k": 1}, {"top_p": 1e-6}):
        sampled = engine.generate([Request(p, max_new_tokens=10, temperature=1.5, seed=4,
                                           **settings) for p in prompts()])
        assert [c.tokens for c in sampled] == [c.tokens for c in greedy]


def test_single_prompt_engine_agrees_with_lmlib_model_generate():
    model = tiny()
    prompt = prompts()[1]
    expected = generate(model, None, prompt, max_new_tokens=10, temperature=0.0)
    [[completion]] = Engine(model, max_batch_size=1, max_seq_len=32).generate_batch(
        [prompt], max_new_tokens=10, temperature=0.0)
    assert completion.tokens == expected


def test_bfloat16_engine_of_a_float32_model_runs_and_syncs_weights():
    model = tiny()
    engine = Engine(model, max_batch_size=4, max_seq_len=32, dtype=torch.bfloat16)
    assert engine.model is not model and engine.cache.dtype == torch.bfloat16
    (completion,) = engine.generate([Request(prompts()[0], max_new_tokens=6, temperature=0.0)])
    assert len(completion.tokens) == 6
    with torch.no_grad():
        model.lm_head.weight.zero_()
    engine.sync_weights()
    assert engine.model.lm_head.weight.abs().max() == 0


def test_clear_errors_for_requests_that_do_not_fit():
    model = tiny()
    engine = Engine(model, max_batch_size=4, max_seq_len=16)
    with pytest.raises(ValueError, match="exceeds the engine's max_seq_len=16"):
        engine.generate([Request(list(range(10)), max_new_tokens=7)])
    with pytest.raises(ValueError, match="prompt is empty"):
        engine.generate([Request([], max_new_tokens=2)])
    with pytest.raises(ValueError, match="top_p"):
        engine.generate([Request([1], max_new_tokens=2, top_p=0.0)])
    with pytest.raises(ValueError, match=r"\[0, 61\)"):
        engine.generate([Request([VOCAB], max_new_tokens=2)])
    with pytest.raises(ValueError, match="context_length"):
        Engine(model, max_batch_size=4, max_seq_len=100)


def test_the_whole_step_traces_as_one_graph_and_the_compiled_step_decodes_the_same():
    """fullgraph=True: a graph break in decode, sampling or bookkeeping fails here on the CPU,
    not first on a GPU under Inductor."""
    model = tiny(num_kv_heads=2, qkv_bias=True, qk_norm=True)
    requests = [Request(p, n=2, max_new_tokens=9, seed=4, temperature=0.8, top_k=20)
                for p in prompts()] + [Request(prompts()[0], max_new_tokens=9)]
    eager = Engine(model, max_batch_size=8, max_seq_len=32).generate(requests)
    engine = Engine(model, max_batch_size=8, max_seq_len=32)
    engine.compiled, engine.compile_backend = True, "aot_eager"
    traced = engine.generate(requests)
    assert [c.tokens for c in traced] == [c.tokens for c in eager]
    for a, b in zip(traced, eager, strict=True):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs),
                                   atol=1e-5, rtol=0)
