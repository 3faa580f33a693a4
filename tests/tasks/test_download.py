"""Benchmark downloads against an http.server on 127.0.0.1: files land whole and verified, or
not at all; MMLU's tar extracts into the loader's layout and nowhere else."""

import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
from functools import partial

import pytest

from lmlib.tasks import (
    DownloadError,
    download,
    download_gsm8k,
    download_math,
    download_math500,
    download_mmlu,
    extract_mmlu,
    load_gsm8k,
    load_math,
    load_mmlu,
)
from lmlib.tasks.download import GSM8K_SHA256, GSM8K_URL, MATH_URL, MMLU_URL
from tests.conftest import shared_path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path):
    """(directory served, its base URL): an http.server on 127.0.0.1 in a thread."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # a short poll, so shutdown() returns at once rather than after the default 0.5 s
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _listing(directory):
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*"))


def test_download_verifies_and_writes(server, tmp_path):
    served, base_url = server
    payload = b"x" * 200_000
    (served / "file.bin").write_bytes(payload)
    dest = tmp_path / "out" / "file.bin"
    assert download(f"{base_url}/file.bin", dest, hashlib.sha256(payload).hexdigest()) == dest
    assert dest.read_bytes() == payload
    assert _listing(dest.parent) == ["file.bin"]  # no .part file left


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    served, base_url = server
    (served / "file.bin").write_bytes(b"tampered")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError, match="sha256"):
        download(f"{base_url}/file.bin", out / "file.bin", "0" * 64)
    assert _listing(out) == []


def test_http_404_leaves_nothing(server, tmp_path):
    _, base_url = server
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{base_url}/missing.jsonl", out / "missing.jsonl")
    assert _listing(out) == []


def test_failed_download_keeps_the_old_file(server, tmp_path):
    _, base_url = server
    dest = tmp_path / "test.jsonl"
    dest.write_text("old\n")
    with pytest.raises(DownloadError):
        download(f"{base_url}/missing.jsonl", dest)
    assert dest.read_text() == "old\n"


def test_default_urls_are_the_published_ones():
    assert MMLU_URL == "https://people.eecs.berkeley.edu/~hendrycks"
    assert GSM8K_URL == ("https://raw.githubusercontent.com/openai/grade-school-math/master/"
                         "grade_school_math/data")
    assert MATH_URL.startswith("https://media.githubusercontent.com/media/openai/prm800k/")


# ---- GSM8K, MATH, MATH-500 -------------------------------------------------------------------


def test_download_gsm8k_checks_the_pinned_checksums(server, tmp_path):
    """The shared copy is byte-for-byte OpenAI's, so it passes the pins."""
    served, base_url = server
    for name in ("train.jsonl", "test.jsonl"):
        shutil.copyfile(shared_path(f"data/math/gsm8k/{name}"), served / name)
    root = download_gsm8k(tmp_path / "gsm8k", base_url=base_url)
    assert _listing(root) == ["test.jsonl", "train.jsonl"]
    assert len(load_gsm8k(root, "test")) == 1319
    assert hashlib.sha256((root / "test.jsonl").read_bytes()).hexdigest() == (
        GSM8K_SHA256["test.jsonl"])


def test_download_gsm8k_refuses_other_bytes(server, tmp_path):
    served, base_url = server
    for name in ("train.jsonl", "test.jsonl"):
        (served / name).write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n")
    root = tmp_path / "gsm8k"
    with pytest.raises(DownloadError, match="sha256"):
        download_gsm8k(root, base_url=base_url)
    assert _listing(root) == []


def _math_record(number):
    return {"problem": f"What is ${number}+1$?", "solution": f"It is $\\boxed{{{number + 1}}}$.",
            "answer": str(number + 1), "subject": "Prealgebra", "level": 1,
            "unique_id": f"test/prealgebra/{number}.json"}


