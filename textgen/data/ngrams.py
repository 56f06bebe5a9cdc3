"""Hashed word n-grams: the sparse, bag-of-words input of a classifier beside its recurrent encoder.

A text's lower-cased words (and punctuation marks) and their n-grams up to `max_n`, and optionally
each word's character 3- to `max_chars`-grams (fastText's subwords: "dullness" shares "<du", "dull"
and four more with "dull"), optionally with the words after a negation marked as negated ("not bad"
-> "not", "¬bad"), each hashed into one of `buckets` rows (fastText's hashing trick),
counted once per text (NB-SVM's binarized features). Words are hashed with CRC-32 of their UTF-8
bytes and n-grams combined with fixed 64-bit arithmetic, never Python's `hash()`, which changes
from one process to the next: a text lands in the same buckets in every process, on every machine.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Iterable

import numpy as np
import torch

from textgen.data.tokenizer import text_slices

WORD = re.compile(r"\w+|[^\w\s]")
_ORDER_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: folds one more word into an n-gram
_FINAL_MULTIPLIER = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's: spreads the bits before the modulo


# Das and Chen's negation scope (as in Pang et al. 2002): the words after one of these, up to the next
# punctuation mark or contrast, are marked with a character that no word holds
NEGATIONS = frozenset({"not", "no", "never", "nothing", "nobody", "none", "nor", "neither", "cannot", "without",
                       "hardly"})
SCOPE_ENDS = frozenset({".", ",", "!", "?", ";", ":", "(", ")", "but", "however", "although", "though"})
NEGATED = "\u00ac"  # ¬, a symbol: WORD splits it off, so no word of a text starts with it
UNBOUNDED = 1 << 62  # words left in a scope that only punctuation ends


def words(text: str) -> list[str]:
    """The lower-cased words and punctuation marks of `text`, in order."""
    return WORD.findall(text.lower())


def negate_scopes(tokens: list[str], scope_left: int = 0, before: str = "", max_words: int = 0
                  ) -> tuple[list[str], int]:
    """`tokens` with each word in a negation's scope marked ("n't" splits as "'", "t"): "not bad at all"
    -> "not ¬bad ¬at ¬all", so that "bad" counts for a negative text only where it is not negated; a
    scope ends at the next punctuation mark or contrast, or after `max_words` words (0: no limit).
    Returns the words still to mark at the end (0: no scope open). `scope_left` and `before` (the
    token before the first) carry a scope over from an earlier slice of the same text."""
    marked = []
    for index, token in enumerate(tokens):
        if token in SCOPE_ENDS:
            scope_left = 0
            marked.append(token)
            continue
        marked.append(NEGATED + token if scope_left else token)
        scope_left = max(scope_left - 1, 0)
        previous = tokens[index - 1] if index else before
        if token in NEGATIONS or (token == "t" and previous in ("'", "\u2019")):
            scope_left = max_words or UNBOUNDED
    return marked, scope_left


def word_hash(word: str) -> int:
    """CRC-32 of the word's UTF-8 bytes (lone surrogates kept, so any str hashes)."""
    return zlib.crc32(word.encode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=1 << 18)
def subword_hashes(word: str, max_chars: int) -> np.ndarray:
    """CRC-32s of the character 3..max_chars-grams of `word` marked at both ends ("<dull>": "<du",
    "ull>", ...), each after a NUL, which no word of two or more characters holds, so that no
    subword hashes as a word does."""
    marked = f"<{word}>"
    pieces = [marked[start:start + n] for n in range(3, max_chars + 1) for start in range(len(marked) - n + 1)]
    return np.fromiter((word_hash("\0" + piece) for piece in pieces), dtype=np.uint64, count=len(pieces))


