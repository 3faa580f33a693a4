"""Download the benchmarks from where their authors publish them, into the layouts the loaders
read.

Notable:
- `download(url, dest, sha256=None)` is `lmlib.download.download_file` (urllib only,
  bytes into a hidden `.NAME.part` beside `dest`, renamed over it with os.replace once the
  length and checksum are right, retries with backoff on 5xx and lost connections) with progress
  logged on the "lmlib.tasks" logger. An HTTP error or a checksum mismatch raises
  `DownloadError` and leaves nothing behind; a transfer still cut off after its retries keeps
  only the hidden `.part`, which the next call resumes. `dest` is never half-written;
- every `download_*` takes `base_url` (a mirror, or a local server in tests), `checksums` (file
  name -> sha256; None: the pins below) and `force`; files already present are kept unless
  `force`. Each returns the directory it wrote;
- MMLU: `{MMLU_URL}/data.tar`, the original release; only `data/{dev,val,test}/*.csv` and the
  README are extracted, by name, so an archive member can never write outside `root`
  (absolute names, "..", links and devices are refused outright). Each split directory is
  replaced atomically (`lmlib.artifacts.atomic_directory`);
- GSM8K: OpenAI's `grade_school_math/data/{train,test}.jsonl`, pinned by sha256;
- MATH: PRM800K's `math_splits/{train,test}.jsonl` (OpenAI, Lightman et al. 2023) at commit
  7ecc794, pinned by the sha256 of their Git LFS pointers: the whole of Hendrycks' MATH
  re-split into 12,000 train and 500 test problems, the test being MATH-500, with fields
  problem, solution, answer, subject, level, unique_id. Not the original 7,500 / 5,000 split,
  which Hendrycks published as a tar of per-problem json files rather than jsonl (`load_math`
  reads those objects too). Training on this train file never sees a MATH-500 problem;
- MATH-500: HuggingFaceH4's `test.jsonl` (the same 500 problems), not pinned.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from lmlib.artifacts import atomic_directory
from lmlib.download import download_file, logging_progress
from lmlib.tasks.mmlu import MMLU_SPLITS

logger = logging.getLogger("lmlib.tasks")

MMLU_URL = "https://people.eecs.berkeley.edu/~hendrycks"
MMLU_ARCHIVE = "data.tar"
GSM8K_URL = ("https://raw.githubusercontent.com/openai/grade-school-math/master/"
             "grade_school_math/data")
MATH_URL = ("https://media.githubusercontent.com/media/openai/prm800k/"
            "7ecc794703b2877f63226f2477a49b34f9b25163/prm800k/math_splits")
MATH500_URL = "https://huggingface.co/datasets/HuggingFaceH4/MATH-500/resolve/main"

SPLIT_FILES = ("train.jsonl", "test.jsonl")
GSM8K_SHA256 = {
    "train.jsonl": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
    "test.jsonl": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
}
MATH_SHA256 = {  # the oids of the LFS pointers in openai/prm800k at 7ecc794
    "train.jsonl": "90d96daeac3fe343ebb1e22ce93dd99690f75983e957f88de42f87cffe1e8076",
    "test.jsonl": "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
}

def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    retries: int = 3,
    timeout_seconds: float = 60.0,
) -> Path:
    """`url` to `dest`, atomically: `dest` is complete and verified, or untouched and
    `DownloadError` says why (the HTTP status, or the two checksums)."""
    dest = Path(dest)
    result = download_file(url, dest, sha256=sha256, retries=retries,
                           timeout_seconds=timeout_seconds,
                           progress=logging_progress(logger.info, dest.name))
    logger.info("downloaded %s: %d bytes in %.1f s", dest, result.size, result.seconds)
    return dest


def _download_files(root: str | Path, base_url: str, names: tuple[str, ...],
                    checksums: Mapping[str, str], force: bool) -> Path:
    root = Path(root)
    for name in names:
        if force or not (root / name).is_file():
            download(f"{base_url.rstrip('/')}/{name}", root / name, checksums.get(name))
    return root


def download_gsm8k(root: str | Path, base_url: str = GSM8K_URL,
                   checksums: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """GSM8K's train.jsonl and test.jsonl into `root` (`load_gsm8k(root, split)` reads them)."""
    checksums = GSM8K_SHA256 if checksums is None else checksums
    return _download_files(root, base_url, SPLIT_FILES, checksums, force)


def download_math(root: str | Path, base_url: str = MATH_URL,
                  checksums: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """PRM800K's MATH train.jsonl (12,000) and test.jsonl (MATH-500) into `root`."""
    checksums = MATH_SHA256 if checksums is None else checksums
    return _download_files(root, base_url, SPLIT_FILES, checksums, force)


def download_math500(root: str | Path, base_url: str = MATH500_URL,
                     checksums: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """MATH-500's test.jsonl into `root`."""
    return _download_files(root, base_url, ("test.jsonl",), checksums or {}, force)


def _mmlu_member_target(member: tarfile.TarInfo, archive: Path) -> tuple[str, str] | None:
    """(split, file name) for a member to extract, None for one to skip; raises ValueError for
    a member that could write outside the destination."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{archive}: refusing unsafe member {member.name!r} (absolute or "
                         "'..'); this is not MMLU's data.tar")
    parts = [part for part in path.parts if part != "."]
    if len(parts) < 2:
        return None
    split, name = parts[-2], parts[-1]
    wanted = (split in MMLU_SPLITS and name.endswith(f"_{split}.csv")) or (
        split == "data" and name == "README.txt")
    if not wanted:
        return None  # auxiliary_train/ and anything else
    if not member.isfile():
        raise ValueError(f"{archive}: refusing {member.name!r}, a link or special file where "
                         "a CSV belongs")
    return split, name


def extract_mmlu(archive: str | Path, root: str | Path) -> dict[str, int]:
    """MMLU's CSVs from `archive` (the original data.tar layout) into `root/{dev,val,test}/`;
    returns the number of files per split."""
    archive, root = Path(archive), Path(root)
    chosen: dict[str, list[tuple[tarfile.TarInfo, str]]] = {split: [] for split in MMLU_SPLITS}
    readme = None
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            target = _mmlu_member_target(member, archive)
            if target is None:
                continue
            split, name = target
            if split == "data":
                readme = member
            else:
                chosen[split].append((member, name))
        empty = [split for split, members in chosen.items() if not members]
        if empty:
            raise ValueError(f"{archive} holds no data/{{{','.join(empty)}}}/*.csv: not MMLU's "
                             "data.tar")
        for split, members in chosen.items():
            with atomic_directory(root / split) as staging:
                for member, name in members:
                    (staging / name).write_bytes(tar.extractfile(member).read())
        if readme is not None:
            (root / "README.txt").write_bytes(tar.extractfile(readme).read())
    return {split: len(members) for split, members in chosen.items()}


def download_mmlu(root: str | Path, base_url: str = MMLU_URL,
                  checksums: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """MMLU's original data.tar, extracted into `root/{dev,val,test}/` (`load_mmlu(root)`)."""
    root = Path(root)
    if not force and all(any((root / split).glob("*.csv")) for split in MMLU_SPLITS):
        return root
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f".{MMLU_ARCHIVE}"  # hidden, and deleted below whatever happens
    try:
        download(f"{base_url.rstrip('/')}/{MMLU_ARCHIVE}", archive,
                 (checksums or {}).get(MMLU_ARCHIVE))
        counts = extract_mmlu(archive, root)
    finally:
        archive.unlink(missing_ok=True)
    logger.info("MMLU in %s: %s CSV files per split", root, counts)
    return root
