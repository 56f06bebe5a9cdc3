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
