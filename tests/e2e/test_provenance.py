"""Provenance from the base model back to the crawl files, data versions and staleness, on the
graph materialized once on the embedded crawl (the session fixture `pipeline_home`)."""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    load_assets_from_modules,
)
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    StaleStatus,
)
from dagster._time import get_current_datetime

import lmlib
from dagster_project.assets import dedup, filters, pretrain, tokens, web
from dagster_project.definitions import defs
from dagster_project.demo import run_everything
from dagster_project.home import EMBEDDED_CRAWL
from dagster_project.partitions import crawl_partitions
from dagster_project.provenance import document_source, main, walk
from dagster_project.versions import with_code_versions
from lmlib.artifacts import sha256_file
from lmlib.formats import DOCUMENTS_FILE
from lmlib.tokenizer import Tokenizer
from tests.e2e.test_pipeline import PARTITIONS, _only_web

EMBEDDED = {path.name: sha256_file(path) for path in sorted(EMBEDDED_CRAWL.glob("*.warc.gz"))}


def test_walk_from_base_model_reaches_exactly_the_three_embedded_crawl_files(pipeline_home):
    home, _ = pipeline_home
    provenance = walk(home / "artifacts" / "base_model", home / "artifacts")
    assert {f.name: f.sha256 for f in provenance.crawl_files} == EMBEDDED
    assert len(EMBEDDED) == 3
    steps = {(s.asset, s.partition) for s in provenance.steps}
    per_file = {"web_documents", "filtered_documents", "minhash_signatures",
                "deduplicated_documents"}
    assert steps == {*((a, p) for a in per_file for p in PARTITIONS),
                     *((a, None) for a in ("quality_classifier", "duplicate_clusters",
                                           "pretraining_corpus", "bpe_tokenizer", "token_shards",
                                           "base_model"))}
    assert provenance.superseded == []
    assert all(len(s.code_version) == 16 for s in provenance.steps)  # the derived versions


def test_provenance_command_prints_the_chain(pipeline_home, capsys):
    main(["base_model", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"][0]["asset"] == "base_model"
    assert {row["crawl file"]: row["sha256"] for row in printed["crawl_files"]} == EMBEDDED


def test_a_corpus_document_names_its_crawl_file_and_warc_record(pipeline_home):
    home, _ = pipeline_home
    documents = home / "artifacts" / "deduplicated_documents" / PARTITIONS[1] / DOCUMENTS_FILE
    doc_id = pl.read_parquet(documents, columns=["doc_id"])["doc_id"][3]
    source = document_source(home / "artifacts", doc_id)
    assert source["crawl_file"] == PARTITIONS[1]
    assert source["sha256"] == EMBEDDED[PARTITIONS[1]]
    assert source["record_id"].startswith("<urn:uuid:")


def test_a_token_of_the_shards_names_its_document_and_crawl_record(pipeline_home, capsys):
    home, _ = pipeline_home
    artifacts = home / "artifacts"
    index = json.loads((artifacts / "token_shards" / "index.json").read_text())
    position = index["splits"]["train"]["tokens"] * 2 // 3
    main(["--token", f"train:{position}"])
    source = json.loads(capsys.readouterr().out)
    assert source["record_id"].startswith("<urn:uuid:")
    assert source["crawl_file"] in PARTITIONS
    # the document's tokens, from its first to its end-of-text, decode to the corpus text of
    # the doc_id named
    tokens = np.concatenate([np.fromfile(artifacts / "token_shards" / shard["file"],
                                         dtype=index["dtype"])
                             for shard in index["splits"]["train"]["shards"]])
    eot = index["eot_token_id"]
    start = position - source["token_in_document"]
    assert start == 0 or tokens[start - 1] == eot
    end = start + int(np.argmax(tokens[start:] == eot))
    assert start <= position <= end
    text = Tokenizer.from_directory(artifacts / "bpe_tokenizer").decode(tokens[start:end].tolist())
    documents = pl.read_parquet(
        artifacts / "deduplicated_documents" / source["crawl_file"] / DOCUMENTS_FILE)
    assert documents.filter(pl.col("doc_id") == source["doc_id"])["text"][0] == text


def test_every_materialization_has_provenance_and_a_content_data_version(pipeline_home):
    _, dagster_home = pipeline_home
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        record = instance.fetch_materializations(AssetKey("base_model"), limit=1).records[0]
    materialization = record.asset_materialization
    assert materialization.metadata["crawl_files"].value == 3
    for name in EMBEDDED:
        assert name in materialization.metadata["provenance"].value
    assert len(materialization.tags[DATA_VERSION_TAG]) == 64


def _latest_data_versions(instance, asset, partition):
    records = instance.fetch_materializations(AssetKey(asset), limit=100).records
    return [r.asset_materialization.tags[DATA_VERSION_TAG] for r in records
            if r.partition_key == partition]


def _stale(instance, definitions=defs, partitions=PARTITIONS) -> set[tuple[str, str | None]]:
    """Every asset partition Dagster reports stale (what the UI shows as unsynced)."""
    graph = definitions.resolve_asset_graph()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(),
                                                           last_event_id=None),
                          instance=instance, asset_graph=graph)
    resolver = CachingStaleStatusResolver(instance, graph, view)

    def keys(partitions_def):
        if partitions_def is None:
            return [None]
        return partitions if partitions_def == crawl_partitions else \
            partitions_def.get_partition_keys()
    return {(key.to_user_string(), partition)
            for key in graph.materializable_asset_keys
            for partition in keys(graph.get(key).partitions_def)
            if resolver.get_status(key, partition) == StaleStatus.STALE}


def _with_changed_source(module_path: str) -> Definitions:
    """The same definitions, with code versions derived as if `module_path` had changed."""
    target = Path(lmlib.__file__).parent.parent / module_path

    def read(path: Path) -> str:
        return path.read_text() + ("\n# changed\n" if path.resolve() == target.resolve() else "")
    return Definitions(assets=with_code_versions(
        load_assets_from_modules([web, filters, dedup, tokens, pretrain]),
        read=read), resources=defs.resources)


def test_identical_rerun_keeps_the_data_version_and_changes_stale_exactly_their_consumers(
        pipeline_home, tmp_path):
    _, dagster_home = pipeline_home
    copy = tmp_path / "dagster"  # the shared instance stays as the other tests expect it
    shutil.copytree(dagster_home, copy)
    with DagsterInstance.from_config(str(copy)) as instance:
        before = _stale(instance)
        outcome = run_everything(_only_web(defs), instance, log=lambda m: None,
                                 partitions=[PARTITIONS[0]])
        assert outcome.succeeded, outcome.summary()
        first, second = _latest_data_versions(instance, "web_documents", PARTITIONS[0])[:2]
        assert first == second  # byte-identical rerun: same data version
        assert _stale(instance) == before  # so nothing downstream is marked changed

        # filtered_documents' code changed: exactly its partitions are stale. Data versions
        # are content hashes (user provided), so Dagster does not guess that everything below
        # changes: each consumer goes stale when its input's rerun gives different bytes.
        code_changed = _stale(instance, _with_changed_source("lmlib/web/gopher.py"))
        assert code_changed - before == {("filtered_documents", p) for p in PARTITIONS}

        # one file's extraction gives different bytes: exactly its consumers are stale
        instance.report_runless_asset_event(AssetMaterialization(
            "web_documents", partition=PARTITIONS[1], tags={DATA_VERSION_TAG: "0" * 64}))
        data_changed = _stale(instance)
    assert data_changed - before == {("filtered_documents", PARTITIONS[1]),
                                     ("quality_classifier", None)}
