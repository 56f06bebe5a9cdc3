"""Specifications of the tokenizers: exact round trips, unknown characters, plain-data save and load."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from textgen.config import DataConfig
from textgen.data.corpus import load_corpus, split_texts
from textgen.errors import TokenizerError
from textgen.data.tokenizer import CharTokenizer, SentencePieceTokenizer, build_tokenizer, tokenizer_from_data

SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "du", "the", "and"]
TRAINING_TEXT = "".join(
    " ".join(SYLLABLES[(line * 7 + word) % 12] + SYLLABLES[(line + word * 5) % 11] for word in range(9)) + "\n"
    for line in range(200)
) + (
    "  Indented line with  double  spaces and a tab\there.\n\n"
    "Ünïcödé: café, naïve, 東京, Ελληνικά, emoji 🎉, math ∑ ≤ ∞.\n"
    "Numbers 0123456789 and punctuation !?;:'\"()[]{}<>/\\|@#$%^&*-_+=~`\n"
) * 5

# SentencePiece writes spaces as U+2581 internally and decodes a literal U+2581 as a space, so that one
# character cannot survive a round trip; every other code point (NUL and other controls included) does.
ROUND_TRIP_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\u2581"))


@pytest.fixture(scope="module")
def sentencepiece_tokenizer() -> SentencePieceTokenizer:
    return SentencePieceTokenizer.train([TRAINING_TEXT], vocab_size=400)


def reload(tokenizer):
    """The tokenizer after to_data -> torch.save -> torch.load(weights_only=True) -> tokenizer_from_data."""
    buffer = io.BytesIO()
    torch.save({"tokenizer": tokenizer.to_data()}, buffer)
    buffer.seek(0)
    return tokenizer_from_data(torch.load(buffer, weights_only=True)["tokenizer"])


# --- characters -----------------------------------------------------------------------------------

def test_char_vocabulary_is_pad_unk_then_the_sorted_distinct_characters():
    tokenizer = CharTokenizer.from_texts(["banana", "\ncab"])
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.vocab_size) == (0, 1, 7)
    assert tokenizer.encode("\nabcn").tolist() == [2, 3, 4, 5, 6]
    assert tokenizer.encode("ab").dtype == np.int64


def test_char_tokenizer_maps_unknown_characters_to_unk_and_counts_them(caplog):
    tokenizer = CharTokenizer.from_texts(["abc"])
    ids, unknown = tokenizer.encode_counting_unknown("abXcY€")
    assert ids.tolist() == [2, 3, 1, 4, 1, 1]
    assert unknown == 3
    tokenizer.encode("aZ")
    assert "1 characters are not in the vocabulary" in caplog.text and "'Z'" in caplog.text


def test_char_decode_drops_padding_and_shows_unknown_as_the_replacement_character():
    tokenizer = CharTokenizer.from_texts(["ab"])
    assert tokenizer.decode([0, 2, 1, 3, 0, 0]) == "a\ufffdb"
    assert tokenizer.decode(np.array([], dtype=np.int64)) == ""


def test_char_tokenizer_from_empty_text_is_an_error():
    with pytest.raises(TokenizerError, match="training text is empty"):
        CharTokenizer.from_texts(["", ""])


def test_sentencepiece_on_a_text_of_only_characters_it_drops_is_an_error():
    # found by fuzzing: a corpus of one NUL byte left SentencePiece no character to count
    with pytest.raises(TokenizerError, match="no character SentencePiece can learn from; .* --tokenizer char"):
        SentencePieceTokenizer.train(["\x00", "\x00\x00"], 300)


def test_any_other_sentencepiece_failure_is_one_line_too(monkeypatch):
    import sentencepiece

    def fails(**settings):
        raise RuntimeError("INTERNAL: src/trainer_interface.cc(1) [(some_count) > (0)] \nmore detail")
    monkeypatch.setattr(sentencepiece.SentencePieceTrainer, "train", fails)
    with pytest.raises(TokenizerError, match=r"^SentencePiece could not train on this text \(INTERNAL: .*\); "
                                             r"try --tokenizer char$"):
        SentencePieceTokenizer.train(["some text"], 300)


def test_char_encode_batch_matches_encoding_each_text():
    tokenizer = CharTokenizer.from_texts(["héllo wörld"])
    texts = ["héllo", "", "wörld?", "l"]
    assert tokenizer.encode_batch(texts) == [tokenizer.encode(t).tolist() for t in texts]


@given(st.text())
def test_char_round_trip_is_exact_for_text_in_the_vocabulary(text):
    tokenizer = CharTokenizer.from_texts([text + "x"])
    assert tokenizer.decode(tokenizer.encode(text)) == text


@given(st.text(), st.text())
def test_char_unknown_count_is_the_number_of_characters_outside_the_vocabulary(vocabulary_text, text):
    tokenizer = CharTokenizer.from_texts([vocabulary_text + "x"])
    _, unknown = tokenizer.encode_counting_unknown(text)
    assert unknown == sum(char not in vocabulary_text + "x" for char in text)


@given(st.text(min_size=1), st.text())
def test_char_tokenizer_saved_as_plain_data_encodes_identically(vocabulary_text, text):
    tokenizer = CharTokenizer.from_texts([vocabulary_text])
    restored = tokenizer_from_data(pickle.loads(pickle.dumps(tokenizer.to_data())))
    assert restored.encode(text).tolist() == tokenizer.encode(text).tolist()


def test_char_tokenizer_survives_torch_weights_only_save_and_load():
    tokenizer = CharTokenizer.from_texts([TRAINING_TEXT])
    assert reload(tokenizer).encode(TRAINING_TEXT).tolist() == tokenizer.encode(TRAINING_TEXT).tolist()


# --- SentencePiece --------------------------------------------------------------------------------

def test_sentencepiece_reserves_pad_0_and_unk_1_and_has_the_asked_vocabulary(sentencepiece_tokenizer):
    processor = sentencepiece_tokenizer.processor
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (0, 1, -1, -1)
    assert sentencepiece_tokenizer.vocab_size == 400
    assert sentencepiece_tokenizer.decode([0, *sentencepiece_tokenizer.encode("fox"), 0]) == "fox"


@settings(deadline=None)
@given(ROUND_TRIP_TEXT)
def test_sentencepiece_decode_of_encode_is_the_text_for_arbitrary_unicode(sentencepiece_tokenizer, text):
    ids = sentencepiece_tokenizer.encode(text)
    assert ids.dtype == np.int64
    assert sentencepiece_tokenizer.decode(ids) == text


def test_sentencepiece_keeps_newlines_and_runs_of_spaces(sentencepiece_tokenizer):
    text = "  two leading\n\n\nthree newlines   and\ttab \n"
    assert sentencepiece_tokenizer.decode(sentencepiece_tokenizer.encode(text)) == text
    assert sentencepiece_tokenizer.processor.piece_to_id("\n") in sentencepiece_tokenizer.encode("a\nb").tolist()


@settings(deadline=None, max_examples=25)
@given(ROUND_TRIP_TEXT)
def test_sentencepiece_saved_as_plain_data_encodes_identically(sentencepiece_tokenizer, text):
    restored = tokenizer_from_data(sentencepiece_tokenizer.to_data())
    assert restored.encode(text).tolist() == sentencepiece_tokenizer.encode(text).tolist()


def test_sentencepiece_survives_pickling_and_torch_weights_only_loading(sentencepiece_tokenizer):
    for restored in (pickle.loads(pickle.dumps(sentencepiece_tokenizer)), reload(sentencepiece_tokenizer)):
        assert restored.encode(TRAINING_TEXT).tolist() == sentencepiece_tokenizer.encode(TRAINING_TEXT).tolist()


def test_sentencepiece_encode_batch_matches_encoding_each_text(sentencepiece_tokenizer):
    texts = ["the fox", "", "東京\n"]
    assert sentencepiece_tokenizer.encode_batch(texts) == [sentencepiece_tokenizer.encode(t).tolist() for t in texts]


def test_sentencepiece_vocabulary_too_large_for_the_text_names_the_maximum():
    with pytest.raises(TokenizerError, match=r"--vocab-size 5000 is more than .* \(at most \d+\); lower --vocab-size"):
        SentencePieceTokenizer.train(["abc def ghi\n"] * 10, vocab_size=5000)


def test_sentencepiece_vocabulary_too_small_for_bytes_names_the_minimum():
    with pytest.raises(TokenizerError, match=r"--vocab-size 100 is too small .* \(at least \d+\); raise --vocab-size"):
        SentencePieceTokenizer.train([TRAINING_TEXT], vocab_size=100)


def test_sentencepiece_bpe_model_also_round_trips():
    tokenizer = SentencePieceTokenizer.train([TRAINING_TEXT], vocab_size=400, model_type="bpe")
    assert tokenizer.decode(tokenizer.encode(TRAINING_TEXT)) == TRAINING_TEXT


# --- building from config -------------------------------------------------------------------------

def test_build_tokenizer_follows_the_config():
    char = build_tokenizer(DataConfig(tokenizer="char"), ["abc"])
    pieces = build_tokenizer(DataConfig(tokenizer="sentencepiece", vocab_size=380), [TRAINING_TEXT])
    assert (char.kind, char.vocab_size) == ("char", 5)
    assert (pieces.kind, pieces.vocab_size) == ("sentencepiece", 380)


def test_tokenizer_from_data_rejects_an_unknown_kind():
    with pytest.raises(TokenizerError, match="saved tokenizer kind 'wordpiece' is unknown"):
        tokenizer_from_data({"kind": "wordpiece"})


@pytest.mark.corpora
def test_tiny_shakespeare_has_65_characters_plus_pad_and_unk(corpora_dir):
    folder = corpora_dir("tiny_shakespeare")
    corpus = load_corpus(DataConfig(corpus="tiny_shakespeare", data_dir=str(folder.parent)))
    assert CharTokenizer.from_texts(split_texts(corpus, "train")).vocab_size == 67


@pytest.mark.corpora
@pytest.mark.slow
def test_unigram_vocabulary_of_2000_trains_on_tiny_shakespeare_and_round_trips(corpora_dir):
    folder = corpora_dir("tiny_shakespeare")
    config = DataConfig(corpus="tiny_shakespeare", data_dir=str(folder.parent), tokenizer="sentencepiece")
    corpus = load_corpus(config)
    tokenizer = build_tokenizer(config, split_texts(corpus, "train"))
    assert tokenizer.vocab_size == 2000
    validation = "".join(split_texts(corpus, "validation"))
    ids = tokenizer.encode(validation)
    assert tokenizer.decode(ids) == validation
    assert len(ids) < len(validation) / 2.5  # subwords, not characters


def test_a_long_text_encoded_in_slices_or_cut_before_encoding_gives_the_same_ids(monkeypatch):
    """Slices end at word gaps, where neither tokenizer joins the two sides (issue 34: one 174 MB line)."""
    import random

    from textgen.classify.predict import read_part
    from textgen.data import tokenizer as tokenizers
    from textgen.data.batches import cut_to
    from textgen.nn.checkpoint import load_language_model
    rng = random.Random(0)
    pieces = ["the", "film", "was", "not", "bad", " ", "  ", "\n", "\n\n", "\t", "café", "!", "'", "—", "x" * 30]
    text = "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(20_000))
    subwords = load_language_model("reviews")[1]
    typed = text
    for tokenizer, text in [(tokenizer, text) for tokenizer in (CharTokenizer.from_texts([typed]), subwords)
                            for text in (typed, typed.replace("\n", " "))]:  # cut at newlines, and at spaces
        whole = tokenizer.encode(text)
        for size in (50, 997):
            monkeypatch.setattr(tokenizers, "SLICE_CHARS", size)
            assert len(list(tokenizers.text_slices(text, size))) > 20
            assert np.array_equal(tokenizers.encode_long(tokenizer, text), whole), (tokenizer.kind, size)
        for max_len in (5, 40):
            for long_text in ("tail", "truncate"):
                part = read_part(text, max_len, long_text)
                assert len(part) < len(text) / 10
                assert np.array_equal(cut_to(tokenizer.encode(part), max_len, long_text),
                                      cut_to(whole, max_len, long_text)), (tokenizer.kind, max_len, long_text)
