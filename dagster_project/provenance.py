"""Provenance: from any artifact back to the crawl files it came from.

Every manifest records its inputs: `web_documents` the crawl file's name and sha256, every other
stage the sha256 of each upstream manifest (`{partition: hash}` for a global stage). The walk
resolves each hash to the artifact directory whose manifest has it, so it follows exactly the
artifacts that were read; an upstream re-materialized since then no longer resolves and is
reported as superseded.

    python -m dagster_project.provenance base_model            # an asset key
    python -m dagster_project.provenance .lmpipe/artifacts/web_documents/sample-00000.warc.gz
    python -m dagster_project.provenance --document sample-00001.warc.gz:0000042
    python -m dagster_project.provenance --token train:123456   # a position in the token shards
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from lmlib.artifacts import MANIFEST_NAME, read_manifest, sha256_file
from lmlib.formats import DOCUMENTS_FILE


@dataclass
class Step:
    """One artifact on the walk."""

    asset: str
    partition: str | None
    directory: Path
    manifest_sha256: str
    code_version: str
    config_sha256: str
    config: object


@dataclass
class CrawlFile:
    name: str
    sha256: str


@dataclass
class Provenance:
    steps: list[Step] = field(default_factory=list)  # the artifact first, then upstream
    crawl_files: list[CrawlFile] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)  # hashes no artifact has any more

    def rows(self) -> list[dict]:
        return [{"asset": s.asset, "partition": s.partition or "", "code version": s.code_version,
                 "config": s.config_sha256[:12], "manifest": s.manifest_sha256[:12]}
                for s in self.steps]

    def crawl_rows(self) -> list[dict]:
        return [{"crawl file": c.name, "sha256": c.sha256} for c in self.crawl_files]


def manifest_index(artifacts: Path) -> dict[str, Path]:
    """{sha256 of manifest.json: artifact directory} for every complete artifact."""
    return {sha256_file(path): path.parent for path in sorted(artifacts.rglob(MANIFEST_NAME))
            if not any(part.startswith(".") for part in path.relative_to(artifacts).parts)}


def _step(directory: Path, artifacts: Path, manifest: dict) -> Step:
    asset = manifest["stage"]
    relative = directory.relative_to(artifacts).as_posix()
    partition = relative[len(asset) + 1:] or None
    config = json.dumps(manifest.get("config"), sort_keys=True)
    return Step(asset=asset, partition=partition, directory=directory,
                manifest_sha256=sha256_file(directory / MANIFEST_NAME),
                code_version=manifest.get("asset_code_version") or manifest.get("code_version", ""),
                config_sha256=hashlib.sha256(config.encode()).hexdigest(),
                config=manifest.get("config"))


def _candidates(name: str, current: Path, artifacts: Path) -> list[Path]:
    """Where an input named `name` usually is: the asset `name` (unpartitioned, or the same
    partition as `current`), or partition `name` of some asset (a global stage's inputs)."""
    partition = current.relative_to(artifacts).parts[1:]
    places = [artifacts / name, artifacts.joinpath(name, *partition)]
    assets = [asset for asset in artifacts.iterdir() if asset.is_dir()]
    # a crawl partition ("a/b.warc.gz" kept as one level), or a multi-partition's levels
    places += [asset / name.replace("/", "__") for asset in assets]
    places += [asset / name for asset in assets if "=" in name]
    return [place for place in places if (place / MANIFEST_NAME).is_file()]


class _Resolver:
    """Manifest hash -> artifact directory: the candidate places first (a few files read per
    input), every manifest under `artifacts` only when they miss (an input re-materialized
    since), so a materialization's provenance does not hash the whole store."""

    def __init__(self, artifacts: Path, index: dict[str, Path] | None):
        self.artifacts, self.index = artifacts, index

    def __call__(self, name: str, digest: str, current: Path) -> Path | None:
        for place in _candidates(name, current, self.artifacts):
            if sha256_file(place / MANIFEST_NAME) == digest:
                return place
        if self.index is None:
            self.index = manifest_index(self.artifacts)
        return self.index.get(digest)


def walk(directory: Path, artifacts: Path, index: dict[str, Path] | None = None) -> Provenance:
    """The artifacts `directory` was built from, breadth first, each once, and its crawl files."""
    artifacts = Path(artifacts).resolve()
    resolve = _Resolver(artifacts, index)
    provenance, seen, crawl = Provenance(), set(), {}
    pending = [Path(directory).resolve()]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        manifest = read_manifest(current)
        provenance.steps.append(_step(current, artifacts, manifest))
        inputs = manifest.get("inputs", {})
        if "crawl_file" in inputs:  # web_documents: the leaf
            crawl[inputs["crawl_file"]] = inputs["sha256"]
            continue
        for name, value in inputs.items():
            if not isinstance(value, str):
                continue
            found = resolve(name, value, current)
            if found is not None:
                pending.append(found)
            else:
                provenance.superseded.append(value)
    provenance.crawl_files = [CrawlFile(name, sha) for name, sha in sorted(crawl.items())]
    return provenance


def document_source(artifacts: Path, doc_id: str) -> dict:
    """Crawl file, WARC record ID and URL of one document ("<crawl file>:<ordinal>", the doc_id
    of every documents table downstream of web_documents)."""
    import polars as pl

    crawl_file = doc_id.rpartition(":")[0]
    directory = Path(artifacts) / "web_documents" / crawl_file
    manifest = read_manifest(directory)
    rows = (pl.scan_parquet(directory / DOCUMENTS_FILE).filter(pl.col("doc_id") == doc_id)
            .select("doc_id", "record_id", "url").collect().to_dicts())
    if not rows:
        raise KeyError(f"no document {doc_id!r} in {directory / DOCUMENTS_FILE}; a doc_id is "
                       "'<crawl file>:<ordinal>', as in the documents tables")
    return {**rows[0], "crawl_file": crawl_file, "sha256": manifest["inputs"]["sha256"]}


def token_source(artifacts: Path, token: str, shards: Path | None = None) -> dict:
    """The document holding one token of the token shards ("<split>:<position>", counted across
    the split's shards as a training loader reads them), traced to its crawl record: the shard,
    the document's doc_id in the corpus the shards were encoded from, and `document_source`."""
    from lmlib.tokenizer import corpus_doc_id, document_at

    split, _, position = token.partition(":")
    if not position.isdigit():
        raise ValueError(f"token {token!r}: expected '<split>:<position>', e.g. 'train:123456'")
    artifacts = Path(artifacts).resolve()
    shards = Path(shards) if shards else artifacts / "token_shards"
    located = document_at(shards, split, int(position))
    digest = read_manifest(shards)["inputs"]["pretraining_corpus"]
    corpus = _Resolver(artifacts, None)("pretraining_corpus", digest, shards)
    if corpus is None:
        raise LookupError(f"the pretraining_corpus {shards} was encoded from (manifest "
                          f"{digest[:12]}) was re-materialized since; rebuild token_shards")
    doc_id = corpus_doc_id(corpus, split, located.document)
    return {"split": split, "position": located.position, "shard": located.shard,
            "document_in_split": located.document,
            "token_in_document": located.token_in_document,
            **document_source(artifacts, doc_id)}


def _resolve(target: str, artifacts: Path) -> Path:
    path = Path(target)
    if (path / MANIFEST_NAME).exists():
        return path
    if (artifacts / target / MANIFEST_NAME).exists():
        return artifacts / target
    raise SystemExit(f"{target!r} is neither an artifact directory nor an asset key (with "
                     f"partition, e.g. web_documents/sample-00000.warc.gz) under {artifacts}")


def main(argv: list[str] | None = None) -> None:
    from dagster_project.home import lmpipe_home
    from dagster_project.metadata import markdown_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="artifact directory or asset key[/partition]")
    parser.add_argument("--document", help="a doc_id: name its crawl file and WARC record ID")
    parser.add_argument("--token", help="<split>:<position> in the token shards: name the "
                                            "document there, its crawl file and WARC record ID")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    artifacts = lmpipe_home() / "artifacts"
    if args.document:
        print(json.dumps(document_source(artifacts, args.document), indent=2))
        return
    if args.token:
        print(json.dumps(token_source(artifacts, args.token), indent=2))
        return
    if not args.target:
        parser.error("give an artifact directory, an asset key, --document or --token")
    provenance = walk(_resolve(args.target, artifacts), artifacts)
    if args.json:
        print(json.dumps({"steps": provenance.rows(), "crawl_files": provenance.crawl_rows(),
                          "superseded": provenance.superseded}, indent=2))
        return
    print(markdown_table(provenance.rows()), end="\n\n")
    print(markdown_table(provenance.crawl_rows()))
    if provenance.superseded:
        print(f"\n{len(provenance.superseded)} input(s) re-materialized since: "
              + ", ".join(h[:12] for h in provenance.superseded))


if __name__ == "__main__":
    main()
