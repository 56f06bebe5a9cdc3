"""Hashed word n-grams beside the recurrent encoder: deterministic features, the stacked classifier,
the --features choice, calibration, old checkpoints and bad input."""

import dataclasses
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from textgen import cli
from textgen.nn.checkpoint import describe_checkpoint, export_weights, load_checkpoint, load_classifier, \
    save_checkpoint
from textgen.classify.predict import predict
from textgen.config import ClassifierConfig, ModelConfig, to_dict
from textgen.metrics import expected_calibration_error
from textgen.nn.model import Classifier, lead
from textgen.data.ngrams import UNBOUNDED, _slice_buckets, negate_scopes, ngram_bags, ngram_buckets, words
from textgen.errors import ConfigError
from textgen.data.tokenizer import text_slices
from textgen.classify.stacking import fit_mixture, train_ngrams
from textgen.data.tokenizer import CharTokenizer

from test_classify import NEGATIVE, POSITIVE, classify_args, labelled_rows, reviews  # noqa: F401 (the corpus fixture)

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["Not bad at all!", "dull and lifeless", "Ein Film, 映画は素晴らしい — très bien", "?!...", "x" * 50]


def test_hashed_ngrams_are_the_same_in_another_process_whatever_its_hash_seed():
    here = [ngram_buckets(text, 1 << 18, 3, max_chars, negation).tolist() for text in TEXTS for max_chars in (0, 5)
            for negation in (False, True)]
    script = ("import json; from textgen.data.ngrams import ngram_buckets; "
              f"print(json.dumps([ngram_buckets(t, 1 << 18, 3, c, n).tolist() for t in {TEXTS!r} for c in (0, 5) "
              f"for n in (False, True)]))")
    for seed in ("1", "12345"):
        environment = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", script], env=environment, check=True, capture_output=True,
                             text=True).stdout
        assert json.loads(out) == here


def test_a_text_has_each_word_and_word_pair_and_triple_once():
    assert words("Not BAD, at all!") == ["not", "bad", ",", "at", "all", "!"]
    # words a, b; pairs ab, ba; triples aba, bab: six n-grams, each counted once however often it occurs
    assert len(ngram_buckets("a b a b a b", 1 << 30, 3)) == 6
    assert len(ngram_buckets("a b a b a b", 1 << 30, 1)) == 2
    assert len(ngram_buckets("   ", 1 << 10, 3)) == 0
    assert set(ngram_buckets("a b", 1 << 30, 2)) > set(ngram_buckets("a", 1 << 30, 2))
    ids, offsets = ngram_bags(["a b", "c"], 1 << 30, 2)
    assert offsets.tolist() == [0, 3] and len(ids) == 4


def test_character_ngrams_let_related_words_share_buckets():
    dull, dullness = (set(ngram_buckets(text, 1 << 30, 1, 5).tolist()) for text in ("dull", "dullness"))
    assert not set(ngram_buckets("dull", 1 << 30, 1)) & set(ngram_buckets("dullness", 1 << 30, 1))
    # "<du", "dul", "ull", "<dul", "dull", "<dull": the subwords that the two words share
    assert len(dull & dullness) == 6
    # "<dull>" holds 4 + 3 + 2 character 3-, 4- and 5-grams, beside the word itself
    assert len(dull) == 4 + 3 + 2 + 1
    # the word's own bucket stays; its subwords come beside it ("<ab", "ab>")
    assert len(set(ngram_buckets("ab", 1 << 30, 1, 3)) - set(ngram_buckets("ab", 1 << 30, 1))) == 2


def test_negated_words_say_nothing_of_their_plain_meaning_until_the_scope_ends():
    assert negate_scopes(words("Not bad at all, but I don't like it. Never boring")) == ([
        "not", "\u00acbad", "\u00acat", "\u00acall", ",", "but", "i", "don", "'", "t", "\u00aclike", "\u00acit", ".",
        "never", "\u00acboring"], UNBOUNDED - 1)
    bad = set(ngram_buckets("bad", 1 << 30, 1, 5, negation=True).tolist())
    assert bad == set(ngram_buckets("bad", 1 << 30, 1, 5).tolist())  # nothing to negate: as before
    # negated, "bad" shares neither its word nor its subwords' buckets; after the full stop, both again
    assert not bad & set(ngram_buckets("not bad", 1 << 30, 1, 5, negation=True).tolist())
    assert bad & set(ngram_buckets("not bad", 1 << 30, 1, 5).tolist()) == bad
    assert bad <= set(ngram_buckets("not good. bad", 1 << 30, 1, 5, negation=True).tolist())


