"""The filter chain end to end on a small Parquet partition built here."""

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmlib.formats import DECISIONS_FILE, DOCUMENTS_FILE, FUNNEL_PLOT_FILE
from lmlib.web.filter_chain import FilterChain, FilterConfig, filter_documents
from lmlib.web.filters import Decision, DocumentFilter
from lmlib.web.harmful import train_harmful_classifier
from lmlib.web.quality import train_quality_classifier
from tests.conftest import shared_path
from tests.web.test_harmful import HARMLESS_TEXTS, NSFW_TEXTS, TINY

PROSE = [
    "The river runs through the old town, past the market and the church.",
    "In spring the water rises and the boats come back to the harbour.",
    "Fishermen sell their catch on the stone quay while children watch the gulls.",
    "Later in the year the streets fill with visitors who walk along the banks.",
    "The cathedral was completed in the fourteenth century after a long fire.",
    "Its library holds letters written by merchants who traded wool across the sea.",
    "The town council meets every month to discuss the budget and the new school.",
    "Farmers from the surrounding valley bring apples, cheese and honey to the square.",
    "A railway line reached the town in 1862 and changed the life of the valley.",
    "Historians describe the period as one of slow growth and careful building.",
]
SPAM = [
    "Buy cheap replica watches online now with free shipping today only.",
    "Click here for the best price on discount pills and casino bonus codes.",
    "Limited offer! Win money fast, register now and get your free gift card.",
    "Hot deals on cheap loans, no credit check, apply online in seconds.",
    "Best online casino bonus, click here, sign up now, cheap pills discount.",
]


# The decisions table's columns, in order: artifacts downstream read them, so they are fixed.
DECISION_COLUMNS = [
    "doc_id",
    "language", "language_score", "language_pass",
    "gopher_words", "gopher_mean_word_length", "gopher_ellipsis_line_fraction",
    "gopher_alphabetic_word_fraction", "gopher_pass", "gopher_failures",
    "gopher_repetition_pass", "gopher_repetition_failures",
    "nsfw_score", "nsfw_pass", "toxic_score", "toxic_pass",
    "quality_score", "quality_pass",
    "rejected_by",
    "pii_emails", "pii_phone_numbers", "pii_ips",
]  # fmt: skip


def paragraph(sentences, n, seed):
    rng = random.Random(seed)
    return " ".join(rng.choice(sentences) for _ in range(n))


GOOD_WITH_PII = (
    paragraph(PROSE, 6, 1)
    + "\nWrite to the archive at info@town-archive.org or call (283) 182 3829.\n"
    + paragraph(PROSE, 3, 2)
    + " The catalogue server answers at 192.168.10.20."
)
DOCUMENTS = {
    "good-pii": GOOD_WITH_PII,
    "good": paragraph(PROSE, 8, 3),
    "chinese": "委员会星期二开会讨论了明年的预算。几位成员认为图书馆周末应该继续开放。" * 5,
    "short": "The river runs through the old town.",
    "nsfw": paragraph(PROSE, 2, 4) + " explicit nude adult xxx porn webcam naked erotic topless "
    "explicit nude adult xxx porn webcam naked erotic topless " * 4,
    "spam": paragraph(SPAM, 10, 5),
    "empty": "",
}


