"""Specifications of corpus loading: named corpora, local files and folders, split carving, errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from textgen.config import DataConfig
from textgen.data.corpus import NAMED_CORPORA, count_chars, language_model_split, load_corpus, resolve_data_dir, split_texts
from textgen.errors import ConfigError, CorpusError


def stream(corpus, split: str) -> str:
    return "".join(split_texts(corpus, split))


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


# --- real corpora ---------------------------------------------------------------------------------

@pytest.mark.corpora
def test_tiny_shakespeare_from_textgen_data_has_the_hub_split_sizes_in_characters(corpora_dir):
    corpora_dir("tiny_shakespeare")  # TEXTGEN_DATA is how the folder is found
    corpus = load_corpus(DataConfig(corpus="tiny_shakespeare"))
    sizes = {split: count_chars(corpus, split) for split in ("train", "validation", "test")}
    assert sizes == {"train": 1_003_854, "validation": 55_770, "test": 55_770}
    assert corpus.line_rows and corpus.label_column is None
    assert corpus.source.startswith("local folder")


@pytest.mark.corpora
def test_tiny_shakespeare_split_streams_are_the_files_exactly(corpora_dir):
    folder = corpora_dir("tiny_shakespeare")
    corpus = load_corpus(DataConfig(corpus="tiny_shakespeare", data_dir=str(folder.parent)))
    assert stream(corpus, "validation") == (folder / "validation.txt").read_text()


@pytest.mark.corpora
def test_rotten_tomatoes_loads_8530_train_and_1066_validation_rows_with_label_names(corpora_dir):
    folder = corpora_dir("rotten_tomatoes")
    corpus = load_corpus(DataConfig(corpus="rotten_tomatoes", data_dir=str(folder.parent)), task="classify")
    assert {split: len(rows) for split, rows in corpus.splits.items()} == {"train": 8_530, "validation": 1_066}
    assert corpus.label_names == ["neg", "pos"]
    assert Counter(corpus.splits["train"]["label"]) == {0: 4_265, 1: 4_265}


@pytest.mark.corpora
def test_sst2_carves_a_stratified_deterministic_tenth_of_its_67349_rows_as_validation(corpora_dir):
    folder = corpora_dir("sst2")
    config = DataConfig(corpus="sst2", data_dir=str(folder.parent))
    corpus = load_corpus(config, task="classify")
    train, validation = corpus.splits["train"], corpus.splits["validation"]
    assert len(train) + len(validation) == 67_349
    assert len(validation) == 6_735
    assert corpus.text_column == "text"  # the Hub calls it "sentence"; the local files call it "text"
    assert corpus.label_names == ["negative", "positive"]
    share_positive = Counter(validation["label"])[1] / len(validation)
    assert share_positive == pytest.approx(37_569 / 67_349, abs=0.001)
    again = load_corpus(config, task="classify")
    assert again.splits["validation"]["text"] == validation["text"]
    other_seed = load_corpus(DataConfig(corpus="sst2", data_dir=str(folder.parent), split_seed=1), task="classify")
    assert other_seed.splits["validation"]["text"] != validation["text"]


# --- local files and folders ----------------------------------------------------------------------

def test_text_file_rows_are_lines_that_concatenate_to_the_exact_document(write_file):
    document = "First line\n\n  indented  \nünïcödé ✓\nno final newline"
    path = write_file("doc.txt", document)
    corpus = load_corpus(DataConfig(corpus=str(path)))
    assert corpus.line_rows
    assert stream(corpus, "train") + stream(corpus, "validation") == document
    assert corpus.source == f"local file {path.resolve()}"


def test_a_corpus_without_validation_gets_its_last_lines_up_to_a_fifth_of_a_small_text(write_file):
    lines = [f"line {i}\n" for i in range(100)]  # 790 characters: a fifth is 158, 20 lines of 8
    corpus = load_corpus(DataConfig(corpus=str(write_file("doc.txt", "".join(lines)))))
    assert stream(corpus, "train") == "".join(lines[:80])
    assert stream(corpus, "validation") == "".join(lines[80:])


def test_a_single_line_corpus_is_cut_a_fifth_from_its_end_when_small(write_file):
    text = "abcdefghij" * 10
    corpus = load_corpus(DataConfig(corpus=str(write_file("one.txt", text))))
    assert stream(corpus, "train") == text[:80]
    assert stream(corpus, "validation") == text[80:]


@pytest.mark.parametrize("size, held_out", [(100_000, 20_000), (1_000_000, 50_000), (60_000, 12_000)])
def test_a_carved_validation_holds_5_percent_but_at_least_20000_characters_up_to_a_fifth(write_file, size, held_out):
    """Issue 31: 5% of 100 KB, 5,000 characters, told a fine-tune from its start only to 0.024 bits/char."""
    line = "the quick brown fox jumps over the lazy dog.\n"  # 45 characters a line
    text = (line * (size // len(line) + 1))[:size]
    corpus = load_corpus(DataConfig(corpus=str(write_file("book.txt", text))))
    assert stream(corpus, "train") + stream(corpus, "validation") == text
    assert held_out <= len(stream(corpus, "validation")) < held_out + len(line)
    one_line = load_corpus(DataConfig(corpus=str(write_file("one.txt", text.replace("\n", " ")))))
    assert len(stream(one_line, "validation")) == held_out


def test_folder_files_are_grouped_into_splits_by_their_names(write_file, tmp_path):
    write_file("corpus/train-0001.txt", "a\n")
    write_file("corpus/train-0002.txt", "b\n")
    write_file("corpus/valid.txt", "v\n")
    write_file("corpus/test.txt", "t\n")
    write_file("corpus/input.txt", "everything again\n")
    write_file("corpus/README.md", "not data\n")
    corpus = load_corpus(DataConfig(corpus=str(tmp_path / "corpus")))
    assert {split: stream(corpus, split) for split in corpus.splits} == {
        "train": "a\nb\n", "validation": "v\n", "test": "t\n"}


def test_folder_files_not_named_by_a_split_all_go_to_train(write_file, tmp_path):
    write_file("corpus/part1.txt", "one\n")
    write_file("corpus/part2.txt", "two\n")
    write_file("corpus/dev.txt", "dev\n")
    corpus = load_corpus(DataConfig(corpus=str(tmp_path / "corpus")))
    assert stream(corpus, "train") == "one\ntwo\n"
    assert stream(corpus, "validation") == "dev\n"


def test_named_corpus_is_read_from_the_data_dir_folder(write_file, tmp_path):
    write_file("data/imdb/train.jsonl", jsonl([{"text": "good", "label": 1}, {"text": "bad", "label": 0}] * 10))
    write_file("data/imdb/test.jsonl", jsonl([{"text": "fine", "label": 1}]))
    corpus = load_corpus(DataConfig(corpus="imdb", data_dir=str(tmp_path / "data")), task="classify")
    assert corpus.name == "imdb"
    assert corpus.label_names == ["neg", "pos"]
    assert set(corpus.splits) == {"train", "validation", "test"}


def test_json_rows_each_end_with_one_newline_in_the_stream(write_file):
    rows = [{"text": "no newline"}, {"text": "has one\n"}, {"text": ""}] * 20
    corpus = load_corpus(DataConfig(corpus=str(write_file("rows.jsonl", jsonl(rows)))))
    assert not corpus.line_rows
    assert stream(corpus, "train").startswith("no newline\nhas one\n\nno newline\n")


def test_csv_corpus_reads_the_configured_text_column(write_file):
    path = write_file("reviews.csv", "review,stars\n" + "".join(f"review {i},{i % 5}\n" for i in range(40)))
    corpus = load_corpus(DataConfig(corpus=str(path), text_column="review"))
    assert stream(corpus, "train").startswith("review 0\nreview 1\n")


def test_encoding_option_decodes_local_files(write_file):
    path = write_file("latin.txt", "café crème\n".encode("latin-1") * 30)
    corpus = load_corpus(DataConfig(corpus=str(path), encoding="latin-1"))
    assert stream(corpus, "train").startswith("café crème\n")


def test_resolve_data_dir_prefers_the_flag_then_textgen_data_then_corpora(monkeypatch):
    monkeypatch.setenv("TEXTGEN_DATA", "/from/env")
    assert resolve_data_dir("/from/flag") == Path("/from/flag")
    assert resolve_data_dir(None) == Path("/from/env")
    monkeypatch.delenv("TEXTGEN_DATA")
    assert resolve_data_dir(None) == Path("corpora")


def test_gutenberg_is_a_local_corpus_and_its_absence_says_where_to_point(tmp_path):
    with pytest.raises(CorpusError, match="not on the Hugging Face Hub and is not in .*; point --data-dir"):
        load_corpus(DataConfig(corpus="gutenberg", data_dir=str(tmp_path)))


def test_gutenberg_splits_by_whole_books(corpora_dir):
    corpus = load_corpus(DataConfig(corpus="gutenberg", data_dir=str(corpora_dir("gutenberg").parent)))
    assert {name: len(split) for name, split in corpus.splits.items()} == {"train": 18, "validation": 3, "test": 3}
    assert count_chars(corpus, "validation") == 380_197  # as the corpus README counts them


def test_every_named_corpus_has_train_among_its_splits():
    assert set(NAMED_CORPORA) == {"tiny_shakespeare", "rotten_tomatoes", "sst2", "imdb", "gutenberg"}
    assert all("train" in info.splits for info in NAMED_CORPORA.values())


# --- classification -------------------------------------------------------------------------------

def test_string_labels_are_encoded_with_sorted_names(write_file):
    names = ["spam", "ham", "eggs"]
    rows = [{"text": str(i), "label": names[i % 3]} for i in range(60)]
    corpus = load_corpus(DataConfig(corpus=str(write_file("rows.jsonl", jsonl(rows)))), task="classify")
    assert corpus.label_names == ["eggs", "ham", "spam"]
    for split in corpus.splits.values():
        assert all(corpus.label_names[row["label"]] == names[int(row["text"]) % 3] for row in split)


def test_integer_labels_without_known_names_are_named_by_their_ids(write_file):
    rows = [{"text": f"row {i}", "label": 1 + i % 3} for i in range(60)]
    corpus = load_corpus(DataConfig(corpus=str(write_file("stars.jsonl", jsonl(rows)))), task="classify")
    assert corpus.label_names == ["1", "2", "3"]
    assert set(corpus.splits["train"]["label"]) == {0, 1, 2}


def test_carved_classification_validation_keeps_every_class(write_file):
    rows = [{"text": f"row {i}", "label": int(i % 10 == 0)} for i in range(200)]
    corpus = load_corpus(DataConfig(corpus=str(write_file("skewed.jsonl", jsonl(rows)))), task="classify")
    assert len(corpus.splits["validation"]) == 20
    assert Counter(corpus.splits["validation"]["label"]) == {0: 18, 1: 2}


def test_language_modelling_ignores_the_label_column(write_file):
    rows = [{"text": f"row {i}", "label": None} for i in range(30)]
    corpus = load_corpus(DataConfig(corpus=str(write_file("rows.jsonl", jsonl(rows)))))
    assert corpus.label_column is None and corpus.label_names is None


# --- errors ---------------------------------------------------------------------------------------

def test_invalid_utf8_error_names_the_file_and_the_absolute_byte_offset(write_file):
    # past the first 1 MiB read, after a multi-byte character cut by the chunk boundary
    head = b"a" * (2**20 - 1) + "é".encode() + b"b" * 500_000
    path = write_file("bad.txt", head + b"\xff tail\n")
    with pytest.raises(CorpusError) as error:
        load_corpus(DataConfig(corpus=str(path)))
    message = str(error.value)
    assert str(path.resolve()) in message
    assert f"byte {len(head)} (0xff) is not valid utf-8" in message
    assert "--encoding" in message and "\n" not in message


def test_truncated_utf8_at_the_end_is_reported_at_its_offset(write_file):
    path = write_file("cut.txt", b"hello \xe2\x9c")
    with pytest.raises(CorpusError, match=r"byte 6 \(0xe2\) is not valid utf-8"):
        load_corpus(DataConfig(corpus=str(path)))


@pytest.mark.parametrize("content", ["", " \n\t\n  "])
def test_empty_or_whitespace_only_file_is_rejected_by_name(write_file, content):
    path = write_file("blank.txt", content)
    with pytest.raises(CorpusError, match=f"{path.resolve()} is empty or only whitespace"):
        load_corpus(DataConfig(corpus=str(path)))


def test_split_whose_text_column_is_blank_is_rejected_by_name(write_file):
    rows = [{"text": "  ", "label": 0}] * 5
    with pytest.raises(CorpusError, match="split 'train' of corpus .* has no text, only whitespace"):
        load_corpus(DataConfig(corpus=str(write_file("blank.jsonl", jsonl(rows)))))


def test_missing_text_column_error_lists_the_columns_that_exist(write_file):
    path = write_file("rows.jsonl", jsonl([{"body": "x", "stars": 1}] * 5))
    with pytest.raises(CorpusError) as error:
        load_corpus(DataConfig(corpus=str(path)))
    assert "no text column 'text' (columns: body, stars); pick one with --text-column" in str(error.value)


def test_missing_label_column_error_lists_the_columns_that_exist(write_file):
    path = write_file("rows.jsonl", jsonl([{"text": "x", "stars": 1}] * 5))
    with pytest.raises(CorpusError) as error:
        load_corpus(DataConfig(corpus=str(path)), task="classify")
    assert "no label column 'label' (columns: text, stars); pick one with --label-column" in str(error.value)


def test_labels_missing_in_part_of_a_split_are_counted_by_split(write_file):
    rows = [{"text": f"row {i}", "label": None if i < 3 else i % 2} for i in range(20)]
    with pytest.raises(CorpusError, match="split 'train' of corpus .* has 3 of 20 rows without a label"):
        load_corpus(DataConfig(corpus=str(write_file("rows.jsonl", jsonl(rows)))), task="classify")


def test_unknown_corpus_name_error_lists_known_names_and_explains_hub_ids_and_paths():
    with pytest.raises(CorpusError) as error:
        load_corpus(DataConfig(corpus="tiny_shakespear"))
    message = str(error.value)
    assert "unknown corpus 'tiny_shakespear'" in message
    assert "tiny_shakespeare, rotten_tomatoes, sst2, imdb" in message
    assert "owner/name" in message and "local file or folder" in message


def test_missing_path_is_reported_as_missing_rather_than_looked_up_on_the_hub(tmp_path):
    with pytest.raises(CorpusError, match="no file or folder at .*missing.txt"):
        load_corpus(DataConfig(corpus=str(tmp_path / "missing.txt")))


def test_unknown_encoding_names_the_flag(write_file):
    with pytest.raises(ConfigError, match="--encoding 'utf-9' is not a known text encoding"):
        load_corpus(DataConfig(corpus=str(write_file("doc.txt", "text\n")), encoding="utf-9"))


@pytest.fixture
def offline_hub(monkeypatch):
    """Make datasets fail at once instead of retrying the network for ~25 s."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # datasets reads HF_HUB_OFFLINE when imported, so the environment variable alone is too late here
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def test_named_corpus_missing_locally_and_offline_says_what_was_tried_and_how_to_fix(offline_hub, tmp_path):
    with pytest.raises(CorpusError) as error:
        load_corpus(DataConfig(corpus="imdb", data_dir=str(tmp_path)))
    message = str(error.value)
    assert f"no folder {tmp_path / 'imdb'}" in message
    assert "'stanfordnlp/imdb'" in message
    assert f"{tmp_path / 'imdb'}/<split>.<ext>" in message
    assert "--data-dir or TEXTGEN_DATA" in message and "run once online" in message
    assert "\n" not in message


