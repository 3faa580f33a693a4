"""Train one supervised fastText model in a fresh interpreter:
`python lmlib/web/fasttext_train_worker.py TRAIN_FILE OUT_PATH PARAMS_JSON` (run as a script, so
not even lmlib's package imports run first).

fastText 0.9.2 initializes only a tenth of its input matrix when thread < 10 and trusts the
rest of the allocation to be zero. Inside a long-running process (Dagster, pytest) recycled heap
memory makes training produce NaN, saturated or non-reproducible models; a fresh interpreter
that imports nothing but fastText, with large allocations forced onto fresh zero-filled mmap
pages, trains the same model every time. This module imports only the standard library and
fasttext, on purpose.
"""

import ctypes
import ctypes.util
import json
import sys

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _force_fresh_pages_for_large_allocations() -> None:
    """A fixed 16 KiB threshold: larger blocks are fresh mmap pages (zeros) on glibc."""
    libc_name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc_name), "mallopt", None) if libc_name else None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 16 * 1024)


def main() -> int:
    train_file, out_path, params_json = sys.argv[1:4]
    _force_fresh_pages_for_large_allocations()
    import fasttext

    params = json.loads(params_json)
    for attempt in range(3):
        try:
            model = fasttext.train_supervised(input=train_file, **params)
            model.save_model(out_path)
            return 0
        except RuntimeError as error:
            if "NaN" not in str(error) or attempt == 2:
                print(f"{error} (a bucket of at least 5000 or a lower lr avoids NaN)",
                      file=sys.stderr)
                return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
