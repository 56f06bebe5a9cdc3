"""From tokens to batches: cached token arrays, truncated-BPTT streams, padded classification batches."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from textgen.errors import CorpusError, TrainingError
from textgen.data.tokenizer import Tokenizer

if TYPE_CHECKING:  # corpus pulls in `datasets`, which `textgen sample` and `classify TEXT` never need
    import datasets

    from textgen.data.corpus import Corpus

logger = logging.getLogger(__name__)

_CHUNK_ROWS = 10_000
_BUCKET_BATCHES = 50  # batches per length-sorted bucket: similar lengths inside, still a new mix every epoch


def smallest_uint_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds every id below `vocab_size`."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size {vocab_size} does not fit in 32 bits")


def default_cache_dir() -> Path:
    """Where token arrays are cached: $TEXTGEN_CACHE, else ~/.cache/textgen/tokens."""
    return Path(os.environ.get("TEXTGEN_CACHE") or Path.home() / ".cache" / "textgen" / "tokens").expanduser()


def token_array(corpus: Corpus, split: str, tokenizer: Tokenizer, cache_dir: str | Path | None = None,
                num_proc: int = 1) -> np.ndarray:
    """The whole token stream of `split` as one read-only memory-mapped array, tokenized once and cached on disk."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    dtype = smallest_uint_dtype(tokenizer.vocab_size)
    key = hashlib.sha256(pickle.dumps((corpus.splits[split]._fingerprint, corpus.content, split, corpus.text_column,
                                       corpus.line_rows, tokenizer.to_data()))).hexdigest()[:32]
    path = cache / f"{key}.{dtype.name}"
    if not path.exists():
        if tokenizer.kind == "char":
            from textgen.data.corpus import split_texts

            # characters encode faster than datasets can map, and need no second copy on disk
            pieces = (tokenizer.encode_counting_unknown(text)[0] for text in split_texts(corpus, split, _CHUNK_ROWS))
        else:
            pieces = _mapped_ids(corpus.splits[split], tokenizer, corpus.text_column, corpus.line_rows, num_proc,
                                 dtype)
        total, unknown = _write_atomically(path, pieces, dtype, tokenizer.unk_id)
        if not total:
            raise CorpusError(f"split {split!r} of corpus {corpus.name!r} has no tokens; give a corpus with text")
        if unknown:
            logger.warning("%d of %d tokens in split %r of %s are <unk>: characters the vocabulary lacks",
                           unknown, total, split, corpus.name)
        logger.info("tokenized split %r of %s: %d tokens, cached at %s", split, corpus.name, total, path)
    return np.memmap(path, dtype=dtype, mode="r")


def label_array(corpus: Corpus, split: str, tokenizer: Tokenizer, cache_dir: str | Path | None = None,
                num_proc: int = 1) -> np.ndarray:
    """The label id of every token of `token_array(corpus, split, tokenizer)`: 0 for a row without a
    label, i + 1 for `corpus.label_names[i]`; cached on disk beside the tokens."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    dtype = smallest_uint_dtype(len(corpus.label_names) + 1)
    column = corpus.label_column
    key = hashlib.sha256(pickle.dumps((corpus.splits[split]._fingerprint, corpus.content, split, corpus.text_column,
                                       column, corpus.line_rows, tokenizer.to_data(), "labels"))).hexdigest()[:32]
    path = cache / f"{key}.labels.{dtype.name}"
    if not path.exists():
        import pyarrow.compute as pc  # with `datasets`: only where a corpus is read

        rows = corpus.splits[split]
        counted = rows.map(_count_stream_tokens, batched=True, num_proc=num_proc,
                           remove_columns=[c for c in rows.column_names if c != column],
                           fn_kwargs={"tokenizer": tokenizer, "text_column": corpus.text_column,
                                      "line_rows": corpus.line_rows}, desc="counting tokens per label")
        table = counted.with_format("arrow")[:]
        counts = table.column("count").to_numpy()
        labels = pc.fill_null(table.column(column), -1).to_numpy().astype(np.int64)
        ids = np.where(labels >= 0, labels + 1, 0)
        pieces = (np.repeat(ids[start:start + _CHUNK_ROWS], counts[start:start + _CHUNK_ROWS])
                  for start in range(0, len(ids), _CHUNK_ROWS))
        _write_atomically(path, pieces, dtype, unk_id=-1)
    return np.memmap(path, dtype=dtype, mode="r")


def _count_stream_tokens(rows: dict, tokenizer: Tokenizer, text_column: str, line_rows: bool) -> dict:
    """A `datasets.map` function: how many tokens each row adds to the language-modelling stream."""
    from textgen.data.corpus import stream_rows

    texts = stream_rows(rows[text_column], line_rows)
    if tokenizer.kind == "char":  # one token per character
        return {"count": [len(text) for text in texts]}
    return {"count": [len(ids) for ids in tokenizer.encode_batch(texts)]}


def _encode_stream_rows(rows: dict, tokenizer: Tokenizer, text_column: str, line_rows: bool) -> dict:
    """A `datasets.map` function: the ids of each row as the language-modelling stream has it."""
    from textgen.data.corpus import stream_rows

    return {"ids": tokenizer.encode_batch(stream_rows(rows[text_column], line_rows))}


def _encode_texts(rows: dict, tokenizer: Tokenizer, text_column: str) -> dict:
    """A `datasets.map` function: the ids of each row's text as written."""
    return {"ids": tokenizer.encode_batch([text or "" for text in rows[text_column]])}


