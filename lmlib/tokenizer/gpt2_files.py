"""Reading and writing the GPT-2 `vocab.json` / `merges.txt` formats.

GPT-2 stores byte strings as printable Unicode strings: each byte maps to one character
(printable Latin-1 bytes to themselves, the others to U+0100 onwards, so the space is "Ġ").
`merges.txt` holds one merge per line, the two tokens separated by a space, optionally after a
`#version` line.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    characters = printable[:]
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + shift)
            shift += 1
    return {byte: chr(character) for byte, character in zip(printable, characters)}


@cache
def unicode_to_bytes() -> dict[str, int]:
    return {character: byte for byte, character in bytes_to_unicode().items()}


def token_to_string(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[byte] for byte in token)


@cache
def _translation_tables() -> tuple[dict[int, int], dict[int, None]]:
    """str.translate tables: table character -> the character of its byte, and table
    character -> deleted (what is left over lies outside the table)."""
    table = unicode_to_bytes()
    return ({ord(c): byte for c, byte in table.items()}, dict.fromkeys(map(ord, table)))


def string_to_token(text: str) -> bytes:
    """Inverse of token_to_string; a string with characters outside the table (a special token
    written verbatim by another tool) is taken as UTF-8. Two str.translate calls, not a Python
    loop per character: loading GPT-2's files is part of every tokenizer worker's start."""
    to_bytes, outside = _translation_tables()
    if text.translate(outside):
        return text.encode("utf-8")
    return text.translate(to_bytes).encode("latin-1")


def save_vocab_and_merges(
    vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], vocab_path: Path, merges_path: Path
) -> None:
    """Write GPT-2 style vocab.json ({token string: id}) and merges.txt."""
    encoded = {token_to_string(token): token_id for token_id, token in sorted(vocab.items())}
    if len(encoded) != len(vocab):
        raise ValueError("vocabulary holds the same byte string under two ids; cannot save it")
    Path(vocab_path).write_text(json.dumps(encoded, ensure_ascii=False, indent=0), "utf-8")
    lines = ["#version: 0.2"]
    lines += [f"{token_to_string(left)} {token_to_string(right)}" for left, right in merges]
    Path(merges_path).write_text("\n".join(lines) + "\n", "utf-8")


def load_vocab(vocab_path: Path) -> dict[int, bytes]:
    path = Path(vocab_path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file {path} does not exist")
    try:
        encoded = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a GPT-2 vocab.json (JSON object of token -> id)") from error
    if not isinstance(encoded, dict):
        raise ValueError(f"{path} is not a GPT-2 vocab.json (JSON object of token -> id)")
    return {int(token_id): string_to_token(text) for text, token_id in encoded.items()}


def load_merges(merges_path: Path) -> list[tuple[bytes, bytes]]:
    path = Path(merges_path)
    if not path.is_file():
        raise FileNotFoundError(f"merges file {path} does not exist")
    merges = []
    for number, line in enumerate(path.read_text("utf-8").split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{path}:{number}: expected two tokens separated by a space: {line!r}")
        merges.append((string_to_token(parts[0]), string_to_token(parts[1])))
    return merges
