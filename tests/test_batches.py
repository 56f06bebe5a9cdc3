"""Specifications of token arrays, truncated-BPTT streams and padded classification batches."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

import textgen.data.corpus
from textgen.data.batches import (LabelledBatches, StreamBatches, cut_to, encode_labelled, smallest_uint_dtype, token_array)
from textgen.config import DataConfig
from textgen.data.corpus import Corpus, load_corpus, split_texts
from textgen.errors import CorpusError, TrainingError
from textgen.data.tokenizer import CharTokenizer, SentencePieceTokenizer

DOCUMENT = "".join(f"Line {i}: the cat sat on the mat, ünïcödé ✓\n" for i in range(200))


@pytest.fixture
def text_corpus(write_file) -> Corpus:
    return load_corpus(DataConfig(corpus=str(write_file("doc.txt", DOCUMENT))))


def test_smallest_uint_dtype_fits_every_id_below_the_vocabulary_size():
    assert smallest_uint_dtype(256) == np.uint8
    assert smallest_uint_dtype(257) == np.uint16
    assert smallest_uint_dtype(65_536) == np.uint16
    assert smallest_uint_dtype(65_537) == np.uint32


def test_token_array_is_a_read_only_memmap_of_the_encoded_stream(text_corpus, tmp_path):
    tokenizer = CharTokenizer.from_texts(split_texts(text_corpus, "train"))
    tokens = token_array(text_corpus, "train", tokenizer, cache_dir=tmp_path / "cache")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint8
    assert tokens.tolist() == tokenizer.encode("".join(split_texts(text_corpus, "train"))).tolist()
    with pytest.raises(ValueError, match="read-only"):
        tokens[0] = 0


def test_token_array_is_read_from_the_cache_the_second_time(text_corpus, tmp_path, monkeypatch):
    tokenizer = CharTokenizer.from_texts(split_texts(text_corpus, "train"))
    first = token_array(text_corpus, "validation", tokenizer, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(textgen.data.corpus, "split_texts", lambda *args: pytest.fail("tokenized twice"))
    second = token_array(text_corpus, "validation", tokenizer, cache_dir=tmp_path / "cache")
    assert second.filename == first.filename and second.tolist() == first.tolist()
    assert list((tmp_path / "cache").iterdir()) == [Path(first.filename)]  # and no temporary file is left


def test_token_array_cache_separates_splits_and_tokenizers(text_corpus, tmp_path):
    small = CharTokenizer.from_texts(split_texts(text_corpus, "train"))
    large = CharTokenizer.from_texts(["".join(map(chr, range(32, 400)))])
    names = {token_array(text_corpus, split, tokenizer, cache_dir=tmp_path).filename
             for split in ("train", "validation") for tokenizer in (small, large)}
    assert len(names) == 4
    assert token_array(text_corpus, "train", large, cache_dir=tmp_path).dtype == np.uint16


def test_token_array_uses_textgen_cache_by_default(text_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CACHE", str(tmp_path / "env-cache"))
    tokens = token_array(text_corpus, "train", CharTokenizer.from_texts(["abc"]))
    assert Path(tokens.filename).parent == tmp_path / "env-cache"


def test_token_array_counts_characters_missing_from_the_vocabulary(text_corpus, tmp_path, caplog):
    token_array(text_corpus, "train", CharTokenizer.from_texts(["Line"]), cache_dir=tmp_path)
    unknown = sum(char not in "Line" for char in "".join(split_texts(text_corpus, "train")))
    assert f"{unknown} of " in caplog.text and "are <unk>" in caplog.text


def test_sentencepiece_token_array_from_two_processes_matches_encoding_the_rows(write_file, tmp_path):
    rows = [{"text": f"row {i} has no newline"} for i in range(300)] + [{"text": "this one does\n"}]
    path = write_file("rows.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    corpus = load_corpus(DataConfig(corpus=str(path)))
    tokenizer = SentencePieceTokenizer.train(split_texts(corpus, "train"), vocab_size=300)
    tokens = token_array(corpus, "train", tokenizer, cache_dir=tmp_path, num_proc=2)
    assert tokens.dtype == np.uint16
    assert tokenizer.decode(tokens) == "".join(split_texts(corpus, "train"))


def test_token_array_of_a_split_without_tokens_is_a_corpus_error(tmp_path):
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["", ""]})})
    corpus = Corpus("blank", splits, "text", None, None, "test", line_rows=True)
    with pytest.raises(CorpusError, match="split 'train' of corpus 'blank' has no tokens"):
        token_array(corpus, "train", CharTokenizer.from_texts(["a"]), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


# --- truncated-BPTT streams -----------------------------------------------------------------------

def test_consecutive_windows_continue_each_stream_and_targets_are_shifted_by_one():
    tokens = np.arange(1_000, dtype=np.uint32)
    batches = StreamBatches(tokens, batch_size=4, seq_len=10)
    assert batches.windows_per_epoch == 24 and batches.tokens_per_window == 40  # stream_len (999 // 4) // 10
    inputs, targets = zip(*(batches.window(i) for i in range(batches.windows_per_epoch)))
    streams = torch.cat(inputs, dim=1)  # (batch, windows * seq_len)
    assert inputs[0].dtype == torch.int64 and inputs[0].shape == (4, 10)
    for row in range(4):
        assert streams[row].tolist() == list(range(row * 249, row * 249 + 240))
    assert torch.equal(torch.cat(targets, dim=1), streams + 1)


def test_ranks_read_disjoint_streams_that_together_cover_the_tokens():
    tokens = np.arange(10_000, dtype=np.uint16)
    seen = []
    for rank in range(3):
        batches = StreamBatches(tokens, batch_size=2, seq_len=8, rank=rank, world_size=3)
        seen.append(torch.cat([batches.window(i)[0] for i in range(batches.windows_per_epoch)], dim=1).flatten())
    every = torch.cat(seen)
    assert len(set(every.tolist())) == len(every)
    assert len(every) > 0.99 * len(tokens)
    assert seen[0].max() < seen[1].min() and seen[1].max() < seen[2].min()


def test_corpus_too_small_for_one_window_says_how_many_tokens_it_needs():
    with pytest.raises(TrainingError) as error:
        StreamBatches(np.arange(100), batch_size=4, seq_len=16, world_size=2)
    message = str(error.value)
    assert "the corpus has 100 tokens" in message and "needs 129" in message
    assert "lower --batch-size or --seq-len" in message


def test_window_index_outside_the_epoch_is_an_index_error():
    batches = StreamBatches(np.arange(100), batch_size=2, seq_len=10)
    with pytest.raises(IndexError):
        batches.window(batches.windows_per_epoch)


# --- classification batches -----------------------------------------------------------------------

def rows_of_lengths(lengths: list[int]) -> list[np.ndarray]:
    return [np.arange(2, 2 + n, dtype=np.int64) for n in lengths]


def test_labelled_batches_pad_to_the_longest_row_and_report_true_lengths():
    ids = rows_of_lengths([3, 1, 5, 0])
    batches = LabelledBatches(ids, np.array([1, 0, 1, 0]), batch_size=4, pad_id=0, shuffle=False)
    (padded, lengths, labels), = batches.epoch(0)
    # unshuffled batches are sorted by length, stably: rows 1, 3 (empty), 0, 2
    assert padded.tolist() == [[2, 0, 0, 0, 0], [0, 0, 0, 0, 0], [2, 3, 4, 0, 0], [2, 3, 4, 5, 6]]
    assert lengths.tolist() == [1, 1, 3, 5]  # an empty row still has one (padding) step
    assert labels.tolist() == [0, 0, 1, 1]
    assert padded.dtype == lengths.dtype == labels.dtype == torch.int64


def test_every_row_appears_exactly_once_per_epoch_with_its_label():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=1_000).tolist()
    ids = [np.full(n, row + 10) for row, n in enumerate(lengths)]  # each row's tokens name the row
    batches = LabelledBatches(ids, np.arange(1_000) % 7, batch_size=32, pad_id=0)
    epoch = batches.epoch(3)
    assert len(epoch) == len(batches) == 32
    rows = torch.cat([padded[:, 0] - 10 for padded, _, _ in epoch])
    assert sorted(rows.tolist()) == list(range(1_000))
    assert torch.equal(torch.cat([labels for _, _, labels in epoch]), rows % 7)


def test_shuffled_epochs_are_deterministic_from_seed_and_epoch():
    ids = rows_of_lengths(list(range(1, 101)))

    def order(seed: int, epoch: int) -> list[list[int]]:
        return [rows.tolist() for rows in LabelledBatches(ids, np.zeros(100), 10, 0, seed=seed).batch_rows(epoch)]

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2)
    assert order(0, 1) != order(1, 1)


def test_shuffled_batches_hold_rows_of_similar_length():
    lengths = np.random.default_rng(1).permutation(np.arange(1, 201))
    batches = LabelledBatches(rows_of_lengths(lengths.tolist()), np.zeros(200), batch_size=20, pad_id=0)
    spans = sorted((int(b.min()), int(b.max())) for b in (lengths[rows] for rows in batches.batch_rows(0)))
    assert all(high < next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))


def test_unshuffled_batches_are_sorted_by_length_the_same_every_epoch():
    batches = LabelledBatches(rows_of_lengths([5, 1, 3, 2, 4]), np.arange(5), batch_size=2, pad_id=0, shuffle=False)
    assert [rows.tolist() for rows in batches.batch_rows(7)] == [[1, 3], [2, 4], [0]]
    assert torch.cat([labels for _, _, labels in batches.epoch(7)]).tolist() == [1, 3, 2, 4, 0]
    assert [rows.tolist() for rows in batches.batch_rows(0)] == [[1, 3], [2, 4], [0]]


def test_max_len_truncates_rows():
    batches = LabelledBatches(rows_of_lengths([10, 2]), np.zeros(2), batch_size=2, pad_id=0, max_len=4, shuffle=False)
    (padded, lengths, _), = batches.epoch(0)
    assert padded.shape == (2, 4) and sorted(lengths.tolist()) == [2, 4]


def test_long_text_choices_keep_the_first_the_last_or_all_tokens():
    ids = np.arange(1, 11)
    assert cut_to(ids, 4, "truncate").tolist() == [1, 2, 3, 4]
    assert cut_to(ids, 4, "chunk").tolist() == [1, 2, 3, 4]  # training reads one chunk
    assert cut_to(ids, 4, "tail").tolist() == [7, 8, 9, 10]
    assert cut_to(ids, 4, "whole").tolist() == list(range(1, 11))
    assert cut_to(ids, None, "tail").tolist() == list(range(1, 11))
    assert cut_to(ids[:3], 4, "tail").tolist() == [1, 2, 3]
    batches = LabelledBatches([ids, ids[:2]], np.zeros(2), batch_size=2, pad_id=0, max_len=3, long_text="tail",
                              shuffle=False)
    (padded, lengths, _), = batches.epoch(0)
    assert sorted(map(tuple, padded.tolist())) == [(1, 2, 0), (8, 9, 10)]


@pytest.mark.parametrize("kind", ["char", "sentencepiece"])
def test_encode_labelled_gives_each_rows_ids_and_its_label(write_file, kind):
    texts = [f"review {i}: {'great' if i % 2 else 'awful'} film" for i in range(120)]
    path = write_file("reviews.jsonl", "".join(json.dumps({"text": t, "label": i % 2}) + "\n"
                                              for i, t in enumerate(texts)))
    config = DataConfig(corpus=str(path), tokenizer=kind, vocab_size=290)
    corpus = load_corpus(config, task="classify")
    tokenizer = (CharTokenizer.from_texts(texts) if kind == "char"
                 else SentencePieceTokenizer.train(texts, vocab_size=config.vocab_size))
    ids, labels = encode_labelled(corpus, "validation", tokenizer)
    validation = corpus.splits["validation"]
    assert [tokenizer.decode(row) for row in ids] == validation["text"]
    assert labels.tolist() == validation["label"] and labels.dtype == np.int64


def test_evaluation_windows_cover_every_stream_to_its_end():
    tokens = np.arange(1001, dtype=np.uint16)
    batches = StreamBatches(tokens, batch_size=4, seq_len=32)
    windows = list(batches.evaluation_windows())
    assert len(windows) == batches.windows_per_epoch + 1
    targets = torch.cat([t for _, t in windows], dim=1)
    assert targets.shape == (4, 250)
    assert targets[1].tolist() == list(range(251, 501))