def test_unreachable_hub_id_error_suggests_checking_the_id_or_a_local_path(offline_hub):
    with pytest.raises(CorpusError) as error:
        load_corpus(DataConfig(corpus="nobody/no-such-corpus"))
    message = str(error.value)
    assert "could not load 'nobody/no-such-corpus' from the Hugging Face Hub" in message
    assert "check the id (owner/name)" in message and "run once online" in message


# --- imdb: the unsupervised split, markup, carving --------------------------------------------------

def imdb_like(write_file, tmp_path):
    """A data folder whose imdb/ is laid out like the real one: train sorted by label, unsupervised -1."""
    train = [{"text": f"bad film {i}<br /><br />awful", "label": 0} for i in range(50)] + \
            [{"text": f"good film {i}<br/>great", "label": 1} for i in range(50)]
    write_file("data/imdb/train-00000-of-00001.jsonl", jsonl(train))
    write_file("data/imdb/unsupervised-00000-of-00001.jsonl",
               jsonl([{"text": f"some film {i}", "label": -1} for i in range(30)]))
    return str(tmp_path / "data")


def test_imdb_keeps_its_unsupervised_split_for_language_models(write_file, tmp_path):
    data_dir = imdb_like(write_file, tmp_path)
    corpus = load_corpus(DataConfig(corpus="imdb", data_dir=data_dir))
    assert {name: len(split) for name, split in corpus.splits.items()} == {
        "train": 90, "validation": 10, "unsupervised": 30}
    joined = language_model_split(corpus, "train,unsupervised")
    assert joined == "train+unsupervised" and len(corpus.splits[joined]) == 120
    assert "some film 29\n" in stream(corpus, joined)
    assert language_model_split(corpus, "train") == "train"
    with pytest.raises(ConfigError, match="--lm-splits 'train,test' names splits that imdb lacks \\(test\\)"):
        language_model_split(corpus, "train,test")