def ngram_buckets(text: str, buckets: int, max_n: int, max_chars: int = 0, negation: bool = False,
                  negation_words: int = 0, negation_sign: bool = False) -> np.ndarray:
    """The distinct buckets (int64, sorted) of the word 1..max_n-grams of `text`, and of its words'
    character 3..max_chars-grams (0: none), with negation scopes marked if `negation` (a negated word
    then has no subwords: they would carry its plain meaning), each at most `negation_words` long (0:
    to the next punctuation mark); empty when it has no words. With `negation_sign`, a negated word's
    own word and subword buckets count against it instead, each held as -(bucket + 1) (`signed_ids`):
    "not bad" reads as minus "bad". A long text is read a slice at a time (`text_slices`), its n-grams
    and scopes carried across the cuts."""
    found, carried, scope_left, last = [], [], 0, ""
    for piece in text_slices(text):
        tokens = words(piece)
        if not tokens:
            continue
        raw_last = tokens[-1]
        if negation:
            tokens, scope_left = negate_scopes(tokens, scope_left, last, negation_words)
        found.append(_slice_buckets(carried, tokens, buckets, max_n, max_chars, negation_sign))
        carried, last = (carried + tokens)[-(max_n - 1):] if max_n > 1 else [], raw_last
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def _slice_buckets(carried: list[str], tokens: list[str], buckets: int, max_n: int, max_chars: int,
                   negation_sign: bool = False) -> np.ndarray:
    """The distinct buckets of the n-grams that end in `tokens`, read after the `carried` words that
    ended the slice before (their own unigrams are counted again: harmless in a set); with
    `negation_sign`, a negated word's own buckets as -(bucket + 1) in place of its marked unigram."""
    tokens = carried + tokens
    hashes = np.fromiter(map(word_hash, tokens), dtype=np.uint64)
    negated = [token[1:] for token in tokens if token.startswith(NEGATED)] if negation_sign else []
    unigrams = hashes[[not token.startswith(NEGATED) for token in tokens]] if negated else hashes
    parts, grams = [unigrams], hashes
    if max_chars >= 3:
        parts += [subword_hashes(token, max_chars) for token in set(tokens) if not token.startswith(NEGATED)]
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        for n in range(2, max_n + 1):
            grams = (grams[:-1] * _ORDER_MULTIPLIER) ^ (hashes[n - 1:] + np.uint64(n))
            parts.append(grams)
    found = np.unique(_bucket_of(np.concatenate(parts), buckets))
    if not negated:
        return found
    against = [np.fromiter(map(word_hash, negated), dtype=np.uint64)]
    against += [subword_hashes(word, max_chars) for word in set(negated)] if max_chars >= 3 else []
    return np.concatenate([found, -1 - np.unique(_bucket_of(np.concatenate(against), buckets))])


def _bucket_of(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Each hash's bucket (int64), its bits spread first (splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        mixed = (hashes ^ (hashes >> np.uint64(29))) * _FINAL_MULTIPLIER
        mixed ^= mixed >> np.uint64(32)
    return (mixed % np.uint64(buckets)).astype(np.int64)


def signed_ids(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Bucket ids with a negated word's -(bucket + 1) turned back into its bucket, and each id's sign
    (None when every id counts for itself)."""
    if not bool((ids < 0).any()):
        return ids, None
    negative = ids < 0
    return torch.where(negative, -1 - ids, ids), torch.where(negative, -1.0, 1.0)


def pack_bags(bags: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(the bucket ids of `bags`, one after another; offsets where each bag starts): the input of
    `nn.EmbeddingBag`."""
    offsets = np.cumsum([0] + [len(bag) for bag in bags[:-1]]) if bags else np.zeros(0)
    ids = np.concatenate(bags) if bags else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(ids), torch.from_numpy(offsets.astype(np.int64))


def ngram_bags(texts: Iterable[str], buckets: int, max_n: int, max_chars: int = 0, negation: bool = False,
               negation_sign: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`pack_bags` of the texts' `ngram_buckets`."""
    return pack_bags([ngram_buckets(text, buckets, max_n, max_chars, negation, negation_sign=negation_sign)
                      for text in texts])
