"""The sha256 of every artifact data file under an LMPIPE_HOME, and a comparison of two homes.

    python scripts/artifact_hashes.py HOME                 # prints {relative path: sha256} as JSON
    python scripts/artifact_hashes.py HOME --save F.json   # the same, into a file
    python scripts/artifact_hashes.py HOME --compare F.json

A refactoring that promises "the same artifacts" runs `make demo` into one home before the change
and into another after it, then compares. Manifests are left out (they name the code version) and
so is base_model's log.jsonl (it records timings); everything else must match byte for byte.
Hashes are machine-specific (float results can differ between processors): compare homes made on
one machine, and never commit them.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

SKIPPED_NAMES = {"manifest.json", "log.jsonl"}


def artifact_hashes(home: Path) -> dict[str, str]:
    root = home / "artifacts"
    if not root.is_dir():
        raise SystemExit(f"{root} does not exist: run `make demo` with LMPIPE_HOME={home} first")
    hashes = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in SKIPPED_NAMES:
            hashes[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def compare(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per file that differs, is missing or is new; empty when all match."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            lines.append(f"missing after: {name}")
        elif name not in before:
            lines.append(f"new after:     {name}")
        elif before[name] != after[name]:
            lines.append(f"differs:       {name}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", type=Path, help="an LMPIPE_HOME that `make demo` filled")
    parser.add_argument("--save", type=Path, help="write the hashes to this JSON file")
    parser.add_argument("--compare", type=Path, help="compare with hashes saved earlier")
    args = parser.parse_args()
    hashes = artifact_hashes(args.home)
    if args.save:
        args.save.write_text(json.dumps(hashes, indent=1) + "\n")
    if args.compare is None:
        if not args.save:
            print(json.dumps(hashes, indent=1))
        return 0
    differences = compare(json.loads(args.compare.read_text()), hashes)
    for line in differences:
        print(line)
    print(f"{len(hashes)} files compared: "
          f"{'all identical' if not differences else f'{len(differences)} differ'}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