def test_a_classifier_never_sees_the_unlabelled_rows_and_says_so(write_file, tmp_path, caplog):
    data_dir = imdb_like(write_file, tmp_path)
    with caplog.at_level("INFO"):
        corpus = load_corpus(DataConfig(corpus="imdb", data_dir=data_dir), task="classify")
    assert set(corpus.splits) == {"train", "validation"}
    assert "dropping split 'unsupervised' of imdb: it has no labels" in caplog.text


def test_imdb_html_line_breaks_become_newlines(write_file, tmp_path):
    corpus = load_corpus(DataConfig(corpus="imdb", data_dir=imdb_like(write_file, tmp_path)), task="classify")
    texts = list(corpus.splits["train"]["text"]) + list(corpus.splits["validation"]["text"])
    assert not any("<br" in text for text in texts)
    assert any(text.endswith("\n\nawful") for text in texts) and any(text.endswith("\ngreat") for text in texts)


def test_a_label_sorted_corpus_carves_a_shuffled_stratified_validation_split_shared_by_both_tasks(write_file, tmp_path):
    data_dir = imdb_like(write_file, tmp_path)
    for_lm = load_corpus(DataConfig(corpus="imdb", data_dir=data_dir))
    for_classifier = load_corpus(DataConfig(corpus="imdb", data_dir=data_dir), task="classify")
    labels = for_classifier.splits["validation"]["label"]
    assert sorted(labels) == [0] * 5 + [1] * 5  # both classes, not the file's positive tail
    assert for_lm.splits["validation"]["text"] == for_classifier.splits["validation"]["text"]
    assert not set(for_lm.splits["train"]["text"]) & set(for_lm.splits["validation"]["text"])
    other_seed = load_corpus(DataConfig(corpus="imdb", data_dir=data_dir, split_seed=1))
    assert other_seed.splits["validation"]["text"] != for_lm.splits["validation"]["text"]