def test_a_signed_negation_counts_a_negated_word_against_its_own_buckets():
    bad = set(ngram_buckets("bad", 1 << 30, 1, 5).tolist())  # the word and its subwords
    signed = ngram_buckets("not bad", 1 << 30, 3, 5, negation=True, negation_sign=True)
    marked = ngram_buckets("not bad", 1 << 30, 3, 5, negation=True)
    assert {-1 - b for b in signed.tolist() if b < 0} == bad  # minus "bad", subwords and all
    marked_unigram = set(_slice_buckets([], ["\u00acbad"], 1 << 30, 1, 0).tolist())  # "¬bad" as one word
    assert {b for b in signed.tolist() if b >= 0} == set(marked.tolist()) - marked_unigram
    # nothing negated: as before
    assert np.array_equal(ngram_buckets("bad film", 1 << 30, 3, 5, True, negation_sign=True),
                          ngram_buckets("bad film", 1 << 30, 3, 5, True))
    # the n-grams' logits: "not bad" scores as minus "bad" (beside "not" and the bigram, here worth 0)
    from textgen.nn.model import bag_logits
    table = torch.zeros(1 << 10, 2)
    plain = ngram_buckets("bad", 1 << 10, 1)
    table[plain] = torch.tensor([[2.0, -2.0]])
    bags = ngram_bags(["bad", "not bad"], 1 << 10, 2, 0, negation=True, negation_sign=True)
    logits = bag_logits(table, torch.zeros(2), *bags)
    assert logits[0, 0] > 0 > logits[1, 0] and logits[1, 0] == pytest.approx(-2.0 / 3 ** 0.5)  # 3 buckets: not, bad, "not ¬bad"


def test_signed_negation_needs_negation_and_nb_counts_a_negated_word_for_the_other_class():
    from textgen.config import ClassifierConfig
    from textgen.classify.stacking import nb_ratios
    with pytest.raises(ConfigError, match="add --negation"):
        ClassifierConfig(negation_sign=True)
    bags = [np.array([3]), np.array([3]), np.array([-1 - 3]), np.array([5])]
    ratios = nb_ratios(bags, np.array([0, 0, 1, 1]), 8)
    # bucket 3: twice in class 0, once negated in class 1 (for class 0): all for class 0
    assert ratios[3] < nb_ratios(bags[:2] + bags[3:], np.array([0, 0, 1]), 8)[3] < 0


def test_a_bounded_negation_scope_ends_after_its_words_or_at_punctuation_whichever_comes_first():
    marked, left = negate_scopes(words("I did not find the film bad, at all"), max_words=2)
    assert marked == ["i", "did", "not", "\u00acfind", "\u00acthe", "film", "bad", ",", "at", "all"] and left == 0
    marked, left = negate_scopes(words("never bad"), max_words=3)
    assert marked == ["never", "\u00acbad"] and left == 2  # the scope goes on into the next slice
    assert negate_scopes(words("not, bad"), max_words=3) == (["not", ",", "bad"], 0)
    three = set(ngram_buckets("not the film bad", 1 << 30, 1, negation=True, negation_words=3).tolist())
    two = set(ngram_buckets("not the film bad", 1 << 30, 1, negation=True, negation_words=2).tolist())
    assert set(ngram_buckets("bad", 1 << 30, 1).tolist()) <= two and not set(ngram_buckets("bad", 1 << 30, 1)) & three


def test_expected_calibration_error_is_the_gap_between_confidence_and_accuracy_per_bin():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    # bin of 0.9: two texts, half right, gap 0.4; bin of 0.7 and bin of 0.6: one right each, gaps 0.3 and 0.4
    assert expected_calibration_error(probabilities, labels) == pytest.approx((2 * 0.4 + 0.3 + 0.4) / 4)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


