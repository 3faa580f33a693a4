import numpy as np

from lmlib.dedup import exact_line_deduplication
from lmlib.dedup.exact_lines import line_ranges
from tests.dedup.corpus import write_files


def test_two_identical_one_line_files_become_two_empty_files(tmp_path):
    paths = write_files(tmp_path / "in", {"a.txt": "the same line\n", "b.txt": "the same line\n"})
    stats = exact_line_deduplication(paths, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b""
    assert (tmp_path / "out" / "b.txt").read_bytes() == b""
    assert stats["repeated_units"] == 1 and stats["lines_out"] == 0


def test_keeps_only_lines_unique_in_the_corpus(tmp_path):
    paths = write_files(
        tmp_path / "in",
        {
            "a.txt": "header\nalpha\nshared footer\nalpha\n",
            "b.txt": "header\nbeta\nshared footer",  # last line without newline still matches
            "c.txt": "gamma\n",
        },
    )
    exact_line_deduplication(paths, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_text() == ""  # alpha occurs twice in a.txt itself
    assert (tmp_path / "out" / "b.txt").read_text() == "beta\n"
    assert (tmp_path / "out" / "c.txt").read_text() == "gamma\n"


def test_exact_line_dedup_does_not_depend_on_file_order(tmp_path):
    texts = {"a.txt": "x\ny\nz\n", "b.txt": "y\nw\n", "c.txt": "z\nv\nx\nq"}
    paths = write_files(tmp_path / "in", texts)
    exact_line_deduplication(paths, tmp_path / "forward")
    exact_line_deduplication(paths[::-1], tmp_path / "backward")
    for name in texts:
        forward = (tmp_path / "forward" / name).read_bytes()
        assert forward == (tmp_path / "backward" / name).read_bytes()
    assert (tmp_path / "forward" / "c.txt").read_text() == "v\nq"


def test_line_ranges_respect_document_boundaries():
    text = b"ab\ncd\n" + b"" + b"ef"
    starts, ends, terminators, docs = line_ranges(
        np.frombuffer(text, np.uint8), np.array([0, 6, 6, 8])
    )
    assert [text[s:e] for s, e in zip(starts, ends)] == [b"ab", b"cd", b"ef"]
    assert terminators.tolist() == [1, 1, 0]
    assert docs.tolist() == [0, 0, 2]
