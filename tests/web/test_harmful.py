"""Harmful-content wrappers on tiny fastText models trained here; the download path on 127.0.0.1."""

import functools
import hashlib
import http.server
import random
import threading

import pytest

from lmlib.web.fasttext_models import download_file
from lmlib.web.harmful import (
    NSFW_MODEL,
    TOXIC_MODEL,
    HarmfulContentClassifier,
    HarmfulModelUnavailable,
    classify_nsfw,
    classify_toxic_speech,
    resolve_harmful_model,
    train_harmful_classifier,
)

# Tiny but not too tiny: this fastText build fails at random on input matrices under ~5000 rows.
TINY = {"bucket": 10_000, "dim": 16, "epoch": 10}
SHARED_WORDS = "the a of and to in is it that for on with as at by this was are be".split()


def sentences(topic_words: list[str], n: int, seed: int) -> list[str]:
    """Seeded sentences mixing topic words with common words."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(topic_words if rng.random() < 0.5 else SHARED_WORDS)
                 for _ in range(rng.randint(8, 20)))
        for _ in range(n)
    ]


NSFW_TEXTS = sentences("explicit nude adult xxx porn webcam naked erotic topless".split(), 150, 1)
TOXIC_TEXTS = sentences("stupid idiot worthless loser moron shut up hate dumb".split(), 150, 2)
HARMLESS_TEXTS = sentences(
    "council library budget garden tomatoes herbs weather school museum river bridge".split(),
    300, 3,
)


@pytest.fixture(scope="module")
def nsfw_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("harmful") / "nsfw.bin"
    return train_harmful_classifier("nsfw", NSFW_TEXTS, HARMLESS_TEXTS, path, **TINY)


@pytest.fixture(scope="module")
def toxic_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("harmful") / "toxic.bin"
    return train_harmful_classifier("toxic", TOXIC_TEXTS, HARMLESS_TEXTS, path, **TINY)


def test_classify_nsfw_labels_and_probabilities(nsfw_model):
    label, score = classify_nsfw("hot xxx webcam video, explicit and nude", model_path=nsfw_model)
    assert label == "nsfw" and type(score) is float and 0.5 < score <= 1.0
    label, score = classify_nsfw("The library budget\nof the council and the museum", nsfw_model)
    assert label == "non-nsfw" and 0.5 < score <= 1.0


def test_classify_toxic_speech_labels_and_probabilities(toxic_model):
    label, score = classify_toxic_speech("shut up you stupid worthless idiot", toxic_model)
    assert label == "toxic" and 0.5 < score <= 1.0
    label, score = classify_toxic_speech("the garden with tomatoes and herbs", toxic_model)
    assert label == "non-toxic" and 0.5 < score <= 1.0


def test_positive_probability_is_the_harmful_label_probability(nsfw_model):
    classifier = HarmfulContentClassifier(NSFW_MODEL, nsfw_model)
    label, score = classifier.predict("the garden club plants herbs")
    assert label == "non-nsfw"
    assert classifier.positive_probability("the garden club plants herbs") == pytest.approx(1 - score)


def test_a_model_with_other_labels_is_rejected(toxic_model):
    with pytest.raises(ValueError, match="expected \\['non-nsfw', 'nsfw'\\]"):
        HarmfulContentClassifier(NSFW_MODEL, toxic_model)


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        train_harmful_classifier("spam", ["a"], ["b"], tmp_path / "x.bin")


def test_no_model_and_no_download_says_why(tmp_path):
    with pytest.raises(HarmfulModelUnavailable, match="none cached at .*nsfw_final.bin"):
        resolve_harmful_model(NSFW_MODEL, cache_dir=tmp_path)
    with pytest.raises(HarmfulModelUnavailable, match="does not exist"):
        resolve_harmful_model(TOXIC_MODEL, tmp_path / "missing.bin")


def test_default_urls_are_dolmas_jigsaw_bigram_models():
    assert NSFW_MODEL.url == ("https://dolma-artifacts.org/fasttext_models/jigsaw_fasttext_bigrams_"
                              "20230515/jigsaw_fasttext_bigrams_nsfw_final.bin")
    assert TOXIC_MODEL.url.endswith("jigsaw_fasttext_bigrams_hatespeech_final.bin")


@pytest.fixture()
def served_directory(tmp_path):
    """An http.server on 127.0.0.1 serving tmp_path/'served' in a thread."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_then_classify(served_directory, nsfw_model, tmp_path):
    root, base_url = served_directory
    payload = nsfw_model.read_bytes()
    (root / "model.bin").write_bytes(payload)
    cache = tmp_path / "cache"
    path = resolve_harmful_model(NSFW_MODEL, cache_dir=cache, download=True,
                                 url=f"{base_url}/model.bin",
                                 sha256=hashlib.sha256(payload).hexdigest())
    assert path == cache / NSFW_MODEL.filename
    assert path.read_bytes() == payload
    assert [p.name for p in cache.iterdir()] == [NSFW_MODEL.filename]  # no .part file left
    assert classify_nsfw("explicit nude webcam", path)[0] == "nsfw"
    # cached now: found without the network
    assert resolve_harmful_model(NSFW_MODEL, cache_dir=cache) == path


def test_training_is_reproducible(nsfw_model, tmp_path):
    again = train_harmful_classifier("nsfw", NSFW_TEXTS, HARMLESS_TEXTS, tmp_path / "again.bin",
                                     **TINY)
    assert again.read_bytes() == nsfw_model.read_bytes()


def test_checksum_mismatch_keeps_nothing(served_directory, tmp_path):
    root, base_url = served_directory
    (root / "model.bin").write_bytes(b"not the model")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download_file(f"{base_url}/model.bin", tmp_path / "out" / "m.bin", sha256="0" * 64,
                      progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_download_means_unavailable(served_directory, tmp_path):
    _, base_url = served_directory
    cache = tmp_path / "cache"
    with pytest.raises(HarmfulModelUnavailable, match="download from .* failed: HTTP Error 404"):
        resolve_harmful_model(TOXIC_MODEL, cache_dir=cache, download=True,
                              url=f"{base_url}/absent.bin")
    assert list(cache.iterdir()) == []