@pytest.fixture
def stacked(reviews, tmp_path, capsys):
    """A tiny recurrent classifier, then hashed n-grams stacked on it: (recurrent run, stacked run)."""
    base = tmp_path / "base"
    assert cli.main(classify_args(reviews, base, "--max-steps", "4")) == 0
    run = tmp_path / "stacked"
    assert cli.main(["train", "--task", "classify", "--corpus", str(reviews), "--init-from", str(base), "--features",
                     "both", "--ngram-buckets", "4096", "--negation", "--out", str(run), "--device", "cpu",
                     "--precision", "fp32"]) == 0
    logged = " ".join(capsys.readouterr().err.split())
    assert re.search(r"val_examples \d+, ", logged) and re.search(r"ngram_epoch \d, ", logged)  # counts as counts
    return base, run


def test_stacked_ngrams_learn_the_words_and_each_part_is_measured_alone(stacked, reviews, capsys):
    base, run = stacked
    payload = load_checkpoint(run / "best.pt", kind="classifier")
    config = payload["classifier_config"]
    assert config["features"] == "both" and config["ngram_buckets"] == 4096 and len(config["temperatures"]) == 3
    assert payload["model"]["ngrams.weight"].shape == (4096, 2)
    # the recurrent part is the base classifier's, unchanged
    old = load_checkpoint(base / "best.pt")["model"]
    assert all(torch.equal(old[name], payload["model"][name]) for name in old)
    figures = {}
    for features in ("recurrent", "ngram", "both"):
        assert cli.main(["classify", "--model", str(run), "--eval", "--corpus", str(reviews), "--features", features,
                         "--json", "--precision", "fp32"]) == 0
        figures[features] = json.loads(capsys.readouterr().out)
        assert figures[features]["features"] == features and 0 <= figures[features]["ece"] <= 1
        assert figures[features]["texts_per_second"] > 0
    assert figures["ngram"]["accuracy"] > 0.9 and figures["both"]["accuracy"] > 0.9
    assert figures["recurrent"]["accuracy"] == pytest.approx(payload["metrics"]["recurrent_accuracy"])
    assert figures["both"]["accuracy"] == pytest.approx(payload["metrics"]["both_accuracy"])


def test_the_decisive_margin_is_as_wide_as_the_recurrent_part_ever_spread_on_validation():
    generator = torch.Generator().manual_seed(0)
    recurrent, ngram = torch.randn(400, 2, generator=generator), 3 * torch.randn(400, 2, generator=generator)
    labels = (recurrent + ngram).argmax(1)
    fitted = fit_mixture(recurrent, ngram, labels)
    weight = fitted.ngram_weight
    assert 0 < weight < 1
    spread = (1 - weight) * (recurrent.max(1).values - recurrent.min(1).values)
    assert fitted.decisive_margin == pytest.approx(float(spread.max()))
    decided = lead(weight * ngram) > fitted.decisive_margin
    assert fitted.metrics["decisive_share"] == pytest.approx(float(decided.float().mean())) and decided.any()
    mixed = (1 - weight) * recurrent + weight * ngram
    assert torch.equal(mixed[decided].argmax(1), ngram[decided].argmax(1))
    # the n-grams alone would have answered some of the others wrongly: those are read
    assert not torch.equal(mixed[~decided].argmax(1), ngram[~decided].argmax(1))