def test_download_math_and_math500(server, tmp_path):
    served, base_url = server
    for name, count in (("train.jsonl", 3), ("test.jsonl", 2)):
        (served / name).write_text("".join(json.dumps(_math_record(number)) + "\n"
                                           for number in range(count)))
    math_root = download_math(tmp_path / "MATH", base_url=base_url, checksums={})
    assert [len(load_math(math_root / name)) for name in ("train.jsonl", "test.jsonl")] == [3, 2]
    math500_root = download_math500(tmp_path / "math500", base_url=base_url + "/")
    assert _listing(math500_root) == ["test.jsonl"]
    assert load_math(math500_root / "test.jsonl")[1].answer == "2"


def test_present_files_are_kept_unless_forced(server, tmp_path):
    served, base_url = server
    (served / "test.jsonl").write_text(json.dumps(_math_record(1)) + "\n")
    root = download_math500(tmp_path / "math500", base_url=base_url)
    (served / "test.jsonl").write_text(json.dumps(_math_record(5)) + "\n")
    assert load_math(download_math500(root, base_url=base_url) / "test.jsonl")[0].answer == "2"
    download_math500(root, base_url=base_url, force=True)
    assert load_math(root / "test.jsonl")[0].answer == "6"


# ---- MMLU ------------------------------------------------------------------------------------

SUBJECTS = ("abstract_algebra", "anatomy")


def _add_file(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _mmlu_tar(path, extra=()):
    """data.tar in the original layout, from the shared CSVs of two subjects."""
    mmlu = shared_path("data/mmlu")
    with tarfile.open(path, "w") as tar:
        _add_file(tar, "data/README.txt", b"readme\n")
        _add_file(tar, "data/auxiliary_train/race.csv", b"not, mmlu\n")
        for split in ("dev", "val", "test"):
            for subject in SUBJECTS:
                name = f"{subject}_{split}.csv"
                _add_file(tar, f"data/{split}/{name}", (mmlu / split / name).read_bytes())
        for member in extra:
            tar.addfile(member, io.BytesIO(b"evil\n") if member.isfile() else None)
    return path


def test_download_mmlu_extracts_the_original_layout(server, tmp_path):
    served, base_url = server
    _mmlu_tar(served / "data.tar")
    root = download_mmlu(tmp_path / "mmlu", base_url=base_url)
    assert _listing(root) == ["README.txt", "dev", *[f"dev/{s}_dev.csv" for s in SUBJECTS],
                              "test", *[f"test/{s}_test.csv" for s in SUBJECTS],
                              "val", *[f"val/{s}_val.csv" for s in SUBJECTS]]
    shared = shared_path("data/mmlu")
    for split in ("dev", "val", "test"):
        assert load_mmlu(root, split, SUBJECTS) == load_mmlu(shared, split, SUBJECTS)


def test_download_mmlu_404_leaves_nothing(server, tmp_path):
    _, base_url = server
    root = tmp_path / "mmlu"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_mmlu(root, base_url=base_url)
    assert _listing(root) == []


def _evil(name, kind=tarfile.REGTYPE, linkname=""):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    member.size = len(b"evil\n") if kind == tarfile.REGTYPE else 0
    return member


@pytest.mark.parametrize("member", [
    _evil("../anatomy_dev.csv"),
    _evil("data/dev/../../../anatomy_dev.csv"),
    _evil("/tmp/anatomy_dev.csv"),
    _evil("data/dev/virology_dev.csv", tarfile.SYMTYPE, "/etc/passwd"),
    _evil("data/test/virology_test.csv", tarfile.LNKTYPE, "data/README.txt"),
], ids=["parent", "nested-parent", "absolute", "symlink", "hardlink"])
def test_unsafe_archives_are_refused_before_writing(tmp_path, member):
    archive = _mmlu_tar(tmp_path / "data.tar", extra=[member])
    root = tmp_path / "extracted" / "mmlu"
    with pytest.raises(ValueError, match="refusing"):
        extract_mmlu(archive, root)
    assert not (tmp_path / "extracted").exists()
    assert _listing(tmp_path) == ["data.tar"]


def test_archive_without_mmlu_is_refused(tmp_path):
    archive = tmp_path / "other.tar"
    with tarfile.open(archive, "w") as tar:
        _add_file(tar, "data/dev/notes.txt", b"hello\n")
    with pytest.raises(ValueError, match="not MMLU's data.tar"):
        extract_mmlu(archive, tmp_path / "mmlu")
