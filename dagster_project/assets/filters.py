"""filter group: a quality classifier, then per-file language, Gopher, harmful, quality and PII."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from dagster_project.assets.web import web_documents
from dagster_project.automation import build_once_condition, per_file_condition
from dagster_project.metadata import partitions_metadata, result_metadata
from dagster_project.partitions import crawl_partitions
from dagster_project.resources import Storage
from dagster_project.stage import (
    batched_backfill,
    config_class,
    for_each_partition,
    materialization,
    partition_inputs,
    publish,
    upstream,
)
from lmlib.formats import DOCUMENTS_FILE, QUALITY_MODEL_FILE, QUALITY_REFERENCE_FILE
from lmlib.web.filter_chain import FilterConfig, filter_documents
from lmlib.web.quality import QualityClassifierConfig, build_quality_classifier

QualityClassifierSettings = config_class(QualityClassifierConfig, "QualityClassifierConfig")
FilteredDocumentsConfig = config_class(FilterConfig, "FilteredDocumentsConfig")


@asset(deps=[web_documents], automation_condition=build_once_condition(), group_name="filter", kinds={"python", "fasttext"},
       description="fastText 'wiki' vs 'cc' classifier: reference documents against crawled ones.")
def quality_classifier(
    context: AssetExecutionContext, config: QualityClassifierSettings, storage: Storage
) -> MaterializeResult:
    quality_config = config.build()
    sources = partition_inputs(context, storage, web_documents)
    documents = sources.files(DOCUMENTS_FILE)
    result = publish(
        context, storage,
        lambda out: build_quality_classifier(
            documents, out, quality_config,
            default_reference=storage.crawl_path / QUALITY_REFERENCE_FILE),
        config=quality_config,
        inputs=sources.fingerprints(),
    )
    return MaterializeResult(**materialization(context, storage, {
        **partitions_metadata(sources), **result_metadata(result)}))


@asset(partitions_def=crawl_partitions, backfill_policy=batched_backfill(),
       deps=[web_documents, quality_classifier],
       automation_condition=per_file_condition(ignore_updates_of=("quality_classifier",)),
       group_name="filter", kinds={"python", "parquet"},
       description="Documents that pass language, Gopher, harmful-content and quality filters, "
                   "PII masked; with a decisions table explaining every removal.")
def filtered_documents(
    context: AssetExecutionContext, config: FilteredDocumentsConfig, storage: Storage
) -> MaterializeResult:
    model = storage.artifact_dir(quality_classifier) / QUALITY_MODEL_FILE
    filter_config = config.build()

    def filter_one(partition: str) -> dict:
        source = storage.artifact_dir(web_documents, partition)
        result = publish(
            context, storage,
            lambda out: filter_documents(source / DOCUMENTS_FILE, out, filter_config, model),
            config=filter_config,
            inputs={"web_documents": upstream(source),
                    "quality_classifier": upstream(model.parent)},
            partition=partition,
        )
        return materialization(context, storage, {
            **result_metadata(result),
            # one number per filter, so the UI plots each across materializations
            **{f"removed_by_{name}": MetadataValue.int(n) for name, n in result.removed.items()},
        }, partition=partition)

    return for_each_partition(context, filter_one)
