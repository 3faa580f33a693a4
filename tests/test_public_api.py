"""The public names of lmlib import from the packages that promise them."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["lmlib.web", "lmlib.dedup", "lmlib.tokenizer", "lmlib.model", "lmlib.kernels",
            "lmlib.optim", "lmlib.train", "lmlib.distributed", "lmlib.scaling", "lmlib.hf",
            "lmlib.infer", "lmlib.eval", "lmlib.tasks"]

# The filtering interface as the filtering work defined it: each name imports from lmlib.web.
WEB_FILTER_INTERFACE = [
    "extract_text_from_html_bytes", "identify_language", "mask_emails", "mask_phone_numbers",
    "mask_ips", "classify_nsfw", "classify_toxic_speech", "gopher_quality_filter",
    "train_quality_classifier", "classify_quality",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_imports(package):
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("name", WEB_FILTER_INTERFACE)
def test_filter_interface_imports_from_lmlib_web(name):
    web = importlib.import_module("lmlib.web")
    assert callable(getattr(web, name))
    assert name in web.__all__


def test_importing_lmlib_web_loads_no_fasttext_model_library():
    """The package import stays light: fastText loads when a model is first used."""
    code = "import sys, lmlib.web; print('fasttext' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "False"