def test_texts_the_ngrams_decide_skip_the_encoder(stacked, reviews):
    _, run = stacked
    model, tokenizer, _ = load_classifier(run / "best.pt")
    texts = [json.loads(line)["text"] for line in (reviews / "validation.jsonl").read_text().splitlines()]
    with torch.no_grad():
        ngram = model.ngram_logits(*ngram_bags(texts, model.config.ngram_buckets, model.config.ngram_max))
    # a mix where the encoder counts, a margin that half the texts clear, and temperatures far apart
    margin = float(lead(0.5 * ngram).median())
    model.config = dataclasses.replace(model.config, ngram_weight=0.5, decisive_margin=margin,
                                       temperatures=(1.0, 8.0, 1.0))
    read = []
    recurrent_logits = model.recurrent_logits
    model.recurrent_logits = lambda ids, lengths: read.append(len(ids)) or recurrent_logits(ids, lengths)
    shortcut = predict(model, tokenizer, texts, torch.device("cpu"))
    decided = (lead(0.5 * ngram) > margin).numpy()
    assert sum(read) == len(texts) - decided.sum() and 0 < decided.sum() < len(texts)
    read.clear()
    model.config = dataclasses.replace(model.config, decisive_margin=0.0)  # read every text
    every = predict(model, tokenizer, texts, torch.device("cpu"), batch_size=7)
    assert sum(read) == len(texts)
    assert np.allclose(shortcut[~decided], every[~decided], atol=1e-6)
    # a text the n-grams decide gets their own calibrated probabilities
    model.config = dataclasses.replace(model.config, features="ngram")
    alone = predict(model, tokenizer, texts, torch.device("cpu"))
    assert np.allclose(shortcut[decided], alone[decided], atol=1e-6)
    assert not np.allclose(shortcut[decided], every[decided], atol=1e-3)


def test_a_classifier_reads_negations_as_its_ngrams_were_trained(stacked):
    _, run = stacked
    model, tokenizer, payload = load_classifier(run / "best.pt")
    assert payload["classifier_config"]["negation"] is True
    model.config = dataclasses.replace(model.config, features="ngram", temperatures=(1.0, 1.0, 1.0))
    texts = [f"not {NEGATIVE[0]} at all", f"never {POSITIVE[0]}", NEGATIVE[0]]
    answers = predict(model, tokenizer, texts, torch.device("cpu"))
    with torch.no_grad():
        marked, plain = (torch.softmax(model.ngram_logits(*ngram_bags(texts, 4096, 3, 0, negation)), 1).numpy()
                         for negation in (True, False))
    assert np.allclose(answers, marked, atol=1e-6) and not np.allclose(answers[:2], plain[:2], atol=1e-3)
    assert np.allclose(answers[2], plain[2], atol=1e-6)  # nothing negated


def test_a_packed_classifier_stores_its_ngram_table_relative_to_the_first_class(stacked, reviews, tmp_path):
    _, run = stacked
    packed = export_weights(run, tmp_path / "packed.pt")
    assert load_checkpoint(packed)["model"]["ngrams.weight"].shape == (4096, 1)
    texts = [json.loads(line)["text"] for line in (reviews / "validation.jsonl").read_text().splitlines()]
    answers = {}
    for name, path in (("run", run), ("packed", packed)):
        model, tokenizer, _ = load_classifier(path)
        for features in ("ngram", "both"):
            # temperatures far from the fitted 0.05, or every probability would round to 0 or 1
            model.config = dataclasses.replace(model.config, features=features, temperatures=(4.0, 4.0, 4.0))
            answers[name, features] = predict(model, tokenizer, texts, torch.device("cpu"))
    for features in ("ngram", "both"):
        assert np.allclose(answers["packed", features], answers["run", features], atol=2e-3)
        assert not np.allclose(answers["run", features], 0.5, atol=0.05)  # the texts are told apart
    assert describe_checkpoint(packed)["parameters"] == describe_checkpoint(run)["parameters"]


def test_stacking_reads_as_the_base_classifier_unless_told_to_read_the_tail(stacked, reviews, tmp_path, capsys):
    base, run = stacked
    kept = load_checkpoint(run / "best.pt")["classifier_config"]
    assert (kept["max_len"], kept["long_text"]) == (256, "whole")  # the base's, as nothing was typed
    tail = tmp_path / "tail"
    assert cli.main(["train", "--task", "classify", "--corpus", str(reviews), "--init-from", str(base), "--features",
                     "both", "--ngram-buckets", "4096", "--max-len", "6", "--long-text", "tail", "--out", str(tail),
                     "--device", "cpu", "--precision", "fp32"]) == 0
    config = load_checkpoint(tail / "best.pt")["classifier_config"]
    assert (config["max_len"], config["long_text"]) == (6, "tail")
    capsys.readouterr()
    # the recurrent part reads the last 6 characters only: what comes before them changes nothing
    answers = []
    for text in ("an awful, dull film. but great", "a fine, superb film. but great"):
        assert cli.main(["classify", "--model", str(tail), "--features", "recurrent", "--json", text]) == 0
        answers.append(json.loads(capsys.readouterr().out)["probabilities"])
    assert answers[0] == pytest.approx(answers[1], abs=1e-6)


