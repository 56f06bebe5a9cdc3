"""Tokenizers: one id per character, or SentencePiece subwords; both save to and load from plain data.

Both reserve id 0 for padding and id 1 for unknown text, so batches and models treat them alike.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from textgen.config import DataConfig
from textgen.errors import TokenizerError

if TYPE_CHECKING:  # imported where a subword tokenizer is trained or used, not for characters
    import sentencepiece

logger = logging.getLogger(__name__)

PAD_ID = 0
UNK_ID = 1
_SURROGATES = "surrogatepass"  # lets any Python str, even with lone surrogates, become code points and back


class Tokenizer(Protocol):
    """Turns text into a 1-D array of ids and back."""

    kind: str
    vocab_size: int
    pad_id: int
    unk_id: int

    def encode(self, text: str) -> np.ndarray: ...

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...

    def to_data(self) -> dict: ...


def _code_points(text: str) -> np.ndarray:
    if text.isascii():
        # isascii() is O(1) in CPython and ASCII encodes ~15x faster than UTF-32
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", _SURROGATES), dtype=np.uint32)


def start_token(tokenizer: Tokenizer) -> int:
    """The id that primes the model before any text: newline if the vocabulary has it, else padding."""
    ids = tokenizer.encode_batch(["\n"])[0]
    return int(ids[0]) if len(ids) == 1 and ids[0] != tokenizer.unk_id else tokenizer.pad_id


SLICE_CHARS = 1 << 20  # a text longer than this is read a slice at a time (`text_slices`)


def text_slices(text: str, size: int | None = None) -> Iterator[str]:
    """`text` in consecutive slices of about `size` (SLICE_CHARS) characters, each cut at a `word_gap`:
    encoding or bagging the slices gives what the whole text gives, in a slice's memory."""
    size, start = size or SLICE_CHARS, 0
    while len(text) - start > size:
        cut = word_gap(text, start + size, start + 2 * size)
        yield text[start:cut]
        start = cut
    yield text[start:]


def word_gap(text: str, low: int, high: int, last: bool = False) -> int:
    """The first (or `last`) place in text[low:high] just after a newline or just before a space that
    follows a non-space, where neither tokenizer nor the word n-grams join the two sides (SentencePiece
    pieces never span a newline and start at a space); `high` when there is none."""
    newline = text.rfind("\n", low, high) if last else text.find("\n", low, high)
    if newline >= 0:
        return newline + 1
    gaps = _WORD_GAP.finditer(text, low, high)
    found = next(gaps, None)
    if last:
        for found in gaps:
            pass
    return found.start() + 1 if found else high


_WORD_GAP = re.compile(r"\S(?= )")
MAX_PIECE_CHARS = 16  # SentencePiece's longest piece (max_sentencepiece_length); one for characters