def _mapped_ids(split: datasets.Dataset, tokenizer: Tokenizer, text_column: str, line_rows: bool, num_proc: int,
                dtype: np.dtype) -> Iterator[np.ndarray]:
    """The ids of `split`'s rows in order, encoded by `datasets.map` and read back in chunks."""
    import datasets

    mapped = split.map(_encode_stream_rows, batched=True, num_proc=num_proc, remove_columns=split.column_names,
                       fn_kwargs={"tokenizer": tokenizer, "text_column": text_column, "line_rows": line_rows},
                       features=datasets.Features({"ids": datasets.Sequence(datasets.Value(dtype.name))}),
                       desc="tokenizing")
    for table in mapped.with_format("arrow").iter(batch_size=_CHUNK_ROWS):
        yield table.column("ids").combine_chunks().flatten().to_numpy()


def _write_atomically(path: Path, pieces: Iterator[np.ndarray], dtype: np.dtype, unk_id: int) -> tuple[int, int]:
    """Write `pieces` one after another to `path` via a temporary file; the token count and the unknown count.
    A full disk (or any failed write) leaves no file at `path` and raises a one-line CorpusError."""
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    total = unknown = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{path.name}.*.tmp"):
            # a writer holds a lock on its temporary file while it writes; the lock of one that was
            # killed went with it, so its half-written file can go
            with contextlib.suppress(OSError), open(stale, "rb") as old:
                fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stale.unlink()
        with open(temp, "wb") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            for ids in pieces:
                out.write(ids.astype(dtype).tobytes())
                total += len(ids)
                unknown += int(np.count_nonzero(ids == unk_id))
        if total:
            # readers see either no file or the whole array, never a partial one
            os.replace(temp, path)
    except OSError as error:
        reason = "the disk is full" if error.errno == errno.ENOSPC else error.strerror or str(error)
        raise CorpusError(f"could not write the token cache {path}: {reason}; free space or point "
                          f"TEXTGEN_CACHE at another disk") from error
    finally:
        with contextlib.suppress(OSError):  # a cache path below a file has no temporary file to remove
            temp.unlink()
    return total, unknown


