"""The sentiment behaviour suite (textgen/classify/behaviour.py): template sentences by capability,
a tuning part and a held-out part that share no frame and no sentiment word, and the report."""

from __future__ import annotations

from textgen.classify.behaviour import (FRAMES, NEGATIVE, PARTS, POSITIVE, Case, cases, report, training_rows,
                                        unique)
from textgen.data.ngrams import words


def test_the_held_out_part_shares_no_frame_and_no_sentiment_word_with_the_tuning_part():
    for capability, parts in FRAMES.items():
        assert parts["tuning"] and parts["held_out"], capability
        assert not set(parts["tuning"]) & set(parts["held_out"]), capability
    tuning_words = set(POSITIVE["tuning"]) | set(NEGATIVE["tuning"])
    held_out_words = set(POSITIVE["held_out"]) | set(NEGATIVE["held_out"])
    assert not tuning_words & held_out_words
    for case in cases("held_out"):
        assert not tuning_words & set(words(case.text)), case
    assert not {case.text for case in cases("tuning")} & {case.text for case in cases("held_out")}


def test_each_capability_labels_its_sentences_as_a_reader_would():
    found = {case.text: case for part in PARTS for case in cases(part)}
    expected = {
        "Not bad at all.": ("negated_negative", "pos"),
        "The film was not good.": ("negated_positive", "neg"),
        "I don't think the film was good.": ("negation_at_a_distance", "neg"),
        "I don't think the film was bad.": ("negation_at_a_distance", "pos"),
        "The film was good, but the movie was bad.": ("contrast", "neg"),
        "The film was bad, but the movie was good.": ("contrast", "pos"),
        "The film was very boring.": ("intensifier", "neg"),
        "Hardly a superb picture.": ("negated_positive", "neg"),
        "The headphones are lousy.": ("products", "neg"),
        "What an engaging picture!": ("plain", "pos"),  # "a" before a vowel reads "an"
    }
    for text, (capability, label) in expected.items():
        assert (found[text].capability, found[text].label) == (capability, label), text
    for part in PARTS:
        labels = {capability: {case.label for case in cases(part) if case.capability == capability}
                  for capability in FRAMES}
        assert labels["negated_negative"] == {"pos"} and labels["negated_positive"] == {"neg"}
        assert all(found == {"pos", "neg"} for name, found in labels.items() if not name.startswith("negated"))


def test_training_rows_come_from_the_tuning_part_and_leave_the_other_domains_to_the_test():
    tuning = {case.text: case for case in cases("tuning")}
    rows = training_rows(per_capability=100, seed=3)
    assert len(rows) == len({text for text, _ in rows}) == 600  # 100 for each of the six film capabilities
    for text, label in rows:
        assert text in tuning and tuning[text].label == label
        assert tuning[text].capability not in ("products", "restaurants", "books")
    assert rows == training_rows(per_capability=100, seed=3) != training_rows(per_capability=100, seed=4)
    labels = [label for _, label in rows]
    assert labels.count("pos") == labels.count("neg")


def test_the_report_gives_pass_rates_and_how_sure_the_failures_were():
    def case(text: str, capability: str, label: str) -> Case:
        return Case(text, capability, "tuning", label)

    labelled = [(case("a", "contrast", "pos"), "pos", 0.9), (case("b", "contrast", "neg"), "pos", 0.8),
                (case("c", "contrast", "neg"), "pos", 0.6), (case("d", "contrast", "neg"), "neg", 0.7),
                (case("e", "plain", "pos"), "pos", 0.99)]
    found = report(labelled)
    assert found["contrast"]["cases"] == 4 and found["contrast"]["pass_rate"] == 0.5
    assert found["contrast"]["failure_confidence"] == 0.7
    assert found["contrast"]["surest_failures"] == ["b -> pos 0.800", "c -> pos 0.600"]
    assert found["plain"] == {"cases": 1, "pass_rate": 1.0, "failure_confidence": None, "surest_failures": []}


def test_unique_keeps_the_first_of_each_sentence():
    first, again = Case("x", "plain", "tuning", "pos"), Case("x", "intensifier", "tuning", "pos")
    assert unique([first, again, Case("y", "plain", "tuning", "neg")]) == [first, Case("y", "plain", "tuning", "neg")]
