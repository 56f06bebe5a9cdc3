"""Copy check: the suffix array, matching lengths against brute force, and `sample --check-copy`."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from textgen import cli
from textgen.generate.copying import COPIED_SPAN, CopyIndex, suffix_array

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
    assert cli.main(["sample", "--model", str(run), "--length", "40", "--seed", "0",
                     "--check-copy", str(corpus)]) == 0
    assert "copy check, sample 1: longest span found in the training text" in " ".join(capsys.readouterr().err.split())


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