def write_partition(path, documents):
    rows = {
        "doc_id": list(documents),
        "url": [f"https://example.com/{name}" for name in documents],
        "record_id": [f"<urn:uuid:{i}>" for i in range(len(documents))],
        "date": ["2026-01-01T00:00:00Z"] * len(documents),
        "content_type": ["text/html"] * len(documents),
        "text": list(documents.values()),
        "payload_bytes": [1000 + i for i in range(len(documents))],
        "text_bytes": [len(t.encode()) for t in documents.values()],
        "source_file": ["sample.warc.gz"] * len(documents),
    }
    schema = pa.schema([(name, pa.int64() if name.endswith("bytes") else pa.string())
                        for name in rows])
    pq.write_table(pa.table(rows, schema=schema), path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    nsfw = train_harmful_classifier("nsfw", NSFW_TEXTS, HARMLESS_TEXTS, root / "nsfw.bin", **TINY)
    toxic = train_harmful_classifier(
        "toxic", ["you stupid idiot shut up"] * 100, HARMLESS_TEXTS, root / "toxic.bin", **TINY
    )
    positives = [paragraph(PROSE, 5, seed) for seed in range(100, 200)]
    negatives = [paragraph(SPAM, 5, seed) for seed in range(200, 300)]
    quality = root / "quality.bin"
    # the tiny bucket and dim keep the test fast; with them fastText's few-epoch defaults
    # sometimes diverge to NaN (a fresh process, 2 in 4 runs), these settings never did
    train_quality_classifier(positives, negatives, quality, bucket=10_000, dim=16, lr=0.5,
                             epoch=50, word_ngrams=2)
    return {"nsfw": nsfw, "toxic": toxic, "quality": quality}


@pytest.fixture()
def config(models):
    return FilterConfig(
        language_model_path=str(shared_path("models/lid.176.ftz")),
        nsfw_model_path=str(models["nsfw"]),
        toxic_model_path=str(models["toxic"]),
        quality_threshold=0.5,
        harmful_model_cache_dir="/nonexistent-cache",
    )


def test_chain_funnel_decisions_and_masked_output(tmp_path, config, models):
    source = write_partition(tmp_path / "in.parquet", DOCUMENTS)
    result = filter_documents(source, tmp_path / "out", config, models["quality"])

    assert result.documents_in == 7
    assert result.removed == {"language": 2, "gopher": 1, "nsfw": 1, "toxic": 0, "quality": 1}
    assert result.kept == 2
    assert result.funnel[0] == {"filter": "input", "removed": 0, "remaining": 7}
    assert result.funnel[-1] == {"filter": "quality", "removed": 1, "remaining": 2}
    assert sum(result.removed.values()) + result.kept == result.documents_in
    assert result.language_distribution["en"] == 5
    assert result.language_distribution["zh"] == 1
    assert result.language_distribution["und"] == 1
    assert result.pii_replacements == {"email": 1, "phone": 1, "ip": 1}
    assert [step["status"] for step in result.steps] == [
        "ran", "ran", "skipped", "ran", "ran", "ran"]  # gopher_repetition is off by default
    assert result.step("nsfw")["detail"] == str(models["nsfw"])
    assert result.removed_examples["gopher"][0]["doc_id"] == "short"
    assert result.removed_examples["gopher"][0]["score"] == "word_count"
    assert result.removed_examples["language"][0]["text"].startswith("委员会")
    assert result.removed_examples["language"][0]["score"].startswith("zh ")
    assert result.documents_per_second > 0
    assert result.funnel_plot == tmp_path / "out" / FUNNEL_PLOT_FILE
    assert result.funnel_plot.read_bytes().startswith(b"\x89PNG")
    assert result.manifest_counts() == {"documents_in": 7, "kept": 2, "removed": result.removed}

    decisions_table = pq.read_table(tmp_path / "out" / DECISIONS_FILE)
    assert decisions_table.column_names == DECISION_COLUMNS
    decisions = decisions_table.to_pylist()
    assert [row["doc_id"] for row in decisions] == list(DOCUMENTS)
    rejected = {row["doc_id"]: row["rejected_by"] for row in decisions}
    assert rejected == {"good-pii": None, "good": None, "chinese": "language", "short": "gopher",
                        "nsfw": "nsfw", "spam": "quality", "empty": "language"}
    short = decisions[3]
    assert short["gopher_pass"] is False and short["gopher_words"] == 7
    assert short["nsfw_score"] is None  # never reached
    nsfw = decisions[4]
    assert nsfw["nsfw_score"] > 0.5 and nsfw["toxic_score"] is None
    good = decisions[1]
    assert good["language"] == "en" and good["language_score"] >= 0.65
    assert good["quality_score"] >= 0.5 and good["quality_pass"] is True

    kept = pq.read_table(tmp_path / "out" / DOCUMENTS_FILE)
    original = pq.read_table(source)
    assert kept.schema == original.schema
    assert kept.column("doc_id").to_pylist() == ["good-pii", "good"]
    masked = kept.column("text")[0].as_py()
    assert "info@town-archive.org" not in masked and "|||EMAIL_ADDRESS|||" in masked
    assert "|||PHONE_NUMBER|||" in masked and "|||IP_ADDRESS|||." in masked
    assert kept.column("text_bytes")[0].as_py() == len(masked.encode())
    assert kept.column("text")[1].as_py() == DOCUMENTS["good"]  # nothing to mask
    assert kept.column("payload_bytes").to_pylist() == [1000, 1001]


def test_missing_models_skip_their_steps_with_reasons(tmp_path):
    source = write_partition(tmp_path / "in.parquet", DOCUMENTS)
    config = FilterConfig(language_model_path=str(shared_path("models/lid.176.ftz")),
                          harmful_model_cache_dir=str(tmp_path / "empty-cache"))
    result = filter_documents(source, tmp_path / "out", config, quality_model_path=None)
    assert result.step("nsfw")["status"] == result.step("toxic")["status"] == "skipped"
    assert "none cached at" in result.step("nsfw")["detail"]
    assert result.step("quality") == {"filter": "quality", "status": "skipped",
                                      "detail": "no quality model given"}
    assert list(result.removed) == ["language", "gopher"]
    assert [row["filter"] for row in result.funnel] == ["input", "language", "gopher"]
    assert result.kept == 4  # good-pii, good, nsfw, spam: nothing else judges them
    decisions = pq.read_table(tmp_path / "out" / DECISIONS_FILE)
    assert decisions.column_names == DECISION_COLUMNS  # skipped filters keep their columns
    assert decisions.column("nsfw_score").null_count == 7


def test_worker_pool_gives_the_same_output_as_inline(tmp_path, config, models):
    source = write_partition(tmp_path / "in.parquet", DOCUMENTS)
    inline = filter_documents(source, tmp_path / "inline", config, models["quality"])
    config.workers, config.chunk_size = 2, 3
    pooled = filter_documents(source, tmp_path / "pool", config, models["quality"])
    assert pooled.removed == inline.removed and pooled.workers == 2
    for name in (DOCUMENTS_FILE, DECISIONS_FILE):
        assert pq.read_table(tmp_path / "pool" / name).equals(
            pq.read_table(tmp_path / "inline" / name))


def test_bad_input_and_config_are_clear_errors(tmp_path):
    pq.write_table(pa.table({"doc_id": ["a"], "text": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="lacks the web_documents columns"):
        filter_documents(tmp_path / "bad.parquet", tmp_path / "out", FilterConfig())
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        filter_documents(tmp_path / "missing.parquet", tmp_path / "out", FilterConfig())
    with pytest.raises(ValueError, match="language_threshold"):
        FilterConfig(language_threshold=1.5)
    with pytest.raises(ValueError, match="workers must be > 0"):
        FilterConfig(workers=0)
    with pytest.raises(ValueError, match="examples_per_filter"):
        FilterConfig(examples_per_filter=-1)
    with pytest.raises(FileNotFoundError, match="quality model"):
        FilterChain.from_config(FilterConfig(), tmp_path / "missing.bin")


class MentionsCasino(DocumentFilter):
    """A filter written outside lmlib: one class is all the chain needs."""

    name = "casino"
    columns = {"casino_mentions": pa.int64()}

    def decide(self, text):
        mentions = text.lower().count("casino")
        return Decision(mentions == 0, {"casino_mentions": mentions}, mentions)


def test_a_new_filter_class_plugs_into_the_chain(tmp_path):
    source = write_partition(tmp_path / "in.parquet", DOCUMENTS)
    config = FilterConfig(language_model_path=str(shared_path("models/lid.176.ftz")),
                          harmful_content=False)
    chain = FilterChain.from_config(config)
    chain.filters.insert(2, MentionsCasino())  # after language and Gopher
    result = filter_documents(source, tmp_path / "out", config, chain=chain)

    assert [row["filter"] for row in result.funnel] == ["input", "language", "gopher", "casino"]
    assert result.removed["casino"] == 1 and result.kept == 3
    assert result.removed_examples["casino"][0]["doc_id"] == "spam"
    mentions = DOCUMENTS["spam"].lower().count("casino")
    assert mentions > 0 and result.removed_examples["casino"][0]["score"] == mentions
    assert result.step("casino") == {"filter": "casino", "status": "ran", "detail": ""}
    decisions = pq.read_table(tmp_path / "out" / DECISIONS_FILE)
    assert decisions.column_names[:11] == DECISION_COLUMNS[:10] + ["casino_mentions"]
    rows = {row["doc_id"]: row for row in decisions.to_pylist()}
    assert rows["spam"]["rejected_by"] == "casino" and rows["spam"]["casino_mentions"] == mentions
    assert rows["good"]["casino_mentions"] == 0
    assert rows["short"]["casino_mentions"] is None  # removed before it was reached


def test_chain_decides_one_document_through_the_public_api():
    chain = FilterChain.from_config(FilterConfig(
        language_model_path=str(shared_path("models/lid.176.ftz")), harmful_content=False))
    outcome = chain.decide(GOOD_WITH_PII)
    assert "rejected_by" not in outcome.row
    assert outcome.kept_text is not None and "|||EMAIL_ADDRESS|||" in outcome.kept_text
    assert outcome.row["pii_emails"] == 1 and outcome.score is None
    outcome = chain.decide("The river runs through the old town.")
    assert outcome.row["rejected_by"] == "gopher" and outcome.kept_text is None
    assert outcome.score == "word_count"
