"""The one Definitions object of the code location."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from dagster_project import checks
from dagster_project.assets import (
    acquisition,
    dedup,
    evaluation,
    export,
    filters,
    posttrain,
    pretrain,
    scaling,
    tokens,
    web,
)
from dagster_project.automation import (
    automation_sensor,
    crawl_file_sensor,
    enough_new_files_sensor,
    evaluate_checkpoints,
    nightly_evaluation_schedule,
    refresh_corpus,
    refresh_corpus_schedule,
)
from dagster_project.resources import DedupSettings, Storage
from dagster_project.versions import with_code_versions

defs = Definitions(
    # derived code versions (dagster_project/versions.py): the UI shows what a code change unsyncs
    # (the crawl_files observable source asset comes with the web module)
    assets=with_code_versions(
        load_assets_from_modules([acquisition, web, filters, dedup, tokens, pretrain,
                                  export, scaling, posttrain, evaluation])),
    asset_checks=load_asset_checks_from_modules([checks, scaling, evaluation]),
    jobs=[refresh_corpus, evaluate_checkpoints],
    schedules=[refresh_corpus_schedule, nightly_evaluation_schedule],
    sensors=[crawl_file_sensor, automation_sensor, enough_new_files_sensor],
    resources={"storage": Storage(), "dedup": DedupSettings(),
               "align_task": posttrain.AlignTask()},
)
