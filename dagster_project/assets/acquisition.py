"""web group: Common Crawl acquisition. Downloads files chosen from a crawl listing into the
crawl directory, where the crawl sensor registers each finished file as a partition (a file
being downloaded is a hidden `.part` file, which the sensor ignores). Never automatic: a person
chooses when to spend the bandwidth."""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from dagster_project.home import EMBEDDED_CRAWL
from dagster_project.metadata import result_metadata
from dagster_project.policies import MANUAL_TAG
from dagster_project.resources import Storage
from dagster_project.stage import config_class
from lmlib.web.acquisition import AcquisitionConfig, acquire_crawl_files, read_crawl_listing

DownloadedCrawlFilesConfig = config_class(AcquisitionConfig, "DownloadedCrawlFilesConfig")


@asset(
    group_name="web",
    kinds={"python", "warc"},
    tags={MANUAL_TAG: "true"},  # fetching from the network is never part of `make demo`
    description="Crawl files chosen (seeded sample or list) from a crawl's warc/wet.paths.gz and "
                "downloaded, resumably and verified, into the crawl directory.",
)
def downloaded_crawl_files(
    context: AssetExecutionContext, config: DownloadedCrawlFilesConfig, storage: Storage
) -> MaterializeResult:
    crawl_dir = storage.crawl_path
    if crawl_dir.resolve() == EMBEDDED_CRAWL.resolve():
        raise Failure(f"the crawl directory is the embedded sample ({EMBEDDED_CRAWL}), which is "
                      "committed: set LMPIPE_CRAWL_DIR (or Storage.crawl_dir) to a directory "
                      "for downloaded files")
    acquisition = config.build()
    listing = read_crawl_listing(acquisition.listing_source(), sample=acquisition.sample,
                                 files=acquisition.files, seed=acquisition.seed,
                                 timeout_seconds=acquisition.timeout_seconds)
    context.log.info(f"{len(listing)} file(s) chosen from {acquisition.listing_source()}")
    result = acquire_crawl_files(listing, acquisition.base_url, crawl_dir, acquisition,
                                 log=context.log.info)
    metadata = {**result_metadata(result), "crawl_dir": MetadataValue.path(str(crawl_dir))}
    if result.files_failed:
        raise Failure(f"{result.files_failed} of {result.files_chosen} crawl file(s) could not "
                      "be downloaded; see the files table (partial files are kept as .part and "
                      "resumed by the next run)", metadata=metadata)
    return MaterializeResult(metadata=metadata)
