"""Byte-level BPE encoder/decoder compatible with GPT-2 files (same ids as tiktoken `gpt2`).

Notable:
- The split pattern and a Unicode normalization belong to the tokenizer: GPT-2's pattern and
  none by default, Llama 3's or Qwen2's pattern (and NFC for Qwen2) for imported models. As in
  Hugging Face, special tokens are found in the raw text and the text between them is
  normalized, then split. The fast paths below rely on properties of the pattern that hold for
  those in `SPACE_CUT_PATTERNS`; any other pattern splits with the regex alone, and a stream is
  then cut only at special tokens.
- On the pure-Python path the hot loop is C-level: `str.split(" ")` cuts the text into words, a
  dict with `__missing__` maps each word (with its leading space) to its ids, and
  `chain.from_iterable` flattens. In the GPT-2 pattern a space followed by a non-space character always starts a pre-token, and a
  non-space character followed by a space always ends one, so a word with no whitespace at its
  edges encodes the same alone as in context. The other words (empty ones from double spaces,
  indentation, the first word) are grouped and go through `regex.findall` and a pre-token cache.
  The regex runs only on cache misses and on those groups: natural text repeats its words, so
  nearly every lookup hits and the text is scanned at `str.split` speed.
- BPE on a miss applies the lowest-ranked merge present, all its occurrences left to right, until
  none applies: GPT-2's algorithm, which gives tiktoken's ids for the GPT-2 files. With
  `ignore_merges` (Llama 3's files) a pre-token that is itself a token is that one token, as
  tiktoken does, whatever the merges would make of it.
- Special tokens match longest first; they are encoded as one id and never merged.
- With GPT-2's, Llama 3's or Qwen2's pattern the text between special tokens (normalized first,
  if asked) goes to a C core, lmlib/native/bpe_encode.c: the same pre-tokenization and merges
  with a cache of its own, about 8x faster on text it has not seen. It is built per process on
  first use, never pickled, and serialized by a lock (the call releases the GIL). Where no
  compiler is present, LMPIPE_NATIVE=0 is set or the pattern is another, the pure-Python path
  below encodes, with identical ids; `uses_native_core` says which path a tokenizer takes.
- `encode_iterable` holds back only the text whose pre-tokens could still change when more
  text arrives (the last two pre-tokens and a possible partial special token), so it yields
  exactly `encode("".join(chunks))` in constant memory. Under NFC it cuts only where more text
  cannot change the normalized text before the cut (see `_final_pretokens`).
"""

from __future__ import annotations

import ctypes
import json
import threading
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import regex

from lmlib.formats import MERGES_FILE, TOKENIZER_CONFIG_FILE, VOCAB_FILE
from lmlib.tokenizer.gpt2_files import load_merges, load_vocab, save_vocab_and_merges
from lmlib.tokenizer.pretokenize import (
    GPT2_PATTERN,
    NATIVE_PATTERNS,
    SPACE_CUT_PATTERNS,
    bpe_core,
    pretoken_splitter,
    special_token_regex,
)

# text buffered by encode_iterable before it encodes what is final
_STREAM_BUFFER_CHARS = 1 << 16
# pre-token cache entries before the cache is cleared (bounds memory on endless input)
_CACHE_LIMIT = 1 << 20
# the Unicode normalizations a tokenizer may apply (the stream's cuts are proven for these only)
NORMALIZATIONS = ("NFC",)


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


