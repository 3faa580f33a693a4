"""Sensors: new crawl files in the crawl directory become partitions and are extracted."""



from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from dagster_project.assets.web import web_documents
from dagster_project.partitions import crawl_partitions, discover_crawl_files
from dagster_project.resources import Storage


@sensor(
    asset_selection=[web_documents],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Registers each new .warc/.wet(.gz) file in the crawl directory as a partition.",
)
def crawl_file_sensor(context: SensorEvaluationContext, storage: Storage) -> SensorResult:
    known = set(context.instance.get_dynamic_partitions(crawl_partitions.name))
    new = [key for key in discover_crawl_files(storage.crawl_path) if key not in known]
    return SensorResult(
        dynamic_partitions_requests=[crawl_partitions.build_add_request(new)] if new else [],
        run_requests=[RunRequest(partition_key=key, run_key=f"extract:{key}") for key in new],
    )
