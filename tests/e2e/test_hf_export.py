"""The demo's base model as a Hugging Face directory (`hf_export`, in the session's
`pipeline_home`): transformers loads it with our logits and our tokenizer's ids."""

import pytest
import torch
from dagster import AssetKey, DagsterInstance

from lmlib.model import load_model
from lmlib.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")


def test_transformers_loads_the_exported_base_model_with_the_same_logits(pipeline_home):
    home, dagster_home = pipeline_home
    artifacts = home / "artifacts"
    exported = artifacts / "hf_export"
    ours = Tokenizer.from_directory(artifacts / "bpe_tokenizer")
    theirs = transformers.AutoTokenizer.from_pretrained(exported)
    text = "The model reads a token and learns which one comes next."
    ids = ours.encode(text)
    assert theirs(text)["input_ids"] == ids
    model = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    reference = load_model(artifacts / "base_model" / "model").eval()
    with torch.no_grad():
        batch = torch.tensor([ids])
        assert torch.allclose(model(batch).logits, reference(batch), atol=1e-4)
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        metadata = instance.fetch_materializations(AssetKey("hf_export"), limit=1) \
            .records[0].asset_materialization.metadata
    assert metadata["architecture"].value == "LlamaForCausalLM"
    assert "AutoModelForCausalLM.from_pretrained" in metadata["load_with_transformers"].value
