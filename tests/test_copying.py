"""Sample report: the suffix array, matching lengths and self-repeats against brute force, distinct
n-grams, and `sample --check-copy`."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textgen import cli
from textgen.generate.copying import COPIED_SPAN, CopyIndex, distinct_share, longest_repeat, suffix_array

texts = st.text(alphabet=st.sampled_from("ab c\né€"), max_size=60)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_the_suffix_array_sorts_every_suffix(text):
    assert suffix_array(text).tolist() == sorted(range(len(text)), key=lambda i: text[i:])


def longest_match_by_brute_force(text, sample, position):
    length = 0
    while position + length < len(sample) and sample[position:position + length + 1] in text:
        length += 1
    return length


@settings(max_examples=200, deadline=None)
@given(texts, texts)
def test_matching_lengths_are_the_longest_spans_found_in_the_text(text, sample):
    expected = [longest_match_by_brute_force(text, sample, i) for i in range(len(sample))]
    assert CopyIndex(text).matching_lengths(sample).tolist() == expected


def test_a_recited_passage_is_found_and_counted():
    text = "".join(f"line {i} of a text that goes on and on in its own words.\n" for i in range(200))
    passage = text[1000:1120]
    report = CopyIndex(text).check("Something new entirely#" + passage + "#And more new words.")
    assert report.longest == len(passage) and report.longest_text == passage
    assert report.copied_chars == len(passage) and report.chars == 23 + len(passage) + 20
    fresh = CopyIndex(text).check("Zebras quickly vex my jolly big wolf.")
    assert fresh.copied_chars == 0 and fresh.longest < COPIED_SPAN


def longest_repeat_by_brute_force(text):
    return max((length for length in range(1, len(text)) for start in range(len(text) - length + 1)
                if text.find(text[start:start + length], start + 1) >= 0), default=0)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_the_longest_repeat_is_the_longest_span_found_twice(text):
    length, start = longest_repeat(text)
    assert length == longest_repeat_by_brute_force(text)
    if length:
        assert text.find(text[start:start + length], start + 1) >= 0


def test_a_loop_shows_as_a_long_repeat_and_few_distinct_ngrams():
    assert longest_repeat("-" * 51) == (50, 0)  # the two copies overlap
    assert longest_repeat("abcdefg") == (0, 0)
    assert distinct_share("abcabcabc") == 3 / 6 and distinct_share("abcdef") == 1.0 and distinct_share("ab") == 1.0
    index = CopyIndex("the quick brown fox jumps over the lazy dog. " * 20 + "a new line, its own words\n" * 20)
    report = index.check("to and fro " * 30)
    assert report.longest_repeat == len("to and fro " * 29) and report.longest_repeat_text.startswith("to and fro")
    assert report.distinct == pytest.approx(11 / (330 - 3))
    # stretches of the training text as long as the sample, spread over all of it
    assert index.training_distinct(330) == pytest.approx(
        sum(distinct_share(index.text[start:start + 330]) for start in
            sorted({(len(index.text) - 330) * i // 15 for i in range(16)})) / 16)
    assert set(report.fields()) == {"longest_copied", "copied_share", "longest_repeat", "distinct_4",
                                    "training_distinct_4"}


def test_sample_reports_copies_against_the_text_the_model_trained_on(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--corpus", str(corpus), "--preset", "tiny", "--out", str(run), "--max-steps", "2",
                     "--device", "cpu", "--precision", "fp32"]) == 0
    capsys.readouterr()
    assert cli.main(["sample", "--model", str(run), "--length", "80", "--seed", "0", "--num-samples", "2",
                     "--json", "--check-copy"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2
    text = corpus.read_text()
    for record in records:
        # every sampled character is in the training text, so spans of at least 1 are found
        assert 1 <= record["longest_copied"] <= len(record["text"]) and 0 <= record["copied_share"] <= 1
        assert record["longest_copied"] == max(longest_match_by_brute_force(text, record["text"], i)
                                               for i in range(len(record["text"])))
        assert record["longest_repeat"] == longest_repeat_by_brute_force(record["text"])
        assert record["distinct_4"] == round(distinct_share(record["text"]), 4)
        assert 0 < record["training_distinct_4"] <= 1
    assert cli.main(["sample", "--model", str(run), "--length", "40", "--seed", "0",
                     "--check-copy", str(corpus)]) == 0
    logged = " ".join(capsys.readouterr().err.split())
    assert "sample report, sample 1: longest span found in the training text" in logged
    assert "longest span it repeats itself" in logged and "distinct 4-grams" in logged


def test_the_copy_check_finds_the_training_text_from_another_folder_and_reads_a_named_file_whole(
        corpus, tmp_path, monkeypatch, capsys):
    # issue 34: the saved corpus was the relative path typed, read again from wherever sample ran
    # (another file of that name was checked instead); a named FILE was indexed only in its training part
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "work" / "notes.txt").write_text(corpus.read_text())
    (tmp_path / "elsewhere" / "notes.txt").write_text("zzzz qqqq\n" * 50)  # a decoy of the same name
    monkeypatch.chdir(tmp_path / "work")
    assert cli.main(["train", "--corpus", "notes.txt", "--preset", "tiny", "--out", str(tmp_path / "run"),
                     "--max-steps", "2", "--device", "cpu", "--precision", "fp32"]) == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert cli.main(["sample", "--model", str(tmp_path / "run"), "--length", "60", "--seed", "0", "--json",
                     "--check-copy"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["longest_copied"] == max(longest_match_by_brute_force(corpus.read_text(), record["text"], i)
                                           for i in range(len(record["text"])))
    last_line = corpus.read_text().splitlines()[-1]
    assert CopyIndex.of_training_text(str(tmp_path / "work" / "notes.txt")).check(last_line).longest == len(last_line)