class _NativeEncoder:
    """One tokenizer's encoder in the C core: GPT-2's pattern, the merges and a pre-token cache.

    Calls are serialized by a lock: the C cache is not thread-safe, and ctypes releases the GIL.
    """

    def __init__(self, library: ctypes.CDLL, pattern: str, byte_ids: list[int],
                 merge_ranks: dict[tuple[int, int], tuple[int, int]],
                 whole_tokens: dict[bytes, int] | None):
        self._library = library
        self._lock = threading.Lock()
        pairs = list(merge_ranks)
        columns = (array("i", byte_ids), array("i", [left for left, _ in pairs]),
                   array("i", [right for _, right in pairs]),
                   array("i", [rank for rank, _ in merge_ranks.values()]),
                   array("i", [merged for _, merged in merge_ranks.values()]))
        ranks = max((rank for rank, _ in merge_ranks.values()), default=-1) + 1
        self._handle = library.bpe_encoder_new(*(column.buffer_info()[0] for column in columns),
                                               len(pairs), ranks, NATIVE_PATTERNS[pattern])
        if not self._handle:
            raise MemoryError("bpe_encode.c could not build the encoder (out of memory?)")
        if whole_tokens is not None:
            tokens = list(whole_tokens)
            offsets = array("q", [0])
            for token in tokens:
                offsets.append(offsets[-1] + len(token))
            ids = array("i", whole_tokens.values())
            if library.bpe_encoder_set_whole_tokens(self._handle, b"".join(tokens),
                                                    offsets.buffer_info()[0],
                                                    ids.buffer_info()[0], len(tokens)):
                raise MemoryError("bpe_encode.c could not store the whole tokens")

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self._library.bpe_encoder_free(self._handle)
            self._handle = None

    def encode(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        if not data:
            return []
        ids = array("i")
        with self._lock:
            count = self._library.bpe_encode(self._handle, data, len(data))
            if count < 0:
                raise MemoryError(f"bpe_encode.c ran out of memory on {len(data)} bytes")
            ids.frombytes(memoryview((ctypes.c_int32 * count).from_address(
                self._library.bpe_encoder_ids(self._handle))).cast("B"))
        return ids.tolist()


class Tokenizer:
    """Byte-level BPE tokenizer: `encode`, `encode_iterable`, `decode`.

    pattern: the pre-tokenization regex, None for GPT-2's; normalization: None or "NFC", applied
    to the text between special tokens; ignore_merges: a pre-token that is a token encodes as it.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
        *,
        pattern: str | None = None,
        normalization: str | None = None,
        ignore_merges: bool = False,
    ):
        if normalization is not None and normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization {normalization!r} is not supported: use None or "
                             f"one of {', '.join(NORMALIZATIONS)}")
        self.pattern: str = GPT2_PATTERN if pattern is None else pattern
        self.normalization: str | None = normalization
        self.ignore_merges: bool = bool(ignore_merges)
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = list(merges)
        self.special_tokens: list[str] = list(dict.fromkeys(special_tokens or []))
        self._token_to_id: dict[bytes, int] = {token: i for i, token in self.vocab.items()}
        next_id = max(self.vocab, default=-1) + 1
        for token in self.special_tokens:
            encoded = token.encode("utf-8")
            if encoded not in self._token_to_id:  # a special token not in the vocabulary: append
                self.vocab[next_id] = encoded
                self._token_to_id[encoded] = next_id
                next_id += 1
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
        self._pretoken_cache = _Cache(self._whole_token_or_bpe if self.ignore_merges else self._bpe)
        self._word_cache = _Cache(self._encode_word)
        self._findall = pretoken_splitter(self.pattern)
        self._cuts_at_spaces = self.pattern in SPACE_CUT_PATTERNS
        self._native: _NativeEncoder | None = None  # built on first use, in each process
        self._native_checked = False

    def __getstate__(self) -> dict:
        """Pickles without the C encoder and the caches: a worker process builds its own encoder
        on first use, and a warm cache would only make the pickle larger."""
        state = self.__dict__.copy()
        for name in ("_native", "_pretoken_cache", "_word_cache"):
            del state[name]
        state["_native_checked"] = False
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._native = None
        self._pretoken_cache = _Cache(self._whole_token_or_bpe if self.ignore_merges else self._bpe)
        self._word_cache = _Cache(self._encode_word)

    @property
    def uses_native_core(self) -> bool:
        """Whether encoding runs in the C core (else in pure Python, with the same ids)."""
        return self._native_encoder() is not None

    def _native_encoder(self) -> _NativeEncoder | None:
        if not self._native_checked:
            self._native_checked = True
            if self.pattern in NATIVE_PATTERNS:
                library = bpe_core(self.pattern)
                if library is not None:
                    self._native = _NativeEncoder(
                        library, self.pattern, self._byte_ids, self._merge_ranks,
                        self._token_to_id if self.ignore_merges else None)
        return self._native

    # --- files -------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        vocab_filepath: str | Path,
        merges_filepath: str | Path,
        special_tokens: list[str] | None = None,
        **options,
    ) -> Tokenizer:
        """Load GPT-2 style vocab.json and merges.txt; options as for the constructor."""
        return cls(load_vocab(Path(vocab_filepath)), load_merges(Path(merges_filepath)),
                   special_tokens, **options)

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
        # directories written before these options split the GPT-2 way, with no normalization
        return cls.from_files(directory / VOCAB_FILE, directory / MERGES_FILE,
                              config.get("special_tokens", []),
                              pattern=config.get("pretokenize_pattern"),
                              normalization=config.get("normalization"),
                              ignore_merges=config.get("ignore_merges", False))

    def save(self, directory: str | Path) -> None:
        """Write vocab.json and merges.txt (GPT-2 format) and tokenizer.json (special tokens,
        split pattern, normalization, ignore_merges)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_vocab_and_merges(self.vocab, self.merges, directory / VOCAB_FILE,
                              directory / MERGES_FILE)
        config = {
            "format": "gpt2-byte-level-bpe",
            "vocab_size": self.vocab_size,
            "special_tokens": self.special_tokens,
            "special_token_ids": self._special_ids,
            "pretokenize_pattern": self.pattern,
            "normalization": self.normalization,
            "ignore_merges": self.ignore_merges,
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

    def _whole_token_or_bpe(self, pretoken: str) -> tuple[int, ...]:
        """The pre-token's own id when it is a token (no special token: those never reach BPE),
        else its BPE."""
        whole = self._token_to_id.get(pretoken.encode("utf-8"))
        return (whole,) if whole is not None else self._bpe(pretoken)

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
        """Encode text that holds no special tokens: normalized, then split into words when the
        pattern allows it."""
        if self.normalization is not None:
            text = unicodedata.normalize(self.normalization, text)
        encoder = self._native if self._native_checked else self._native_encoder()
        if encoder is not None:
            return encoder.encode(text)
        if not self._cuts_at_spaces:
            return self._encode_pretokens(text)
        return self._encode_words(text)

    def _encode_words(self, text: str) -> list[int]:
        """Encode normalized text with no special tokens word by word (see the module docstring
        for the why)."""
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
        threshold = _STREAM_BUFFER_CHARS
        for chunk in iterable:
            pending.append(chunk)
            pending_chars += len(chunk)
            if pending_chars < threshold:
                continue
            final_ids, rest = self._encode_final_prefix("".join(pending))
            yield from final_ids
            pending, pending_chars = [rest], len(rest)
            # text with no cut (one long pre-token, no special token under another pattern) is
            # looked at again only once it has doubled, so the stream stays linear in its length
            threshold = max(_STREAM_BUFFER_CHARS, 2 * len(rest))
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
        if position >= settled or not self._cuts_at_spaces:
            return ids, buffer[position:]
        # the text up to `settled` continues past it as ordinary text. A space followed by a
        # non-space character starts a pre-token whatever comes next: cut at the last one. NFC
        # never joins a space to a neighbour nor turns a non-space character into a space
        cut = settled - 1
        while True:
            cut = buffer.rfind(" ", position + 1, cut)
            if cut < 0 or not _WHITESPACE.match(buffer, cut + 1):
                break
        if cut < 0:
            # no such space (CJK text, say): all pre-tokens but the last two are final, as the
            # patterns of SPACE_CUT_PATTERNS look at most two characters past a pre-token. They
            # are encoded as found here: pre-tokenizing their text again alone could split it
            # differently ("\n\n" before "a" is two pre-tokens, at the end of a text one)
            final, consumed = self._final_pretokens(buffer[position:settled])
            ids += chain.from_iterable(map(self._pretoken_cache.__getitem__, final))
            return ids, buffer[position + consumed:]
        if cut > position:
            ids += self._encode_ordinary(buffer[position:cut])
            position = cut
        return ids, buffer[position:]

    def _final_pretokens(self, text: str) -> tuple[list[str], int]:
        """The pre-tokens of (normalized) text that more text cannot change, and how many
        characters of text they cover."""
        if self.normalization is None:
            final = self._findall(text)[:-2]
            return final, sum(map(len, final))
        normalized = unicodedata.normalize(self.normalization, text)
        final = self._findall(normalized)[:-2]
        # Cut where the normalized text equals the raw text up to its end, so that what is held
        # back stays raw text, and before a character of combining class 0: in text already in
        # NFC nothing after such a character composes or reorders with what precedes it, so
        # NFC(text + more) == normalized[:cut] + NFC(rest + more). Composing keeps a character a
        # letter, digit, space or other, so the pre-tokens before the cut stay final
        common_tail = len(normalized)
        if normalized != text:
            common_tail = next((index for index, (left, right) in enumerate(
                zip(reversed(normalized), reversed(text))) if left != right),
                min(len(normalized), len(text)))
        cut = sum(map(len, final))
        while final and (len(normalized) - cut > common_tail
                         or unicodedata.combining(normalized[cut])):
            cut -= len(final.pop())
        return final, len(text) - (len(normalized) - cut) if final else 0

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
