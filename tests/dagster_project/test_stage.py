"""The seam between lmlib stages and assets: configs from dataclasses, publishing at the path
that follows from the asset key and partition, and typed results rendered as metadata."""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    MaterializeResult,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    asset,
    materialize,
)

from dagster_project.metadata import result_metadata
from dagster_project.resources import Storage
from dagster_project.stage import config_class, partition_path, publish
from lmlib.plots import bar_chart
from lmlib.stage import StageResult, check_positive


@dataclass
class CountConfig:
    """Count words; the one source of these fields."""

    words: tuple[str, ...] = ("a", "b")
    repeat: int = 2
    label: str | None = None

    def __post_init__(self):
        check_positive(self, "repeat")


@dataclass
class CountResult(StageResult):
    MANIFEST_COUNTS = ("total",)

    total: int
    rate: float
    by_word: dict[str, int] = field(metadata={"key": "word"})
    rows: list[dict]
    plot: Path
    hidden: str = field(default="x", metadata={"show": False})


def count_words(output_dir: Path, config: CountConfig) -> CountResult:
    (output_dir / "words.txt").write_text(" ".join(config.words * config.repeat))
    plot = bar_chart(list(config.words), [config.repeat] * len(config.words),
                     output_dir / "plot.png", "words")
    return CountResult(total=len(config.words) * config.repeat, rate=0.123456789,
                       by_word={w: config.repeat for w in config.words},
                       rows=[{"word": w} for w in config.words], plot=plot)


CountSettings = config_class(CountConfig, "CountSettings")


def test_config_class_has_the_dataclass_fields_and_builds_it():
    settings = CountSettings(words=["x", "y", "z"], repeat=3)
    assert set(CountSettings.model_fields) == {"words", "repeat", "label"}
    assert CountSettings().build() == CountConfig()
    assert settings.build() == CountConfig(words=("x", "y", "z"), repeat=3)
    assert CountSettings.__doc__ == CountConfig.__doc__
    with pytest.raises(ValueError, match="CountConfig.repeat must be > 0"):
        CountSettings(repeat=0).build()


def test_result_metadata_renders_each_field_by_its_type(tmp_path):
    result = count_words(tmp_path, CountConfig())
    metadata = result_metadata(result)
    assert metadata["total"].value == 4 and metadata["rate"].value == 0.123457
    assert "| word | count |" in metadata["by_word"].value
    assert "| word |" in metadata["rows"].value
    assert "data:image/png;base64," in metadata["plot"].value
    assert "hidden" not in metadata


def test_partition_paths_for_one_and_several_dimensions():
    assert partition_path("dir/file.warc.gz") == "dir__file.warc.gz"
    key = MultiPartitionKey({"size": "s", "budget": "1e15"})
    assert partition_path(key) == "budget=1e15/size=s"


def test_publish_writes_where_the_asset_key_and_partition_say(tmp_path):
    grid = MultiPartitionsDefinition({"size": StaticPartitionsDefinition(["s", "m"]),
                                      "budget": StaticPartitionsDefinition(["1e15"])})

    @asset(partitions_def=grid)
    def counted(context, config: CountSettings, storage: Storage) -> MaterializeResult:
        count_config = config.build()
        result = publish(context, storage, lambda out: count_words(out, count_config),
                         config=count_config, inputs={"source": "test"})
        assert result.plot.exists()  # moved along with its directory
        return MaterializeResult(metadata=result_metadata(result))

    storage = Storage(home=str(tmp_path))
    key = MultiPartitionKey({"size": "m", "budget": "1e15"})
    outcome = materialize([counted], partition_key=key, resources={"storage": storage},
                          instance=DagsterInstance.ephemeral())
    assert outcome.success
    directory = tmp_path / "artifacts" / "counted" / "budget=1e15" / "size=m"
    assert (directory / "words.txt").read_text() == "a b a b"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["counts"] == {"total": 4} and manifest["stage"] == "counted"
    assert manifest["config"] == dataclasses.asdict(CountConfig()) | {"words": ["a", "b"]}
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".")]
