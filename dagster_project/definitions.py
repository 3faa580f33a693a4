"""The one Definitions object of the code location."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from dagster_project import checks
from dagster_project.assets import dedup, filters, pretrain, tokens, web
from dagster_project.automation import crawl_file_sensor
from dagster_project.resources import DedupSettings, Storage

defs = Definitions(
    assets=[web.crawl_files, *load_assets_from_modules([web, filters, dedup, tokens, pretrain])],
    asset_checks=load_asset_checks_from_modules([checks]),
    sensors=[crawl_file_sensor],
    resources={"storage": Storage(), "dedup": DedupSettings()},
)
