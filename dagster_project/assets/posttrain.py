"""posttrain group: SFT, GRPO, an equal-compute SFT control, expert iteration and DPO.

The lineage: base_model -> sft_model -> grpo_model, expert_iteration_model, dpo_model, and
sft_control_model (SFT continued from sft_model on the same labelled set for the compute GRPO
spent: the comparison that says whether RL earned its gain). Every stage resumes from its
run directory (keyed by config and inputs) after a crash, holds the GPU pool, and is evaluated
by its `<name>_eval` asset. The task (`align_task` resource) is shared: the synthetic
arithmetic task by default, GSM8K when configured.
"""

import dataclasses
from collections.abc import Callable

from dagster import (
    AssetExecutionContext,
    ConfigurableResource,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dagster_project.assets.pretrain import base_model
from dagster_project.assets.tokens import bpe_tokenizer
from dagster_project.metadata import result_metadata
from dagster_project.policies import GPU_POOL, TRAINING_RETRY_POLICY
from dagster_project.resources import Storage
from dagster_project.stage import config_class, materialization, publish, upstream
from lmlib.align import (
    DPOConfig,
    ExpertIterationConfig,
    GRPOConfig,
    SFTConfig,
    TaskConfig,
    build_tasks,
    run_dpo,
    run_expert_iteration,
    run_grpo,
    run_sft,
)
from lmlib.align.sft import equal_compute_steps
from lmlib.artifacts import read_manifest
from lmlib.tokenizer import Tokenizer
from lmlib.train.runs import run_directory

AlignTask = config_class(TaskConfig, "AlignTask", base=ConfigurableResource)
SFTSettings = config_class(SFTConfig, "SFTSettings")
GRPOSettings = config_class(GRPOConfig, "GRPOSettings")
ExpertIterationSettings = config_class(ExpertIterationConfig, "ExpertIterationSettings")
DPOSettings = config_class(DPOConfig, "DPOSettings")


def _post_train(context: AssetExecutionContext, storage: Storage, start, settings,
                task: TaskConfig, loop: Callable, split: str) -> MaterializeResult:
    """The shape of every post-training asset: the lmlib.align `loop` from the `start`
    checkpoint on the task's `split` ("labelled" or "unlabelled", validated on its validation
    split), published with its run directory's key."""
    start_dir, tokenizer = storage.artifact_dir(start), storage.artifact_dir(bpe_tokenizer)
    inputs = {start.key.path[-1]: upstream(start_dir), "bpe_tokenizer": upstream(tokenizer)}
    run_dir = run_directory(storage.home_path / "runs" / context.asset_key.path[-1],
                            settings, {**inputs, "task": repr(task)})
    context.log.info(f"training in {run_dir} (checkpoints there survive a crash)")
    splits = build_tasks(task)
    result = publish(context, storage,
                     lambda out: loop(start_dir / "model", tokenizer, getattr(splits, split),
                                      splits.validation, run_dir, out, settings,
                                      _progress(context)),
                     config={"stage": settings, "task": task}, inputs=inputs)
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result),
        "path": MetadataValue.path(str(storage.artifact_dir(context.asset_key) / "model"))}))


def _progress(context: AssetExecutionContext):
    return lambda record: context.log.info(str(record))


@asset(deps=[base_model, bpe_tokenizer], group_name="posttrain", kinds={"pytorch"},
       pool=GPU_POOL, retry_policy=TRAINING_RETRY_POLICY,
       description="base_model fine-tuned on a deliberately small labelled set of the task "
                   "(response-only loss), with validation accuracy during training.")
def sft_model(context: AssetExecutionContext, config: SFTSettings, align_task: AlignTask,
              storage: Storage) -> MaterializeResult:
    settings, task = config.build(), align_task.build()
    return _post_train(context, storage, base_model, settings, task, run_sft, "labelled")


@asset(deps=[sft_model, bpe_tokenizer], group_name="posttrain", kinds={"pytorch"},
       pool=GPU_POOL, retry_policy=TRAINING_RETRY_POLICY,
       description="GRPO from sft_model on the task's unlabelled prompts: rollouts from the "
                   "engine, group-normalized advantages, rewards checked by the task.")
def grpo_model(context: AssetExecutionContext, config: GRPOSettings, align_task: AlignTask,
               storage: Storage) -> MaterializeResult:
    settings, task = config.build(), align_task.build()
    return _post_train(context, storage, sft_model, settings, task, run_grpo, "unlabelled")


@asset(deps=[sft_model, grpo_model, bpe_tokenizer], group_name="posttrain", kinds={"pytorch"},
       pool=GPU_POOL, retry_policy=TRAINING_RETRY_POLICY,
       description="The control for grpo_model: SFT continued from sft_model on the same "
                   "labelled set for as much compute as GRPO spent.")
def sft_control_model(context: AssetExecutionContext, config: SFTSettings,
                      align_task: AlignTask, storage: Storage) -> MaterializeResult:
    task = align_task.build()
    grpo_counts = read_manifest(storage.artifact_dir(grpo_model))["counts"]
    steps = equal_compute_steps(
        grpo_counts["trained_tokens"], grpo_counts["generated_tokens"], config.build(),
        Tokenizer.from_directory(storage.artifact_dir(bpe_tokenizer)), build_tasks(task).labelled)
    settings = dataclasses.replace(config.build(), steps=steps)
    context.log.info(f"equal compute: {steps} SFT steps for GRPO's {grpo_counts}")
    return _post_train(context, storage, sft_model, settings, task, run_sft, "labelled")


@asset(deps=[sft_model, bpe_tokenizer], group_name="posttrain", kinds={"pytorch"},
       pool=GPU_POOL, retry_policy=TRAINING_RETRY_POLICY,
       description="Expert iteration from sft_model: sample answers to unlabelled prompts, keep "
                   "the correct ones, fine-tune on them, for several rounds.")
def expert_iteration_model(context: AssetExecutionContext, config: ExpertIterationSettings,
                           align_task: AlignTask, storage: Storage) -> MaterializeResult:
    settings, task = config.build(), align_task.build()
    return _post_train(context, storage, sft_model, settings, task, run_expert_iteration,
                       "unlabelled")


@asset(deps=[sft_model, bpe_tokenizer], group_name="posttrain", kinds={"pytorch"},
       pool=GPU_POOL, retry_policy=TRAINING_RETRY_POLICY,
       description="DPO from sft_model against itself frozen, on preference pairs (a file, or "
                   "the policy's correct and incorrect answers to unlabelled prompts).")
def dpo_model(context: AssetExecutionContext, config: DPOSettings, align_task: AlignTask,
              storage: Storage) -> MaterializeResult:
    settings, task = config.build(), align_task.build()
    return _post_train(context, storage, sft_model, settings, task, run_dpo, "unlabelled")


POST_TRAINED = {"sft_model": sft_model, "sft_control_model": sft_control_model,
                "grpo_model": grpo_model, "expert_iteration_model": expert_iteration_model,
                "dpo_model": dpo_model}
