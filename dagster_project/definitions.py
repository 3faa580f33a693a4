"""The one Definitions object of the code location."""

from dagster import Definitions

from dagster_project.assets.web import crawl_files, web_documents
from dagster_project.automation import crawl_file_sensor
from dagster_project.checks import web_documents_nonempty_with_schema
from dagster_project.resources import Storage

defs = Definitions(
    assets=[crawl_files, web_documents],
    asset_checks=[web_documents_nonempty_with_schema],
    sensors=[crawl_file_sensor],
    resources={"storage": Storage()},
)
