"""Sample report: how much of a generated text a model recited verbatim from its training text, and
how much the text repeats itself.

A model fine-tuned on a small text can learn to recite it. `CopyIndex` holds a suffix array of the
training text, so that for each position of a sample the longest span starting there that also
occurs in the training text is a binary search away (matching statistics). A sample can also loop
on its own words: the report gives the longest span it holds twice, and its share of distinct
4-grams beside that of stretches of the training text as long as the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textgen.config import DataConfig, from_dict
from textgen.data.corpus import language_model_split, load_corpus, split_texts
from textgen.errors import ConfigError

# spans at least this long count as copied: shorter ones are common phrases any writer repeats
COPIED_SPAN = 50


# the n of the distinct n-gram shares: long enough that a loop shows, short enough to count on a short text
DISTINCT_N = 4
TRAINING_STRETCHES = 16  # stretches of the training text whose distinct n-gram shares are averaged


def _ranks(text: str) -> np.ndarray:
    """`text`'s characters as dense ranks that keep their order, one byte each for most texts."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    present = np.bincount(codes) > 0
    return (np.cumsum(present) - 1)[codes].astype(np.uint8 if present.sum() <= 256 else np.int32)


def suffix_array(text: str) -> np.ndarray:
    """The start positions of `text`'s suffixes in sorted order (libdivsufsort)."""
    from pydivsufsort import divsufsort

    if not text:
        return np.zeros(0, dtype=np.int64)
    return divsufsort(_ranks(text)).astype(np.int64)


def longest_repeat(text: str) -> tuple[int, int]:
    """The length of the longest span that occurs twice in `text` (the two may overlap: a run of 51
    dashes holds 50 twice), and where the earlier of two of its places starts (0 when none)."""
    from pydivsufsort import divsufsort, kasai

    if len(text) < 2:
        return 0, 0
    ranks = _ranks(text)
    suffixes = divsufsort(ranks)
    shared = kasai(ranks, suffixes)[:-1]  # with the next suffix in sorted order
    best = int(shared.argmax())
    return int(shared[best]), int(min(suffixes[best], suffixes[best + 1]))


def distinct_share(text: str, n: int = DISTINCT_N) -> float:
    """Distinct n-grams of `text` over all its n-grams (1 for a text shorter than n): a text that
    loops holds few distinct ones."""
    count = len(text) - n + 1
    return len({text[i:i + n] for i in range(count)}) / count if count > 0 else 1.0


@dataclass
class SampleReport:
    """What a sample shares verbatim with the training text, and how much it repeats itself."""

    longest: int  # characters in the longest span of the sample found in the training text
    longest_text: str
    copied_chars: int  # sampled characters inside copied spans of COPIED_SPAN or more
    chars: int
    longest_repeat: int  # characters in the longest span the sample holds twice
    longest_repeat_text: str
    distinct: float  # the sample's distinct DISTINCT_N-gram share
    training_distinct: float  # the mean of that share over stretches of the training text as long

    @property
    def copied_share(self) -> float:
        return self.copied_chars / self.chars if self.chars else 0.0

    def fields(self) -> dict:
        """The report as JSON fields."""
        return {"longest_copied": self.longest, "copied_share": self.copied_share,
                "longest_repeat": self.longest_repeat, f"distinct_{DISTINCT_N}": round(self.distinct, 4),
                f"training_distinct_{DISTINCT_N}": round(self.training_distinct, 4)}

    def summary(self) -> str:
        """The report in one line."""
        copied = f" ({self.longest_text[:60]!r})" if self.longest else ""
        repeated = f" ({self.longest_repeat_text[:60]!r})" if self.longest_repeat else ""
        return (f"longest span found in the training text {self.longest} characters{copied}; "
                f"{100 * self.copied_share:.1f}% of its {self.chars} characters lie in copied spans of "
                f"{COPIED_SPAN} or more; longest span it repeats itself {self.longest_repeat} characters{repeated}; "
                f"distinct {DISTINCT_N}-grams {100 * self.distinct:.1f}% (the training text's, as long: "
                f"{100 * self.training_distinct:.1f}%)")


class CopyIndex:
    """A training text indexed for copy checks."""

    def __init__(self, text: str):
        self.text = text
        self.suffixes = suffix_array(text)
        self._distinct: dict[int, float] = {}  # stretch length -> the training text's distinct share

    def training_distinct(self, length: int) -> float:
        """The mean distinct n-gram share of TRAINING_STRETCHES stretches of `length` characters spread
        evenly over the training text (the whole text where it is shorter)."""
        if length not in self._distinct:
            last = max(0, len(self.text) - length)
            starts = sorted({last * i // max(1, TRAINING_STRETCHES - 1) for i in range(TRAINING_STRETCHES)})
            self._distinct[length] = float(np.mean([distinct_share(self.text[start:start + length])
                                                    for start in starts]))
        return self._distinct[length]

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

    def check(self, sample: str, span: int = COPIED_SPAN) -> SampleReport:
        """The longest verbatim span of `sample`, how many of its characters lie in copied spans, the
        longest span it repeats and its distinct n-grams beside the training text's."""
        lengths = self.matching_lengths(sample)
        copied = np.zeros(len(sample) + 1, dtype=np.int64)
        for position in np.flatnonzero(lengths >= span):
            copied[position] += 1
            copied[position + lengths[position]] -= 1
        best = int(lengths.argmax()) if len(lengths) else 0
        longest = int(lengths[best]) if len(lengths) else 0
        repeat, start = longest_repeat(sample)
        return SampleReport(longest, sample[best:best + longest], int(np.count_nonzero(np.cumsum(copied)[:-1])),
                            len(sample), repeat, sample[start:start + repeat], distinct_share(sample),
                            self.training_distinct(len(sample)))
