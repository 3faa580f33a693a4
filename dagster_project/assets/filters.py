"""filter group: a quality classifier, then per-file language, Gopher, harmful, quality and PII."""

from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from dagster_project.assets.web import web_documents
from dagster_project.metadata import (
    counts_table,
    image_markdown,
    markdown_table,
    numbers,
    partitions_metadata,
)
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from dagster_project.stage import partition_inputs, run_stage, upstream
from lmlib.plots import bar_chart
from lmlib.web.filter_chain import FilterConfig, filter_documents
from lmlib.web.quality import build_quality_classifier
from lmlib.web.sample_crawl import REFERENCE_NAME


class QualityClassifierConfig(Config):
    """Positives: a JSONL(.gz) reference set ("text" per line); default: the crawl's own."""

    reference_path: str | None = None
    negative_sample: int = 1000
    held_out_fraction: float = 0.2
    seed: int = 0
    epoch: int = 5  # few epochs and unigrams: graded scores, see build_quality_classifier
    lr: float = 0.1
    word_ngrams: int = 1


@asset(deps=[web_documents], group_name="filter", kinds={"python", "fasttext"},
       description="fastText 'wiki' vs 'cc' classifier: reference documents against crawled ones.")
def quality_classifier(
    context: AssetExecutionContext, config: QualityClassifierConfig, storage: Storage
) -> MaterializeResult:
    reference = Path(config.reference_path) if config.reference_path else (
        storage.crawl_path / REFERENCE_NAME)
    sources = partition_inputs(context, storage, "web_documents")
    documents = [source / "documents.parquet" for source in sources.dirs.values()]
    final = storage.artifact_dir("quality_classifier")
    stats = run_stage(
        final, "quality_classifier",
        lambda out: build_quality_classifier(
            reference, documents, out, negative_sample=config.negative_sample, seed=config.seed,
            held_out_fraction=config.held_out_fraction, epoch=config.epoch, lr=config.lr,
            wordNgrams=config.word_ngrams),
        config=config.model_dump(), count_keys=("positives", "negatives", "held_out_documents"),
        inputs={p: upstream(s) for p, s in sources.dirs.items()},
    )
    return MaterializeResult(metadata={
        **partitions_metadata(sources),
        **numbers(stats, ["positives", "negatives", "train_documents", "held_out_documents",
                          "held_out_precision", "held_out_recall", "held_out_accuracy",
                          "train_seconds"]),
        "path": MetadataValue.path(str(final / "quality.bin")),
    })


class FilteredDocumentsConfig(Config):
    """Mirrors lmlib.web.FilterConfig; defaults are the library's."""

    languages: list[str] = ["en"]
    language_threshold: float = 0.65
    gopher_repetition: bool = False
    harmful_content: bool = True
    nsfw_model_path: str | None = None
    toxic_model_path: str | None = None
    download_harmful_models: bool = False
    quality_threshold: float = FilterConfig.quality_threshold
    workers: int = 2


@asset(partitions_def=crawl_partitions, deps=[web_documents, quality_classifier],
       group_name="filter", kinds={"python", "parquet"},
       description="Documents that pass language, Gopher, harmful-content and quality filters, "
                   "PII masked; with a decisions table explaining every removal.")
def filtered_documents(
    context: AssetExecutionContext, config: FilteredDocumentsConfig, storage: Storage
) -> MaterializeResult:
    source = storage.artifact_dir("web_documents", context.partition_key)
    model = storage.artifact_dir("quality_classifier") / "quality.bin"
    filter_config = FilterConfig(**{**config.model_dump(), "languages": tuple(config.languages)})
    final = storage.artifact_dir("filtered_documents", context.partition_key)

    def produce(out: Path) -> dict:
        stats = filter_documents(source / "documents.parquet", out, filter_config, model)
        bar_chart([row["filter"] for row in stats["funnel"]],
                  [row["remaining"] for row in stats["funnel"]], out / "funnel.png",
                  f"documents remaining after each filter (of {stats['documents_in']})")
        return stats

    stats = run_stage(final, "filtered_documents", produce, config=filter_config,
                      count_keys=("documents_in", "kept", "removed"),
                      inputs={"web_documents": upstream(source),
                              "quality_classifier": upstream(model.parent)})
    examples = "\n\n".join(f"**{name}**\n\n{markdown_table(rows)}"
                           for name, rows in stats["removed_examples"].items() if rows)
    harmful = stats["harmful_step"]
    return MaterializeResult(metadata={
        **numbers(stats, ["documents_in", "kept", "kept_fraction", "documents_per_second"]),
        **{f"removed_by_{name}": MetadataValue.int(n) for name, n in stats["removed"].items()},
        "funnel": MetadataValue.md(markdown_table(
            [{"filter": "input", "removed": 0, "remaining": stats["documents_in"]},
             *stats["funnel"]])),
        "funnel_plot": image_markdown(final / "funnel.png", "funnel"),
        "language_distribution": MetadataValue.md(counts_table(
            dict(list(stats["language_distribution"].items())[:15]), "language")),
        "removed_examples": MetadataValue.md(examples or "_(nothing removed)_"),
        "pii_replacements": MetadataValue.md(counts_table(stats["pii_replacements"], "kind")),
        "harmful_content_step": MetadataValue.md(markdown_table(
            [{"model": kind, **harmful[kind]} for kind in ("nsfw", "toxic")])),
        "harmful_content_status": MetadataValue.text(harmful["status"]),
    })
