"""Small C cores for hot loops, compiled on first use with the system's C compiler.

Notable:
- `load(name)` compiles `lmlib/native/<name>.c` with `cc -O3 -shared -fPIC` into the cache
  (LMPIPE_NATIVE_CACHE, default ~/.cache/lmpipe/native) under a hash of the source and the
  compiler command, and opens it with ctypes. `make setup` builds every core, so the first call
  in a session does not pay for the compile.
- It returns None when there is no compiler, the compile fails, or LMPIPE_NATIVE=0: every
  caller keeps a pure-Python path that gives identical results, and `available(name)` says
  which path a user gets.
- The compiler writes to a temporary file that is renamed into place, so processes building
  at once (the tokenizer's worker pool) never open a half-written library.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
CFLAGS = ("-O3", "-shared", "-fPIC", "-std=c11")


def cache_dir() -> Path:
    configured = os.environ.get("LMPIPE_NATIVE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "lmpipe" / "native"


def enabled() -> bool:
    return os.environ.get("LMPIPE_NATIVE", "1") not in ("0", "false", "no", "")


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or \
        shutil.which("clang")


def library_path(name: str) -> Path:
    """Where the compiled core of `name` lives (whether or not it is built yet)."""
    source = (SOURCE_DIR / f"{name}.c").read_bytes()
    key = hashlib.sha256(source + repr((compiler(), CFLAGS)).encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{key}.so"


def build(name: str) -> Path:
    """Compiles `name`.c if its library is not in the cache; raises on a failed compile."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH; set CC")
    target = library_path(name)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        command = [cc, *CFLAGS, str(SOURCE_DIR / f"{name}.c"), "-o", temporary]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"compiling {name}.c failed ({' '.join(command)}):\n"
                               f"{done.stderr.strip()}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


@functools.cache
def load(name: str) -> ctypes.CDLL | None:
    """The C core `name` (lmlib/native/<name>.c), or None where it cannot be had."""
    if not enabled():
        return None
    try:
        return ctypes.CDLL(str(build(name)))
    except (OSError, RuntimeError) as error:
        print(f"lmlib.native: using the pure-Python path for {name}: {error}", file=sys.stderr)
        return None


def available(name: str) -> bool:
    return load(name) is not None


def build_all() -> list[Path]:
    """Builds every core (make setup calls this)."""
    return [build(path.stem) for path in sorted(SOURCE_DIR.glob("*.c"))]
