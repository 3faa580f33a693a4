"""A changed crawl file is observed (its sha256 is the `crawl_files` data version) and Dagster
marks exactly that file's chain stale, not the other file's."""

import shutil

from dagster import AssetKey, DagsterInstance, build_sensor_context
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.definitions.observe import observe

from dagster_project.assets.web import crawl_files
from dagster_project.automation import crawl_file_sensor
from dagster_project.definitions import defs
from dagster_project.demo import run_everything
from dagster_project.home import EMBEDDED_CRAWL, ensure_dagster_home
from dagster_project.resources import Storage
from lmlib.artifacts import sha256_file
from tests.conftest import lmpipe_environment
from tests.e2e.test_pipeline import _only_web
from tests.e2e.test_provenance import _stale

FILES = ["sample-00000.warc.gz", "sample-00001.warc.gz"]


def _observed(instance, partition):
    records = instance.fetch_observations(AssetKey("crawl_files"), limit=100).records
    return [r.asset_observation.tags[DATA_VERSION_TAG] for r in records
            if r.partition_key == partition]


def test_a_changed_crawl_file_makes_exactly_its_chain_stale(tmp_path, monkeypatch):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for name in FILES:
        shutil.copy(EMBEDDED_CRAWL / name, crawl / name)
    monkeypatch.setenv("LMPIPE_CRAWL_DIR", str(crawl))
    with lmpipe_environment(tmp_path / "lmpipe"):
        with DagsterInstance.from_config(str(ensure_dagster_home())) as instance:
            outcome = run_everything(_only_web(defs), instance, log=lambda m: None)
            assert outcome.succeeded and not outcome.failures, outcome.summary()
            assert {p: _observed(instance, p) for p in FILES} == {
                p: [sha256_file(crawl / p)] for p in FILES}  # observed before materializing
            assert _stale(instance, partitions=FILES) == set()

            def tick():
                context = build_sensor_context(instance=instance,
                                               resources={"storage": Storage()})
                result = crawl_file_sensor(context)
                for event in result.asset_events:
                    instance.report_runless_asset_event(event)
                return result

            assert tick().asset_events == []  # nothing changed: nothing re-hashed or reported

            changed = crawl / FILES[1]
            changed.write_bytes(changed.read_bytes() + b"\n")  # rewritten in place
            assert _stale(instance, partitions=FILES) == set()  # Dagster has not seen it yet
            result = tick()
            assert [(e.partition, e.tags[DATA_VERSION_TAG]) for e in result.asset_events] == [
                (FILES[1], sha256_file(changed))]
            assert _stale(instance, partitions=FILES) == {("web_documents", FILES[1])}

            # "Observe" in the UI runs the source asset's own observation: the same versions
            assert observe([crawl_files], instance=instance, resources=defs.resources).success
            assert {p: _observed(instance, p)[0] for p in FILES} == {
                p: sha256_file(crawl / p) for p in FILES}
            assert _stale(instance, partitions=FILES) == {("web_documents", FILES[1])}
