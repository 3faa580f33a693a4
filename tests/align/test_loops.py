"""The post-training loops on tiny models: they learn, and a killed run resumes to the same
weights as an uninterrupted one."""

import os
import signal

import pytest
import torch

from lmlib.align import (
    DPOConfig,
    ExpertIterationConfig,
    GRPOConfig,
    SFTConfig,
    TaskConfig,
    VerifiableTask,
    build_tasks,
    run_dpo,
    run_expert_iteration,
    run_grpo,
    run_sft,
)
from lmlib.model import ModelConfig, TransformerLM, load_model, save_model
from lmlib.tokenizer import Tokenizer
from lmlib.train.interrupts import TrainingInterrupted


@pytest.fixture
def start(tmp_path):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=257, context_length=32, d_model=32,
                                      num_layers=2, num_heads=4, d_ff=64,
                                      attention_backend="torch"))
    save_model(model, tmp_path / "start")
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).save(tmp_path / "tok")
    return tmp_path


def low_bytes_task(count=64) -> VerifiableTask:
    """Reward 1 for an answer whose first character is below "P" (80): about a third of a
    random byte-level model's first tokens, so GRPO has signal from the first step."""
    def reward(response, answer):
        good = bool(response) and ord(response[0]) < 80
        return {"reward": float(good), "format_reward": 1.0, "answer_reward": float(good)}

    prompts = [f"{i}+{i}=" for i in range(count)]
    return VerifiableTask("low bytes", prompts, ["0"] * count, None, reward, ("\n",), 3)


def weights(directory):
    return load_model(directory / "model").state_dict()


def test_sft_lowers_the_response_loss_and_reports_validation_accuracy(start):
    splits = build_tasks(TaskConfig(labelled_examples=64))
    result = run_sft(start / "start", start / "tok", splits.labelled,
                     splits.validation.subset(0, 16), start / "run", start / "out",
                     SFTConfig(steps=30, batch_size=16, eval_interval=15, eval_problems=16,
                               learning_rate=3e-3, device="cpu"))
    curve = result.accuracy_curve
    assert [r["step"] for r in curve] == [15, 30]
    assert curve[-1]["val_loss"] < curve[0]["val_loss"] < 6.0
    assert (start / "out" / "model" / "model.pt").exists() and result.steps == 30


# on CUDA: bf16 autocast and the compiled bf16 engine
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_grpo_raises_the_reward_of_a_task_it_can_find_by_chance(start, device):
    config = GRPOConfig(steps=20, prompts_per_step=8, group_size=8, learning_rate=1e-2,
                        eval_problems=0, device=device, log_interval=1)
    result = run_grpo(start / "start", start / "tok", low_bytes_task(), None, start / "run",
                      start / "out", config)
    rewards = [r["reward"] for r in result.reward_curve]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.2, rewards
    assert result.generation_seconds > 0 and result.trained_tokens > 0


@pytest.mark.parametrize("loss_type, extra", [
    ("no_baseline", {}), ("grpo_clip", {"epochs_per_rollout": 2}),
    ("reinforce_with_baseline", {"normalize_by_std": False, "length_normalization": "constant",
                                 "kl_coefficient": 0.1})])
def test_grpo_runs_every_loss_type_and_option(start, loss_type, extra):
    config = GRPOConfig(steps=2, prompts_per_step=4, group_size=4, eval_problems=0,
                        device="cpu", loss_type=loss_type, **extra)
    result = run_grpo(start / "start", start / "tok", low_bytes_task(), None, start / "run",
                      start / "out", config)
    assert result.steps == 2 * config.epochs_per_rollout


def stop_at(step):
    """A progress callback that sends this process SIGTERM once `step` is logged."""
    def progress(record):
        if record.get("kind") == "train" and record.get("step") == step:
            os.kill(os.getpid(), signal.SIGTERM)
    return progress


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(start, stage):
    if stage == "sft":
        task = build_tasks(TaskConfig(labelled_examples=64)).labelled
        config = SFTConfig(steps=8, batch_size=8, eval_problems=0, checkpoint_interval=100,
                           log_interval=1, device="cpu")
        run = run_sft
    else:
        task = low_bytes_task()
        config = GRPOConfig(steps=6, prompts_per_step=4, group_size=4, eval_problems=0,
                            checkpoint_interval=100, log_interval=1, device="cpu")
        run = run_grpo
    run(start / "start", start / "tok", task, None, start / "whole", start / "a", config)
    with pytest.raises(TrainingInterrupted) as stopped:
        run(start / "start", start / "tok", task, None, start / "killed", start / "b", config,
            progress=stop_at(3))
    assert stopped.value.step == 3
    run(start / "start", start / "tok", task, None, start / "killed", start / "b", config)
    for name, value in weights(start / "a").items():
        torch.testing.assert_close(weights(start / "b")[name], value, rtol=0, atol=0)


def test_expert_iteration_keeps_correct_samples_and_dpo_learns_its_pairs(start):
    ei = run_expert_iteration(
        start / "start", start / "tok", low_bytes_task(), None, start / "ei_run", start / "ei",
        ExpertIterationConfig(rounds=2, questions_per_round=16, samples_per_question=4,
                              steps=5, batch_size=8, eval_problems=0, device="cpu"))
    assert len(ei.per_round) == 2 and ei.per_round[0]["kept"] > 0 and ei.steps == 10
    dpo = run_dpo(start / "start", start / "tok", low_bytes_task(), None, start / "dpo_run",
                  start / "dpo", DPOConfig(steps=20, questions=64, samples_per_question=8,
                                           held_out_pairs=8, batch_size=4, beta=0.5,
                                           learning_rate=3e-3, eval_interval=20,
                                           eval_problems=0, device="cpu"))
    assert dpo.pairs > 0 and dpo.reward_accuracy is not None
    assert dpo.reward_accuracy >= dpo.reward_accuracy_before


def test_bad_configs_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="loss_type"):
        GRPOConfig(loss_type="ppo")
    with pytest.raises(ValueError, match="grpo_clip"):
        GRPOConfig(epochs_per_rollout=2)
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="gsm8k_dir"):
        TaskConfig(task="gsm8k")
    with pytest.raises(ValueError, match="precision"):
        SFTConfig(precision="fp16")


def test_under_bf16_the_engine_samples_from_a_copy_each_step_refreshes(start):
    from lmlib.align.policy import PolicyRun

    run = PolicyRun(start / "start", start / "run", GRPOConfig(precision="bf16", device="cpu"),
                    total_steps=1)
    engine = run.engine(max_batch_size=4)
    assert engine.dtype == torch.bfloat16 and engine.model is not run.model
    with run.autocast():
        run.model(torch.tensor([[1, 2, 3]])).float().pow(2).mean().backward()
    run.optimizer_step()
    for trained, copied in zip(run.model.parameters(), engine.model.parameters(), strict=True):
        assert torch.equal(trained.detach().to(torch.bfloat16), copied)


def test_the_control_gets_the_steps_that_spend_grpos_compute(start):
    from lmlib.align.sft import equal_compute_steps

    task = build_tasks(TaskConfig(labelled_examples=64)).labelled  # "12+34=" "46\n": 9 bytes
    tokenizer = Tokenizer.from_directory(start / "tok")
    config = SFTConfig(batch_size=4, grad_accum_steps=2)
    width = max(len(p) + len(r) for p, r in zip(task.prompts, task.responses, strict=True)) - 1
    # 3 x 1000 trained + 600 generated = 3,600 against 3 x 8 x width per SFT step
    assert equal_compute_steps(1000, 600, config, tokenizer, task) == -(-3600 // (24 * width))
