"""Copy check: how much of a generated text a model recited verbatim from its training text.

A model fine-tuned on a small text can learn to recite it. `CopyIndex` holds a suffix array of the
training text, so that for each position of a sample the longest span starting there that also
occurs in the training text is a binary search away (matching statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textgen.config import DataConfig, from_dict
from textgen.data.corpus import language_model_split, load_corpus, split_texts
from textgen.errors import ConfigError

# spans at least this long count as copied: shorter ones are common phrases any writer repeats
COPIED_SPAN = 50


def suffix_array(text: str) -> np.ndarray:
    """The start positions of `text`'s suffixes in sorted order (libdivsufsort)."""
    from pydivsufsort import divsufsort

    if not text:
        return np.zeros(0, dtype=np.int64)
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    # dense ranks of the characters keep their order and fit one byte for most texts
    present = np.bincount(codes) > 0
    ranks = (np.cumsum(present) - 1)[codes]
    return divsufsort(ranks.astype(np.uint8 if present.sum() <= 256 else np.int32)).astype(np.int64)


@dataclass
class CopyReport:
    """What a sample shares verbatim with the training text."""

    longest: int  # characters in the longest span of the sample found in the training text
    longest_text: str
    copied_chars: int  # sampled characters inside copied spans of COPIED_SPAN or more
    chars: int

    @property
    def copied_share(self) -> float:
        return self.copied_chars / self.chars if self.chars else 0.0


class CopyIndex:
    """A training text indexed for copy checks."""

    def __init__(self, text: str):
        self.text = text
        self.suffixes = suffix_array(text)

    @classmethod
    def of_training_text(cls, corpus: str = "", trained_on: dict | None = None, data_dir: str | None = None,
                         model: str = "the model") -> CopyIndex:
        """The index of `corpus`'s training text, or (`corpus` '') of the text a model read, as its
        saved data config `trained_on` says."""
        if corpus:  # a text named to check against: all of it, not the part a model would train on
            loaded = load_corpus(DataConfig(corpus=corpus, data_dir=data_dir), task="lm")
            return cls("\n".join("".join(split_texts(loaded, split)) for split in loaded.splits))
        if not trained_on:
            raise ConfigError(f"{model} does not say what it was trained on; name the text: --check-copy CORPUS")
        data = from_dict(DataConfig, {**trained_on, **({"data_dir": data_dir} if data_dir else {})})
        loaded = load_corpus(data, task="lm")
        return cls("".join(split_texts(loaded, language_model_split(loaded, data.lm_splits))))

    def _common_prefix(self, start: int, sample: str, position: int) -> int:
        """Characters that text[start:] and sample[position:] share at their beginnings."""
        limit = min(len(self.text) - start, len(sample) - position)
        shared, step = 0, 16
        while shared < limit:  # compare a block at a time, then character by character within it
            end = min(shared + step, limit)
            if self.text[start + shared:start + end] == sample[position + shared:position + end]:
                shared, step = end, step * 2
            elif step > 1:
                step = max(1, step // 4)
            else:
                break
        return shared

    def matching_lengths(self, sample: str) -> np.ndarray:
        """For each position of `sample`, the length of the longest span starting there that occurs in
        the training text."""
        lengths = np.zeros(len(sample), dtype=np.int64)
        text, suffixes = self.text, self.suffixes
        if not len(suffixes):
            return lengths
        for position in range(len(sample)):
            rest = sample[position:]
            low, high = 0, len(suffixes)
            while low < high:  # the first suffix not below `rest`
                middle = (low + high) // 2
                start = int(suffixes[middle])
                if text[start:start + len(rest)] < rest:
                    low = middle + 1
                else:
                    high = middle
            # the longest match is with one of the two suffixes beside where `rest` would sort
            lengths[position] = max(self._common_prefix(int(suffixes[index]), sample, position)
                                    for index in (low - 1, low) if 0 <= index < len(suffixes))
        return lengths

    def check(self, sample: str, span: int = COPIED_SPAN) -> CopyReport:
        """The longest verbatim span of `sample` and how many of its characters lie in copied spans."""
        lengths = self.matching_lengths(sample)
        copied = np.zeros(len(sample) + 1, dtype=np.int64)
        for position in np.flatnonzero(lengths >= span):
            copied[position] += 1
            copied[position + lengths[position]] -= 1
        best = int(lengths.argmax()) if len(lengths) else 0
        longest = int(lengths[best]) if len(lengths) else 0
        return CopyReport(longest, sample[best:best + longest], int(np.count_nonzero(np.cumsum(copied)[:-1])),
                          len(sample))