class StreamBatches:
    """Truncated-BPTT batches: the token array cut into batch_size contiguous streams (per rank under DDP),
    read in windows of seq_len."""

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1,
                 labels: np.ndarray | None = None) -> None:
        if labels is not None and len(labels) != len(tokens):
            raise ValueError(f"{len(labels)} labels for {len(tokens)} tokens")
        self.labels = labels  # each token's label id, for a conditioned model
        streams = batch_size * world_size
        needed = streams * seq_len + 1
        if len(tokens) < needed:
            raise TrainingError(f"the corpus has {len(tokens)} tokens but one window of --batch-size {batch_size} x "
                                f"--seq-len {seq_len} on {world_size} process(es) needs {needed}; "
                                "lower --batch-size or --seq-len")
        self.tokens = tokens
        self.batch_size = batch_size
        self.seq_len = seq_len
        stream_len = self._stream_len = (len(tokens) - 1) // streams
        self.windows_per_epoch = stream_len // seq_len
        self.tokens_per_window = batch_size * seq_len
        self._stream_starts = (rank * batch_size + np.arange(batch_size)) * stream_len

    def evaluation_windows(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every window of an epoch, then a shorter one with the rest of each stream, so that an
        evaluation covers the whole split (but for the under batch_size tokens no stream holds)."""
        for positions in self._evaluation_positions():
            chunk = torch.from_numpy(self.tokens[positions].astype(np.int64))
            yield chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    def evaluation_labels(self) -> Iterator[torch.Tensor]:
        """The label ids (batch, window) that go with each of `evaluation_windows`' inputs."""
        for positions in self._evaluation_positions():
            yield self._labels_at(positions)

    def _evaluation_positions(self) -> Iterator[np.ndarray]:
        for index in range(self.windows_per_epoch):
            yield self._positions(index)
        rest = self._stream_len - self.windows_per_epoch * self.seq_len
        if rest:
            yield self._stream_starts[:, None] + self.windows_per_epoch * self.seq_len + np.arange(rest + 1)

    def _positions(self, index: int) -> np.ndarray:
        if not 0 <= index < self.windows_per_epoch:
            raise IndexError(f"window {index} is outside 0..{self.windows_per_epoch - 1}")
        return self._stream_starts[:, None] + index * self.seq_len + np.arange(self.seq_len + 1)

    def _labels_at(self, positions: np.ndarray) -> torch.Tensor:
        # an input is read under the label of the token it predicts, as generation reads the
        # priming newline under the label of the text to come
        return torch.from_numpy(self.labels[positions[:, 1:]].astype(np.int64))

    def window(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), both int64 (batch, seq_len): window `index` of every stream, targets one token ahead."""
        chunk = torch.from_numpy(self.tokens[self._positions(index)].astype(np.int64))  # (batch, seq_len + 1)
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    def window_labels(self, index: int) -> torch.Tensor:
        """The label ids (batch, seq_len) that go with window `index`'s inputs."""
        return self._labels_at(self._positions(index))


def cut_to(ids: np.ndarray, max_len: int | None, long_text: str) -> np.ndarray:
    """`ids` as a classifier reads them (`ClassifierConfig.long_text`): their last `max_len` for
    "tail", their first for "truncate" and "chunk" (training reads one chunk), all of them for
    "whole" or no `max_len`."""
    if max_len is None or long_text == "whole" or len(ids) <= max_len:
        return ids
    return ids[-max_len:] if long_text == "tail" else ids[:max_len]


class LabelledBatches:
    """Classification batches: length-bucketed, padded, with lengths for packed sequences."""

    def __init__(self, ids: list[np.ndarray], labels: np.ndarray, batch_size: int, pad_id: int,
                 max_len: int | None = None, shuffle: bool = True, seed: int = 0, long_text: str = "truncate") -> None:
        if len(ids) != len(labels):
            raise ValueError(f"{len(ids)} rows of ids but {len(labels)} labels")
        self.ids = [cut_to(row, max_len, long_text) for row in ids]
        # an empty text still gets one (padding) step, as packed sequences need length >= 1
        self.lengths = np.array([max(1, len(row)) for row in self.ids], dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-len(self.ids) // self.batch_size)

    def batch_rows(self, epoch: int) -> list[np.ndarray]:
        """The row indices of each batch of `epoch`: shuffled and length-bucketed, or sorted by length
        (the same every time, and little padding) when not shuffling."""
        count = len(self.ids)
        if not self.shuffle:
            return np.split(np.argsort(self.lengths, kind="stable"), range(self.batch_size, count, self.batch_size))
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(count)
        bucket = self.batch_size * _BUCKET_BATCHES
        order = np.concatenate([rows[np.argsort(self.lengths[rows], kind="stable")]
                                for rows in np.split(order, range(bucket, count, bucket))])
        batches = np.split(order, range(self.batch_size, count, self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def epoch(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(ids (batch, time) int64 padded, lengths (batch,) int64, labels (batch,) int64) for each batch of `epoch`."""
        return [self.batch(rows) for rows in self.batch_rows(epoch)]

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids (rows, time) int64 padded, lengths, labels) of the texts `rows`."""
        lengths = self.lengths[rows]
        padded = np.full((len(rows), lengths.max()), self.pad_id, dtype=np.int64)
        for line, row in enumerate(rows):
            padded[line, :len(self.ids[row])] = self.ids[row]
        return torch.from_numpy(padded), torch.from_numpy(lengths), torch.from_numpy(self.labels[rows])


def encode_labelled(corpus: Corpus, split: str, tokenizer: Tokenizer,
                    num_proc: int = 1) -> tuple[list[np.ndarray], np.ndarray]:
    """The ids of each row of `split` (int64 arrays) and the rows' labels (int64)."""
    rows = corpus.splits[split]
    mapped = rows.map(_encode_texts, batched=True, num_proc=num_proc,
                      remove_columns=[c for c in rows.column_names if c != corpus.label_column],
                      fn_kwargs={"tokenizer": tokenizer, "text_column": corpus.text_column},
                      desc="tokenizing")
    table = mapped.with_format("arrow")[:]
    ids = table.column("ids").combine_chunks()
    offsets = ids.offsets.to_numpy()
    values = ids.flatten().to_numpy(zero_copy_only=False).astype(np.int64)  # all texts empty: a null array
    unknown = int(np.count_nonzero(values == tokenizer.unk_id))
    if unknown:
        logger.warning("%d tokens in split %r of %s are <unk>: characters the vocabulary lacks",
                       unknown, split, corpus.name)
    labels = table.column(corpus.label_column).to_numpy().astype(np.int64)
    return np.split(values, offsets[1:-1] - offsets[0]), labels
