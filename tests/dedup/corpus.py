"""Small hand-made corpora for the dedup tests: licence texts, variants, unrelated prose."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

MIT = (
    "Copyright (c) {year} {holder}\n\n"
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    'software and associated documentation files (the "Software"), to deal in the Software '
    "without restriction, including without limitation the rights to use, copy, modify, merge, "
    "publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons "
    "to whom the Software is furnished to do so, subject to the following conditions:\n\n"
    "The above copyright notice and this permission notice shall be included in all copies or "
    "substantial portions of the Software.\n\n"
    'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, '
    "INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR "
    "PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE "
    "FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR "
    "OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER "
    "DEALINGS IN THE SOFTWARE.\n"
)

UNRELATED = (
    "To bake a simple loaf of bread, mix flour, water, salt and yeast, knead the dough for ten "
    "minutes until it is smooth, let it rise in a warm place for an hour, shape it, let it rise "
    "again, and bake it in a hot oven until the crust is deep brown and the loaf sounds hollow "
    "when tapped underneath. Cool it on a rack before slicing.\n"
)

# The MIT text with its second half replaced: clearly related, but far below Jaccard 0.8.
HALF_MIT = MIT.split("THE SOFTWARE IS PROVIDED")[0] + (
    "This licence is governed by the laws of a small island nation, and any dispute shall be "
    "settled by a panel of three arbitrators chosen by lot from the village council, who meet "
    "on the first Tuesday of every month in the harbour master's office near the old lighthouse.\n"
)


def mit(year: int = 2024, holder: str = "Jane Doe") -> str:
    return MIT.format(year=year, holder=holder)


def word_ngram_jaccard(a: str, b: str, n: int = 5) -> float:
    """Exact Jaccard of word n-gram sets, computed independently of lmlib (ASCII text only)."""

    def grams(text: str) -> set[tuple[str, ...]]:
        words = re.sub(r"[^\w\s]", "", text.lower()).split()
        return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def write_files(directory: Path, texts: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def write_documents(path: Path, texts: dict[str, str], source_file: str) -> Path:
    """A documents.parquet in the pipeline schema, doc_id = the file name used at file level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(texts)
    encoded = [len(texts[n].encode("utf-8")) for n in names]
    pl.DataFrame(
        {
            "doc_id": names,
            "url": [f"https://example.org/{n}" for n in names],
            "record_id": [f"<urn:uuid:{i}>" for i in range(len(names))],
            "date": ["2024-01-01T00:00:00Z"] * len(names),
            "content_type": ["text/html"] * len(names),
            "text": [texts[n] for n in names],
            "payload_bytes": pl.Series(encoded, dtype=pl.Int64),
            "text_bytes": pl.Series(encoded, dtype=pl.Int64),
            "source_file": [source_file] * len(names),
        }
    ).write_parquet(path)
    return path