def test_averaged_ngram_runs_are_reproducible_and_differ_from_one_run():
    torch.manual_seed(0)
    model_config = ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=20)
    rng = np.random.default_rng(0)
    bags = [np.unique(rng.integers(0, 64, 5)) for _ in range(200)]
    labels = np.array([int((bag < 32).sum() > len(bag) / 2) for bag in bags])

    def fitted(seed: int, runs: int) -> torch.Tensor:
        model = Classifier(model_config, ClassifierConfig(label_names=("neg", "pos"), ngram_buckets=64))
        train_ngrams(model, bags, labels, bags[:20], lambda logits: {"val_loss": 0.0}, seed, epochs=1, runs=runs)
        return model.ngrams.weight.detach().clone()

    averaged = fitted(0, runs=3)
    assert torch.equal(averaged, fitted(0, runs=3))
    assert not torch.equal(averaged, fitted(0, runs=1)) and not torch.equal(averaged, fitted(1, runs=3))
    logits = averaged[:, 1] - averaged[:, 0]
    assert (logits[:32].mean() > 0) and (logits[32:].mean() < 0)  # buckets below 32 say "pos"


def test_a_features_choice_the_classifier_lacks_is_one_line(stacked, capsys):
    base, _ = stacked
    assert cli.main(["classify", "--model", str(base), "--features", "ngram", "a good film"]) == 1
    err = capsys.readouterr().err
    assert "--features ngram needs hashed word n-grams, and this classifier has none" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["train", "--task", "classify", "--corpus", "x", "--features", "both"]) == 1
    assert "--features both needs hashed word n-grams" in capsys.readouterr().err


def test_stacking_needs_a_trained_classifier_to_stack_on(reviews, tmp_path, capsys):
    assert cli.main(["train", "--task", "classify", "--corpus", str(reviews), "--features", "both",
                     "--ngram-buckets", "64", "--out", str(tmp_path / "run"), "--device", "cpu"]) == 1
    assert "give --init-from a classifier" in capsys.readouterr().err


