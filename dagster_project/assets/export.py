"""export group: the base model as a Hugging Face directory, for the tools people already use."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from dagster_project.assets.pretrain import base_model
from dagster_project.assets.tokens import bpe_tokenizer
from dagster_project.metadata import result_metadata
from dagster_project.resources import Storage
from dagster_project.stage import config_class, materialization, publish, upstream
from lmlib.hf import HFExportConfig, export_model

HFExportSettings = config_class(HFExportConfig, "HFExportSettings")


@asset(deps=[base_model, bpe_tokenizer], group_name="export", kinds={"pytorch", "safetensors"},
       description="base_model as a Llama-architecture Hugging Face directory (config.json, "
                   "model.safetensors, tokenizer files): transformers loads it with the same "
                   "logits and token ids.")
def hf_export(context: AssetExecutionContext, config: HFExportSettings,
              storage: Storage) -> MaterializeResult:
    model, tokenizer = storage.artifact_dir(base_model), storage.artifact_dir(bpe_tokenizer)
    settings = config.build()
    result = publish(context, storage,
                     lambda out: export_model(model / "model", tokenizer, out, settings),
                     config=settings, inputs={"base_model": upstream(model),
                                              "bpe_tokenizer": upstream(tokenizer)})
    directory = storage.artifact_dir(context.asset_key)
    snippet = (f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
               f"model = AutoModelForCausalLM.from_pretrained({str(directory)!r})\n"
               f"tokenizer = AutoTokenizer.from_pretrained({str(directory)!r})\n```")
    return MaterializeResult(**materialization(context, storage, {
        **result_metadata(result), "path": MetadataValue.path(str(directory)),
        "load_with_transformers": MetadataValue.md(snippet)}))