def encode_long(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """`tokenizer.encode(text)` a slice at a time, so that a text of any length costs its ids (int32)
    and one slice's working memory, not lists of Python ints as long as the text."""
    if len(text) <= SLICE_CHARS:
        return tokenizer.encode(text)
    return np.concatenate([tokenizer.encode(piece).astype(np.int32) for piece in text_slices(text)])


class _ReservedIds:
    """The ids every tokenizer reserves: padding and unknown text."""

    pad_id = PAD_ID
    unk_id = UNK_ID


class CharTokenizer(_ReservedIds):
    """One id per distinct character of the training text, after pad (0) and unknown (1)."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.vocab_size = len(chars) + 2
        # id -> code point; pad is dropped when decoding, unknown decodes to the replacement character
        self._id_to_code_point = np.concatenate([[0, ord("\ufffd")], _code_points(chars)]).astype(np.uint32)
        self._lookup: np.ndarray | None = None

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """A tokenizer whose vocabulary is the sorted distinct characters of `texts`."""
        seen = np.zeros(0, dtype=np.uint32)
        for text in texts:
            seen = np.union1d(seen, np.unique(_code_points(text)).astype(np.uint32))
        if not len(seen):
            raise TokenizerError("the training text is empty, so there is no character vocabulary; "
                                 "give a corpus with text")
        return cls(seen.astype("<u4").tobytes().decode("utf-32-le", _SURROGATES))

    def extended(self, chars: str) -> CharTokenizer:
        """This vocabulary with those of `chars` it lacks appended in sorted order; existing ids keep their places."""
        known = set(self.chars)
        return CharTokenizer(self.chars + "".join(sorted(set(chars) - known)))

    def _ids(self, code_points: np.ndarray) -> np.ndarray:
        if self._lookup is None:
            # code point -> id up to the largest known one; the extra last slot catches every larger code point
            self._lookup = np.full(int(self._id_to_code_point[2:].max()) + 2, UNK_ID, dtype=np.int64)
            self._lookup[self._id_to_code_point[2:]] = np.arange(2, self.vocab_size)
        return self._lookup[np.minimum(code_points, np.uint32(len(self._lookup) - 1))]

    def encode_counting_unknown(self, text: str) -> tuple[np.ndarray, int]:
        """The ids of `text` and how many of its characters are not in the vocabulary."""
        ids = self._ids(_code_points(text))
        return ids, int(np.count_nonzero(ids == UNK_ID))

    def encode(self, text: str) -> np.ndarray:
        """The ids of `text` (int64); characters outside the vocabulary become unk_id, with a warning."""
        ids, unknown = self.encode_counting_unknown(text)
        if unknown:
            examples = sorted({text[i] for i in np.flatnonzero(ids == UNK_ID)[:1000]})[:5]
            logger.warning("%d characters are not in the vocabulary and became <unk>, e.g. %s", unknown,
                           ", ".join(map(repr, examples)))
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """The ids of each of `texts` as plain lists (what datasets.map stores fastest); unknowns silently unk_id."""
        ids = self._ids(_code_points("".join(texts))).tolist()
        ends = np.cumsum([len(text) for text in texts]).tolist()
        return [ids[start:end] for start, end in zip([0, *ends], ends)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of `ids`; padding decodes to nothing and unknown to U+FFFD."""
        ids = np.asarray(ids, dtype=np.int64)
        code_points = self._id_to_code_point[ids[ids != PAD_ID]]
        return code_points.astype("<u4").tobytes().decode("utf-32-le", _SURROGATES)

    def to_data(self) -> dict:
        """Plain data that `tokenizer_from_data` rebuilds this tokenizer from."""
        return {"kind": self.kind, "chars": self.chars}

    def __getstate__(self) -> dict:
        # the lookup table is rebuilt on demand rather than pickled to worker processes
        return {**self.__dict__, "_lookup": None}


class SentencePieceTokenizer(_ReservedIds):
    """SentencePiece subwords that reproduce any text exactly: identity normalisation, byte fallback."""

    kind = "sentencepiece"

    def __init__(self, model: bytes) -> None:
        self.model = model
        self._processor: sentencepiece.SentencePieceProcessor | None = None
        self.vocab_size = self.processor.get_piece_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "unigram") -> SentencePieceTokenizer:
        """A tokenizer of `vocab_size` pieces trained on `texts` with SentencePiece's `model_type` algorithm."""
        import sentencepiece

        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=_training_sentences(texts), model_writer=model, model_type=model_type,
                vocab_size=vocab_size, byte_fallback=True,
                # keep every character and space as written so decode(encode(text)) == text
                normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
                allow_whitespace_only_pieces=True, user_defined_symbols=["\n"],
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1, eos_id=-1,
                # a sample of lines is enough to choose pieces and keeps training time flat on big corpora
                input_sentence_size=1_000_000, shuffle_input_sentence=True, minloglevel=2,
            )
        except RuntimeError as error:
            too_high = re.search(r"<= (\d+)", str(error))
            if too_high:
                raise TokenizerError(f"--vocab-size {vocab_size} is more than this training text supports for "
                                     f"{model_type} (at most {too_high.group(1)}); lower --vocab-size") from error
            too_low = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))
            if too_low:
                raise TokenizerError(f"--vocab-size {vocab_size} is too small to hold this text's characters and the "
                                     f"256 byte pieces (at least {too_low.group(1)}); raise --vocab-size") from error
            if "empty" in str(error).lower() or "no sentences" in str(error).lower():
                raise TokenizerError("the training text is empty, so SentencePiece cannot train; "
                                     "give a corpus with text") from error
            if "all_chars_count" in str(error):  # e.g. only NUL bytes, which SentencePiece drops
                raise TokenizerError("the training text has no character SentencePiece can learn from; give a "
                                     "corpus with text, or use --tokenizer char") from error
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TokenizerError(f"SentencePiece could not train on this text ({reason.strip()}); "
                                 f"try --tokenizer char") from error
        return cls(model.getvalue())

    @property
    def processor(self) -> sentencepiece.SentencePieceProcessor:
        """The SentencePiece processor, built from the model bytes on first use (so pickles stay small)."""
        if self._processor is None:
            import sentencepiece

            self._processor = sentencepiece.SentencePieceProcessor(model_proto=self.model)
        return self._processor

    def encode(self, text: str) -> np.ndarray:
        """The ids of `text` (int64)."""
        return np.asarray(self.processor.encode(text), dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """The ids of each of `texts` as plain lists (what datasets.map stores fastest)."""
        # one thread: parallelism comes from datasets.map(num_proc), and threads on top only contend for cores
        return self.processor.encode(texts, num_threads=1)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of `ids`; padding decodes to nothing."""
        return self.processor.decode(np.asarray(ids, dtype=np.int64).tolist())

    def to_data(self) -> dict:
        """Plain data that `tokenizer_from_data` rebuilds this tokenizer from."""
        return {"kind": self.kind, "model": self.model}

    def __getstate__(self) -> dict:
        # SentencePieceProcessor does not pickle; workers rebuild it from the bytes
        return {**self.__dict__, "_processor": None}


def _training_sentences(texts: Iterable[str], max_chars: int = 2048) -> Iterator[str]:
    """Lines of `texts`, long ones cut, since SentencePiece skips sentences over 4192 bytes."""
    for text in texts:
        for line in text.splitlines(keepends=True):
            for start in range(0, len(line), max_chars):
                yield line[start:start + max_chars]


def build_tokenizer(config: DataConfig, texts: Iterable[str]) -> Tokenizer:
    """The tokenizer `config` asks for, trained on `texts` (the training split's text pieces)."""
    if config.tokenizer == "char":
        return CharTokenizer.from_texts(texts)
    return SentencePieceTokenizer.train(texts, config.vocab_size, config.sentencepiece_model)


def tokenizer_from_data(data: dict) -> Tokenizer:
    """The tokenizer that `to_data` saved as `data`."""
    kind = data.get("kind")
    if kind == CharTokenizer.kind:
        return CharTokenizer(data["chars"])
    if kind == SentencePieceTokenizer.kind:
        return SentencePieceTokenizer(data["model"])
    raise TokenizerError(f"saved tokenizer kind {kind!r} is unknown (expected 'char' or 'sentencepiece'); "
                         "the checkpoint is from another program or a newer textgen")