def test_bad_texts_get_one_answer_each_and_a_long_line_stays_bounded(stacked, tmp_path, capsys):
    _, run = stacked
    texts = ["?!...", "Ein Film, 映画は素晴らしい — très bien", "the film was superb " * 2000]
    assert cli.main(["classify", "--model", str(run), "--json", *texts]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [answer["text"] for answer in answers] == texts
    assert all(abs(sum(answer["probabilities"].values()) - 1) < 1e-5 for answer in answers)
    assert cli.main(["classify", "--model", str(run), "fine", ""]) == 1
    err = capsys.readouterr().err
    assert "text 2 is empty" in err and "Traceback" not in err
    # 5 MB in one line, through the n-grams alone: one answer (the encoder path is covered by the chunk tests)
    line = tmp_path / "long.txt"
    line.write_text(("a good film, " * 400_000)[:5_000_000] + "\n")
    assert cli.main(["classify", "--model", str(run), "--features", "ngram", "--file", str(line), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["label"] in ("0", "1")


def test_texts_keep_their_order_when_batched_by_length(stacked, capsys):
    _, run = stacked
    texts = [r["text"] * (1 + i % 3) for i, r in enumerate(labelled_rows(20, 5))]
    assert cli.main(["classify", "--model", str(run), "--json", "--batch-size", "4", *texts]) == 0
    batched = [json.loads(line)["probabilities"] for line in capsys.readouterr().out.splitlines()]
    for text, probabilities in zip(texts[:4], batched):
        assert cli.main(["classify", "--model", str(run), "--json", text]) == 0
        alone = json.loads(capsys.readouterr().out)["probabilities"]
        assert alone == pytest.approx(probabilities, abs=1e-5)


def test_a_checkpoint_from_before_ngrams_still_loads_and_classifies(tmp_path, capsys):
    """The classifier_config of a checkpoint written before this change lacks every n-gram field."""
    tokenizer = CharTokenizer.from_texts(["abcdefgh good bad"])
    torch.manual_seed(0)
    model_config = ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size)
    model = Classifier(model_config, ClassifierConfig(label_names=("neg", "pos")))
    old_config = {key: value for key, value in to_dict(model.config).items()
                  if key not in ("features", "ngram_buckets", "ngram_max", "ngram_weight", "temperatures")}
    save_checkpoint(tmp_path / "old.pt", {"kind": "classifier", "model_config": to_dict(model_config),
                                          "classifier_config": old_config, "tokenizer": tokenizer.to_data(),
                                          "model": model.state_dict(), "step": 1})
    assert cli.main(["classify", "--model", str(tmp_path / "old.pt"), "--json", "good", "bad"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 2 and all(answer["label"] in ("neg", "pos") for answer in answers)
    assert cli.main(["classify", "--model", str(tmp_path / "old.pt"), "--features", "both", "good"]) == 1
    assert "has none" in capsys.readouterr().err


def test_a_stacked_checkpoint_from_before_the_shortcut_reads_every_text(stacked, reviews, tmp_path):
    """Written before decisive margins and negation scopes: its config lacks both fields."""
    _, run = stacked
    payload = load_checkpoint(run / "best.pt")
    payload["classifier_config"] = {key: value for key, value in payload["classifier_config"].items()
                                    if key not in ("decisive_margin", "negation")}
    save_checkpoint(tmp_path / "old.pt", payload)
    model, tokenizer, _ = load_classifier(tmp_path / "old.pt")
    assert model.config.decisive_margin == 0.0 and model.config.negation is False
    texts = [json.loads(line)["text"] for line in (reviews / "validation.jsonl").read_text().splitlines()]
    read = []
    recurrent_logits = model.recurrent_logits
    model.recurrent_logits = lambda ids, lengths: read.append(len(ids)) or recurrent_logits(ids, lengths)
    probabilities = predict(model, tokenizer, texts, torch.device("cpu"))
    assert sum(read) == len(texts) and probabilities.shape == (len(texts), 2)


def test_the_bundled_sentiment_loads_with_every_part_it_has(capsys):
    payload = load_checkpoint("sentiment")
    choices = ["recurrent"] + (["ngram", "both"] if payload["classifier_config"].get("ngram_buckets") else [])
    for features in choices:
        assert cli.main(["classify", "--features", features, "--json", "not bad at all"]) == 0
        assert json.loads(capsys.readouterr().out)["label"] in ("neg", "pos")


@pytest.mark.parametrize("extra, message", [
    (["--ngram-buckets", "64"], "adds an n-gram table that --features recurrent never trains"),
    (["--char-ngrams", "5"], "--char-ngrams 5 hashes into the n-gram table, and there is none")])
def test_an_ngram_setting_that_would_do_nothing_is_refused(reviews, tmp_path, capsys, extra, message):
    # issue 34: an all-zero table trained beside the encoder answered 0.5; --char-ngrams was dropped silently
    assert cli.main(["train", "--task", "classify", "--corpus", str(reviews), *extra, "--out", str(tmp_path / "run"),
                     "--device", "cpu", "--max-steps", "1"]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_long_text_read_in_slices_lands_in_the_buckets_it_lands_in_whole(monkeypatch):
    """Slices cut scopes and n-grams mid-way ("don't | like", "not | bad"): both carry across."""
    import random

    from textgen.data import tokenizer
    rng = random.Random(0)
    vocabulary = ["not", "bad", "don't", "like", "it", "good", ",", ".", "never", "boring", "at", "all", "a\nb"]
    text = " ".join(rng.choice(vocabulary) for _ in range(3000))
    settings = [(chars, negation, words, sign) for chars in (0, 5)
                for negation, words, sign in ((False, 0, False), (True, 0, False), (True, 2, False), (True, 0, True))]
    whole = {setting: ngram_buckets(text, 1 << 20, 3, *setting) for setting in settings}
    for size in (7, 40, 333):
        monkeypatch.setattr(tokenizer, "SLICE_CHARS", size)
        assert len(list(text_slices(text))) > 10
        for setting, expected in whole.items():
            assert np.array_equal(ngram_buckets(text, 1 << 20, 3, *setting), expected), (size, setting)