def test_a_csv_of_string_labels_holds_out_the_classifiers_validation_rows_from_a_language_model_too(write_file):
    rows = "".join(f"{'great' if i % 3 else 'awful'} film number {i},{'pos' if i % 3 else 'neg'}\n" for i in range(60))
    path = write_file("reviews.csv", "text,label\n" + rows)
    for_lm = load_corpus(DataConfig(corpus=str(path)))
    for_classifier = load_corpus(DataConfig(corpus=str(path)), task="classify")
    assert sorted(for_lm.splits["validation"]["text"]) == sorted(for_classifier.splits["validation"]["text"])
    assert len(for_lm.splits["validation"]) == 6
    assert not set(for_lm.splits["train"]["text"]) & set(for_classifier.splits["validation"]["text"])
    # a column called label that labels nothing (one value a row): a language model holds out the tail
    notes = write_file("notes.csv", "text,label\n" + "".join(f"line {i},note {i}\n" for i in range(40)))
    assert load_corpus(DataConfig(corpus=str(notes))).splits["validation"]["text"] == [f"line {i}" for i in range(32, 40)]


# --- the bundled corpus and an unreachable Hub -----------------------------------------------------

def test_tiny_shakespeare_is_bundled_with_the_hub_split(tmp_path, monkeypatch):
    monkeypatch.delenv("TEXTGEN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./corpora here
    corpus = load_corpus(DataConfig(corpus="tiny_shakespeare"))
    assert corpus.source.startswith("the copy bundled with textgen")
    assert {split: count_chars(corpus, split) for split in corpus.splits} == {
        "train": 1_003_854, "validation": 55_770, "test": 55_770}
    assert stream(corpus, "train").startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


def test_a_local_folder_wins_over_the_bundled_corpus(write_file, tmp_path):
    write_file("data/tiny_shakespeare/train.txt", "my own shakespeare\n" * 20)
    corpus = load_corpus(DataConfig(corpus="tiny_shakespeare", data_dir=str(tmp_path / "data")))
    assert stream(corpus, "train").startswith("my own shakespeare\n")


def test_an_unreachable_hub_fails_at_once_in_one_line_without_retries(monkeypatch, tmp_path, capsys):
    import huggingface_hub.constants

    from textgen import cli

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    # a port nothing listens on: the connection is refused, as with no network
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cli.main(["train", "--corpus", "nobody/no-such-corpus", "--max-steps", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("textgen: error: could not load 'nobody/no-such-corpus' from the Hugging Face Hub "
                          "(the Hub is out of reach and no cached copy exists)")
    assert err.count("\n") == 1 and "Retry" not in err


def test_a_file_rewritten_with_the_same_modification_time_is_read_anew(tmp_path, monkeypatch):
    # issue 34: `cp -p`, `rsync -t` and `tar x` keep a file's time; caches keyed on it read the old text
    import os

    from textgen.data.batches import token_array
    from textgen.data.tokenizer import CharTokenizer

    monkeypatch.setenv("TEXTGEN_CACHE", str(tmp_path / "cache"))
    file = tmp_path / "notes.txt"
    tokenizer = CharTokenizer.from_texts(["abcdefghijklmnopqrstuvwxyz ,\n"])
    texts = []
    for words in ("first version of the notes\n" * 40, "second text, quite other\n" * 40):
        file.write_text(words)
        os.utime(file, (1_700_000_000, 1_700_000_000))
        corpus = load_corpus(DataConfig(corpus=str(file)))
        texts.append((stream(corpus, "train"), tokenizer.decode(token_array(corpus, "train", tokenizer).tolist())))
    assert texts[0][0].startswith("first version") and texts[1][0].startswith("second text")
    assert texts[1][1].startswith("second text")
