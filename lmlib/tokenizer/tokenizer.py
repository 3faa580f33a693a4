"""Byte-level BPE encoder/decoder compatible with GPT-2 files (same ids as tiktoken `gpt2`).

Notable:
- The hot loop is C-level: `str.split(" ")` cuts the text into words, a dict with `__missing__`
  maps each word (with its leading space) to its ids, and `chain.from_iterable` flattens. In the
  GPT-2 pattern a space followed by a non-space character always starts a pre-token, and a
  non-space character followed by a space always ends one, so a word with no whitespace at its
  edges encodes the same alone as in context. The other words (empty ones from double spaces,
  indentation, the first word) are grouped and go through `regex.findall` and a pre-token cache.
  The regex runs only on cache misses and on those groups: natural text repeats its words, so
  nearly every lookup hits and the text is scanned at `str.split` speed.
- BPE on a miss applies the lowest-ranked merge present, all its occurrences left to right, until
  none applies: GPT-2's algorithm, which gives tiktoken's ids for the GPT-2 files.
- Special tokens match longest first; they are encoded as one id and never merged.
- `encode_iterable` holds back only the text whose pre-tokens could still change when more
  text arrives (the last two pre-tokens and a possible partial special token), so it yields
  exactly `encode("".join(chunks))` in constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import regex

from lmlib.formats import MERGES_FILE, TOKENIZER_CONFIG_FILE, VOCAB_FILE
from lmlib.tokenizer.gpt2_files import load_merges, load_vocab, save_vocab_and_merges
from lmlib.tokenizer.pretokenize import GPT2_PATTERN, PRETOKEN_REGEX, special_token_regex

# text buffered by encode_iterable before it encodes what is final
_STREAM_BUFFER_CHARS = 1 << 16
# pre-token cache entries before the cache is cleared (bounds memory on endless input)
_CACHE_LIMIT = 1 << 20


# a word whose edges are whitespace depends on its neighbours: it takes the slow path
_WHITESPACE_AT_EDGE = regex.compile(r"^\s|\s$")
_WHITESPACE = regex.compile(r"\s")
# markers in the list of word encodings; a word's ids are never empty, and comparing () with a
# non-empty tuple stops at the lengths, so list.index finds the marker fast
_SLOW_PATH: tuple[int, ...] = ()
_DONE: list[int] = []


class _Cache(dict):
    """key -> value computed on a miss by `compute`; cleared when it outgrows _CACHE_LIMIT."""

    def __init__(self, compute):
        super().__init__()
        self._compute = compute

    def __missing__(self, key: str):
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        value = self._compute(key)
        self[key] = value
        return value


class Tokenizer:
    """Byte-level BPE tokenizer: `encode`, `encode_iterable`, `decode`."""

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
    ):
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = list(merges)
        self.special_tokens: list[str] = list(dict.fromkeys(special_tokens or []))
        self._token_to_id: dict[bytes, int] = {token: i for i, token in self.vocab.items()}
        for token in self.special_tokens:
            encoded = token.encode("utf-8")
            if encoded not in self._token_to_id:  # a special token not in the vocabulary: append
                new_id = max(self.vocab, default=-1) + 1
                self.vocab[new_id] = encoded
                self._token_to_id[encoded] = new_id
        missing = [byte for byte in range(256) if bytes([byte]) not in self._token_to_id]
        if missing:
            raise ValueError(
                f"vocabulary lacks {len(missing)} of the 256 single bytes (first: {missing[0]}); "
                "a byte-level BPE vocabulary must contain every byte"
            )
        self._byte_ids = [self._token_to_id[bytes([byte])] for byte in range(256)]
        self._merge_ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self.merges):
            try:
                pair = (self._token_to_id[left], self._token_to_id[right])
                merged = self._token_to_id[left + right]
            except KeyError as error:
                raise ValueError(
                    f"merge {rank} ({left!r}, {right!r}) uses or makes a token that is not in "
                    "the vocabulary"
                ) from error
            self._merge_ranks.setdefault(pair, (rank, merged))
        self._special_ids = {token: self._token_to_id[token.encode("utf-8")]
                             for token in self.special_tokens}
        self._special_regex = special_token_regex(self.special_tokens)
        self._longest_special = max(map(len, self.special_tokens), default=0)
        self._pretoken_cache = _Cache(self._bpe)
        self._word_cache = _Cache(self._encode_word)
        self._findall = PRETOKEN_REGEX.findall

    # --- files -------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        vocab_filepath: str | Path,
        merges_filepath: str | Path,
        special_tokens: list[str] | None = None,
    ) -> Tokenizer:
        """Load GPT-2 style vocab.json and merges.txt."""
        return cls(load_vocab(Path(vocab_filepath)), load_merges(Path(merges_filepath)),
                   special_tokens)

    @classmethod
    def from_directory(cls, directory: str | Path) -> Tokenizer:
        """Load a directory written by `save`: vocab.json, merges.txt and tokenizer.json."""
        directory = Path(directory)
        config_path = directory / TOKENIZER_CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} not found: expected a tokenizer directory written by "
                "Tokenizer.save (vocab.json, merges.txt, tokenizer.json)"
            )
        config = json.loads(config_path.read_text("utf-8"))
        return cls.from_files(directory / VOCAB_FILE, directory / MERGES_FILE,
                              config.get("special_tokens", []))

    def save(self, directory: str | Path) -> None:
        """Write vocab.json and merges.txt (GPT-2 format) and tokenizer.json (special tokens)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_vocab_and_merges(self.vocab, self.merges, directory / VOCAB_FILE,
                              directory / MERGES_FILE)
        config = {
            "format": "gpt2-byte-level-bpe",
            "vocab_size": self.vocab_size,
            "special_tokens": self.special_tokens,
            "special_token_ids": self._special_ids,
            "pretokenize_pattern": GPT2_PATTERN,
        }
        (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", "utf-8")

    # --- properties ----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return max(self.vocab) + 1

    def token_id(self, token: str) -> int:
        """Id of a special token (or any token given as text)."""
        try:
            return self._token_to_id[token.encode("utf-8")]
        except KeyError:
            raise KeyError(f"{token!r} is not a token of this vocabulary") from None

    # --- encoding ------------------------------------------------------------------------------

    def _bpe(self, pretoken: str) -> tuple[int, ...]:
        ids = [self._byte_ids[byte] for byte in pretoken.encode("utf-8")]
        ranks = self._merge_ranks
        while len(ids) > 1:
            best_rank, best = None, None
            for pair in zip(ids, ids[1:]):
                found = ranks.get(pair)
                if found is not None and (best_rank is None or found[0] < best_rank):
                    best_rank, best = found[0], pair
            if best is None:
                break
            left, right = best
            new_id = ranks[best][1]
            merged, position, end = [], 0, len(ids) - 1
            while position <= end:
                if ids[position] == left and position < end and ids[position + 1] == right:
                    merged.append(new_id)
                    position += 2
                else:
                    merged.append(ids[position])
                    position += 1
            ids = merged
        return tuple(ids)

    def _encode_pretokens(self, text: str) -> list[int]:
        """Encode text with no special tokens the plain way: regex pre-tokens, then BPE."""
        return list(chain.from_iterable(map(self._pretoken_cache.__getitem__,
                                            self._findall(text))))

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """Ids of " " + word, or () when word is empty or has whitespace at an edge (then its
        pre-tokens depend on the neighbouring words)."""
        if not word or _WHITESPACE_AT_EDGE.search(word):
            return _SLOW_PATH
        return tuple(self._encode_pretokens(" " + word))

    def _encode_ordinary(self, text: str) -> list[int]:
        """Encode text that holds no special tokens (see the module docstring for the why)."""
        words = text.split(" ")
        encoded = list(map(self._word_cache.__getitem__, words))
        if encoded.count(_SLOW_PATH) * 8 > len(encoded):  # code, indentation: group overhead
            return self._encode_pretokens(text)           # would cost more than it saves
        encoded[0] = _SLOW_PATH  # the first word has no leading space
        start = 0
        while True:
            try:
                start = encoded.index(_SLOW_PATH, start)
            except ValueError:
                break
            end = start + 1
            while end < len(encoded) and encoded[end] is _SLOW_PATH:
                end += 1
            group = " ".join(words[start:end])
            encoded[start] = self._encode_pretokens(group if start == 0 else " " + group)
            for index in range(start + 1, end):
                encoded[index] = _DONE
            start = end
        return list(chain.from_iterable(encoded))

    def encode(self, text: str) -> list[int]:
        """Token ids of text; special tokens in the text become their single ids."""
        if self._special_regex is None:
            return self._encode_ordinary(text)
        ids: list[int] = []
        position = 0
        for match in self._special_regex.finditer(text):
            if match.start() > position:
                ids += self._encode_ordinary(text[position:match.start()])
            ids.append(self._special_ids[match.group()])
            position = match.end()
        if position < len(text):
            ids += self._encode_ordinary(text[position:])
        return ids

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily encode a stream of strings (a file's lines), same ids as encoding the
        concatenation, in memory bounded by the buffer size (not by the stream's length)."""
        pending: list[str] = []
        pending_chars = 0
        for chunk in iterable:
            pending.append(chunk)
            pending_chars += len(chunk)
            if pending_chars < _STREAM_BUFFER_CHARS:
                continue
            final_ids, rest = self._encode_final_prefix("".join(pending))
            yield from final_ids
            pending, pending_chars = [rest], len(rest)
        if pending_chars:
            yield from self.encode("".join(pending))

    def _encode_final_prefix(self, buffer: str) -> tuple[list[int], str]:
        """Ids of the prefix of buffer that more text cannot change, and the rest of buffer."""
        ids: list[int] = []
        position = 0
        # a special token starting here or later could still grow into a longer one
        settled = len(buffer) - self._longest_special + 1 if self._longest_special else len(buffer)
        if self._special_regex is not None:
            for match in self._special_regex.finditer(buffer, 0, len(buffer)):
                if match.start() >= settled:
                    break
                if match.start() > position:
                    ids += self._encode_ordinary(buffer[position:match.start()])
                ids.append(self._special_ids[match.group()])
                position = match.end()
        if position >= settled:
            return ids, buffer[position:]
        # the text up to `settled` continues past it as ordinary text. A space followed by a
        # non-space character starts a pre-token whatever comes next: cut at the last one
        cut = settled - 1
        while True:
            cut = buffer.rfind(" ", position + 1, cut)
            if cut < 0 or not _WHITESPACE.match(buffer, cut + 1):
                break
        if cut < 0:
            # no such space (CJK text, say): all pre-tokens but the last two are final, as the
            # GPT-2 pattern looks at most two characters past a pre-token. They are encoded as
            # found here: pre-tokenizing their text again alone could split it differently
            # ("\n\n" before "a" is two pre-tokens, at the end of a text one)
            final = self._findall(buffer, position, settled)[:-2]
            ids += chain.from_iterable(map(self._pretoken_cache.__getitem__, final))
            return ids, buffer[position + sum(map(len, final)):]
        if cut > position:
            ids += self._encode_ordinary(buffer[position:cut])
            position = cut
        return ids, buffer[position:]

    # --- decoding ------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids; byte sequences that are not valid UTF-8 become U+FFFD."""
        vocab = self.vocab
        try:
            data = b"".join([vocab[token_id] for token_id in ids])
        except KeyError as error:
            raise ValueError(f"token id {error.args[0]} is not in the vocabulary "
                             f"(size {self.vocab_size})") from None
        return data.decode("utf-8", errors="replace")
