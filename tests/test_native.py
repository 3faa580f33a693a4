"""lmlib.native: compile on first use, cache by source hash, fall back to None."""

import pytest

import lmlib.native as native


@pytest.fixture
def sources(tmp_path, monkeypatch):
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    monkeypatch.setattr(native, "SOURCE_DIR", source_dir)
    monkeypatch.setenv("LMPIPE_NATIVE_CACHE", str(tmp_path / "cache"))
    native.load.cache_clear()
    yield source_dir
    native.load.cache_clear()


@pytest.mark.skipif(native.compiler() is None, reason="no C compiler")
def test_compiles_once_and_rebuilds_when_the_source_changes(sources):
    (sources / "probe.c").write_text("int add(int a, int b) { return a + b; }\n")
    first = native.build("probe")
    assert native.load("probe").add(2, 3) == 5
    assert native.build("probe") == first  # cached
    (sources / "probe.c").write_text("int add(int a, int b) { return a + b + 1; }\n")
    assert native.build("probe") != first


def test_disabled_or_broken_cores_give_none(sources, monkeypatch, capsys):
    (sources / "broken.c").write_text("this is not C\n")
    if native.compiler() is not None:
        with pytest.raises(RuntimeError, match="compiling broken.c failed"):
            native.build("broken")
    assert native.load("broken") is None
    assert "pure-Python path for broken" in capsys.readouterr().err
    monkeypatch.setenv("LMPIPE_NATIVE", "0")
    (sources / "fine.c").write_text("int one(void) { return 1; }\n")
    assert not native.available("fine")
