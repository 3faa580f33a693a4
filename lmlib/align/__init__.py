"""Post-training: SFT, expert iteration, GRPO and DPO on lmlib.model.TransformerLM (ours, or one
imported with lmlib.hf.load), with the field's reference interface.

Notable:
- the interface (names and semantics as the field's reference implementation has them):
  `tokenize_prompt_and_output`, `compute_entropy`, `get_response_log_probs`,
  `masked_normalize`, `masked_mean`, `sft_microbatch_train_step`,
  `compute_group_normalized_rewards`, `compute_naive_policy_gradient_loss`,
  `compute_grpo_clip_loss`, `compute_policy_gradient_loss`, `grpo_microbatch_train_step`,
  `compute_per_instance_dpo_loss`, `PackedSFTDataset`, `iterate_batches`, and the rewards
  (`r1_zero_reward_fn`, `boxed_reward_fn`, `arithmetic_reward_fn`);
- the loops, each a stage (config dataclass -> typed result) that resumes from its run
  directory: `run_sft`, `run_expert_iteration`, `run_grpo`, `run_dpo`; they share
  lmlib.align.policy (the pretraining trainer's optimizer, checkpoints, log and stop signals)
  and sample with lmlib.infer.Engine;
- tasks: `TaskConfig` -> `build_tasks` (labelled pairs for SFT, unlabelled prompts for the
  rest, a validation split), on the synthetic arithmetic task or GSM8K.
"""

from lmlib.align.data import PackedSFTDataset, iterate_batches, tokenize_prompt_and_output
from lmlib.align.dpo import DPOConfig, DPOResult, run_dpo
from lmlib.align.expert_iteration import (
    ExpertIterationConfig,
    ExpertIterationResult,
    run_expert_iteration,
)
from lmlib.align.grpo import GRPOConfig, GRPOResult, run_grpo
from lmlib.align.losses import (
    compute_entropy,
    compute_group_normalized_rewards,
    compute_grpo_clip_loss,
    compute_naive_policy_gradient_loss,
    compute_per_instance_dpo_loss,
    compute_policy_gradient_loss,
    get_response_log_probs,
    grpo_microbatch_train_step,
    masked_mean,
    masked_normalize,
    sft_microbatch_train_step,
)
from lmlib.align.rewards import arithmetic_reward_fn, boxed_reward_fn, r1_zero_reward_fn
from lmlib.align.sft import SFTConfig, SFTResult, run_sft
from lmlib.align.tasks import TaskConfig, TaskSplits, VerifiableTask, build_tasks

__all__ = [
    "DPOConfig", "DPOResult", "ExpertIterationConfig", "ExpertIterationResult", "GRPOConfig",
    "GRPOResult", "PackedSFTDataset", "SFTConfig", "SFTResult", "TaskConfig", "TaskSplits",
    "VerifiableTask", "arithmetic_reward_fn", "boxed_reward_fn", "build_tasks",
    "compute_entropy", "compute_group_normalized_rewards", "compute_grpo_clip_loss",
    "compute_naive_policy_gradient_loss", "compute_per_instance_dpo_loss",
    "compute_policy_gradient_loss", "get_response_log_probs", "grpo_microbatch_train_step",
    "iterate_batches", "masked_mean", "masked_normalize", "r1_zero_reward_fn", "run_dpo",
    "run_expert_iteration", "run_grpo", "run_sft", "sft_microbatch_train_step",
    "tokenize_prompt_and_output",
]
