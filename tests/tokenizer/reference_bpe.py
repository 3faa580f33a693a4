"""A straightforward BPE trainer, the reference the fast one must match merge for merge."""

from collections import Counter

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def reference_train_bpe(text: str, vocab_size: int, special_tokens: list[str]):
    """Full recount of pair frequencies after every merge; ties to the greater byte pair."""
    pieces = [text]
    if special_tokens:
        pieces = regex.split("|".join(regex.escape(token) for token in special_tokens), text)
    words: Counter = Counter()
    for piece in pieces:
        for pretoken in regex.findall(GPT2_PATTERN, piece):
            words[tuple(bytes([byte]) for byte in pretoken.encode("utf-8"))] += 1
    merges = []
    while 256 + len(special_tokens) + len(merges) < vocab_size:
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        merged_words: Counter = Counter()
        for word, count in words.items():
            out, index = [], 0
            while index < len(word):
                if index + 1 < len(word) and (word[index], word[index + 1]) == best:
                    out.append(word[index] + word[index + 1])
                    index += 2
                else:
                    out.append(word[index])
                    index += 1
            merged_words[tuple(out)] += count
        words = merged_words
    return merges
