"""pretrain group: the base model, trained from scratch on the token shards."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from dagster_project.assets.tokens import bpe_tokenizer, token_shards
from dagster_project.launcher import run_training, training_config
from dagster_project.metadata import result_metadata
from dagster_project.policies import GPU_POOL, TRAINING_RETRY_POLICY
from dagster_project.resources import Storage
from dagster_project.stage import materialization, overrides_class, publish, upstream
from lmlib.train import TrainConfig
from lmlib.train.runs import export_run, run_directory

# Every TrainConfig field, unset by default (the preset's value); `preset` names one of
# lmlib.train.PRESETS (tiny: the CPU demo). launcher=torchrun runs `torchrun -m lmlib.train`
# through Dagster Pipes with nproc_per_node processes per node (strategy ddp unless set).
BaseModelConfig = overrides_class(
    TrainConfig, "BaseModelConfig", preset=(str, "tiny"), launcher=(str, "inprocess"),
    nproc_per_node=(int, 1), nnodes=(int, 1))


@asset(deps=[token_shards, bpe_tokenizer], group_name="pretrain", kinds={"pytorch"}, pool=GPU_POOL,
       retry_policy=TRAINING_RETRY_POLICY,
       description="A TransformerLM trained from scratch on the token shards; resumes from the "
                   "latest checkpoint of the same run when re-materialized after a crash.")
def base_model(
    context: AssetExecutionContext, config: BaseModelConfig, storage: Storage
) -> MaterializeResult:
    shards, tokenizer = storage.artifact_dir(token_shards), storage.artifact_dir(bpe_tokenizer)
    train_config = training_config(config)
    inputs = {"token_shards": upstream(shards), "bpe_tokenizer": upstream(tokenizer)}
    # Checkpoints live outside the artifact, keyed by config and inputs, so that a killed run
    # resumes when the asset is materialized again with the same config.
    run_dir = run_directory(storage.home_path / "runs" / "base_model", train_config, inputs)
    context.log.info(f"training in {run_dir} (checkpoints there survive a crash)")

    def produce(out):
        result = run_training(context, config, train_config, shards, run_dir, tokenizer)
        export_run(run_dir, out)
        return result

    result = publish(context, storage, produce, config=train_config, inputs=inputs)
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result),
        "path": MetadataValue.path(str(storage.artifact_dir(context.asset_key) / "model")),
    }))
