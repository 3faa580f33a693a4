"""Resources: Storage knows where inputs and artifacts live; assets ask it for paths."""

from pathlib import Path

from dagster import ConfigurableResource

from dagster_project.home import crawl_dir, lmpipe_home
from dagster_project.stage import config_class
from lmlib.dedup import MinHashConfig


class Storage(ConfigurableResource):
    """Artifacts under `home` (one directory per asset and partition); crawl files in `crawl_dir`.

    Unset fields follow LMPIPE_HOME and LMPIPE_CRAWL_DIR at run time.
    """

    home: str | None = None
    crawl_dir: str | None = None

    @property
    def home_path(self) -> Path:
        return Path(self.home) if self.home else lmpipe_home()

    @property
    def crawl_path(self) -> Path:
        return Path(self.crawl_dir) if self.crawl_dir else crawl_dir()

    def artifact_dir(self, asset, partition=None) -> Path:
        """Where `asset` (a definition, spec, AssetKey or name) keeps its artifact for
        `partition` (None when unpartitioned; a multi-partition key gets one level a dimension)."""
        from dagster_project.stage import asset_name, partition_path

        base = self.home_path / "artifacts" / asset_name(asset)
        return base / partition_path(partition) if partition is not None else base

    def failure_dir(self, asset, partition) -> Path:
        """Why `asset`'s blocking checks failed for `partition`: one JSON record per failed check."""
        from dagster_project.stage import asset_name, partition_path

        return self.home_path / "failures" / asset_name(asset) / partition_path(partition)

    def crawl_file(self, partition: str) -> Path:
        path = self.crawl_path / partition
        if not path.is_file():
            raise FileNotFoundError(
                f"crawl file for partition {partition!r} not found at {path}; the partition was "
                "registered from another crawl directory, or the file was removed"
            )
        return path


# MinHash-LSH settings shared by the three dedup assets, so signatures, clusters and the
# deduplicated documents always agree; the fields, defaults and validation are MinHashConfig's.
DedupSettings = config_class(MinHashConfig, "DedupSettings", base=ConfigurableResource)
