"""Derived code versions and content-hash data versions (dagster_project/versions.py)."""

import json
from pathlib import Path

import pytest
from dagster import AssetsDefinition, load_assets_from_modules

import lmlib
from dagster_project.assets import dedup, filters, pretrain, tokens, web
from dagster_project.definitions import defs
from dagster_project.versions import content_hash, function_body, with_code_versions
from lmlib.artifacts import atomic_directory, read_manifest, write_manifest

ASSET_MODULES = [web, filters, dedup, tokens, pretrain]


def _versions(read=Path.read_text) -> dict[str, str]:
    assets = with_code_versions(load_assets_from_modules(ASSET_MODULES), read=read)
    return {key.to_user_string(): version for asset in assets
            if isinstance(asset, AssetsDefinition)  # not the crawl_files source
            for key, version in asset.code_versions_by_key.items()}


def _changed(module_path: str):
    """A `read` that sees one more line in the lmlib file `module_path`."""
    target = Path(lmlib.__file__).parent.parent / module_path

    def read(path: Path) -> str:
        text = path.read_text()
        return text + "\n# changed\n" if path.resolve() == target.resolve() else text
    return read


def test_every_asset_of_the_definitions_has_a_derived_code_version():
    graph = defs.resolve_asset_graph()
    versions = {key.to_user_string(): graph.get(key).code_version
                for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    assert len(versions) == 27  # every asset but the crawl_files source
    assert all(version and len(version) == 16 for version in versions.values()), versions
    # no two stages share one, but the evaluations, one function made per checkpoint, are one
    evaluations = {versions.pop(name) for name in list(versions) if name.endswith("_eval")}
    assert len(evaluations) == 1 and evaluations.isdisjoint(versions.values())
    assert len(set(versions.values())) == len(versions)


@pytest.mark.parametrize(("module_path", "assets"), [
    ("lmlib/web/gopher.py", {"filtered_documents"}),
    ("lmlib/dedup/removal.py", {"deduplicated_documents"}),
    ("lmlib/tokenizer/shards.py", {"token_shards"}),
    ("lmlib/train/trainer.py", {"base_model"}),
    # the documents schema lives in extraction.py, which the filter chain imports too
    ("lmlib/web/extraction.py", {"web_documents", "filtered_documents"}),
])
def test_changing_a_stage_source_changes_exactly_the_code_versions_that_use_it(module_path,
                                                                                assets):
    before, after = _versions(), _versions(read=_changed(module_path))
    assert {name for name in before if before[name] != after[name]} == assets


def test_changing_shared_code_or_the_library_version_changes_every_code_version(monkeypatch):
    before = _versions()
    after = _versions(read=_changed("lmlib/artifacts.py"))
    assert all(before[name] != after[name] for name in before)
    monkeypatch.setattr(lmlib, "__version__", "9.9.9")
    bumped = _versions()
    assert all(before[name] != bumped[name] for name in before)


def test_the_decorator_does_not_count_towards_the_code_version():
    # scheduling settings (automation conditions, backfill policies) live in the decorator
    body = function_body(web.web_documents.op.compute_fn.decorated_fn)
    assert body.startswith("def web_documents(") and "@" not in body.splitlines()[0]


def _artifact(directory: Path, text: str, commit: str) -> dict:
    with atomic_directory(directory) as out:
        (out / "documents.txt").write_text(text)
        write_manifest(out, stage="example", inputs={"upstream": commit})
    return read_manifest(directory)


def test_data_version_is_the_content_hash_of_the_files_not_the_manifest(tmp_path):
    first = _artifact(tmp_path / "a", "same bytes", commit="abc")
    again = _artifact(tmp_path / "b", "same bytes", commit="def")  # another manifest, same data
    other = _artifact(tmp_path / "c", "other bytes", commit="abc")
    assert json.dumps(first) != json.dumps(again)
    assert content_hash(first) == content_hash(again)
    assert content_hash(first) != content_hash(other)
