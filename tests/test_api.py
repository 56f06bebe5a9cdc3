"""The Python API: `textgen.load(...)` to generate, stream, score and classify, `textgen.train(...)`
to train, each giving what the CLI gives for the same request."""

import json
import subprocess
import sys

import pytest

import textgen
from textgen.cli import main
from textgen.errors import CheckpointError, ConfigError, TextgenError


def test_import_textgen_stays_fast_by_loading_the_api_on_first_use():
    code = "import sys, textgen; assert 'torch' not in sys.modules; textgen.load; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_bundled_language_model_generates_a_continuation_of_the_asked_length():
    text = textgen.load("shakespeare").generate("ROMEO:", length=200, temperature=0.8, seed=0)
    assert isinstance(text, str) and len(text) == 200


def test_stream_yields_in_pieces_the_text_generate_returns():
    generator = textgen.load("shakespeare", device="cpu")
    pieces = list(generator.stream("ROMEO:", length=40, temperature=0.8, seed=3))
    assert len(pieces) > 1
    assert "".join(pieces) == generator.generate("ROMEO:", length=40, temperature=0.8, seed=3)


def test_generate_gives_what_the_sample_command_prints(capsys):
    text = textgen.load("shakespeare").generate("ROMEO:", length=60, seed=0)
    assert main(["sample", "--model", "shakespeare", "--prompt", "ROMEO:", "--length", "60", "--seed", "0"]) == 0
    assert capsys.readouterr().out == "ROMEO:" + text + "\n"


def test_score_and_evaluate_give_what_the_eval_command_prints(corpus, capsys):
    generator = textgen.load("shakespeare")
    assert main(["eval", "--model", "shakespeare", "--text", "ROMEO: hello", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(generator.score("ROMEO: hello"))
    assert main(["eval", "--model", "shakespeare", "--corpus", str(corpus), "--split", "validation", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert generator.evaluate(str(corpus), split="validation") == pytest.approx(printed)
    assert 1.0 < printed["bits_per_char"] < 8.0


def test_a_bundled_classifier_labels_texts_with_probabilities():
    classifier = textgen.load("sentiment")
    predictions = classifier.classify(["a gripping, beautiful film", "dull, and far too long"])
    assert [p.text for p in predictions] == ["a gripping, beautiful film", "dull, and far too long"]
    for prediction in predictions:
        assert prediction.label in classifier.label_names
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
        assert prediction.probability == max(prediction.probabilities.values())
    assert [p.label for p in predictions] == ["pos", "neg"]
    assert classifier.classify("a gripping, beautiful film")[0].label == "pos"


def test_load_with_a_kind_refuses_a_model_of_the_other_kind():
    with pytest.raises(CheckpointError, match="holds a classifier, but this command needs a language model"):
        textgen.load("sentiment", kind="language_model")


def test_train_returns_the_run_with_its_folder_and_metrics(corpus, tmp_path):
    run = textgen.train(corpus=corpus, out=tmp_path / "run", preset="tiny", max_steps=4, device="cpu",
                        precision="fp32")
    assert run.folder == tmp_path / "run" and (run.folder / "best.pt").is_file()
    assert run.step == 4 and run.stop_reason == "max_steps"
    assert run.metrics["bits_per_char"] > 0
    assert len(run.load().generate("the ", length=10, seed=0)) == 10


def test_train_refuses_a_setting_no_config_has():
    with pytest.raises(ConfigError, match="train\\(\\) has no setting hiden_size"):
        textgen.train(corpus="tiny_shakespeare", hiden_size=64)


@pytest.fixture(scope="module")
def shakespeare():
    return textgen.load("shakespeare", device="cpu")


@pytest.fixture(scope="module")
def sentiment():
    return textgen.load("sentiment", device="cpu")


# issue 34: each of these was a bare builtin exception from a deep frame (or, for fp8, accepted)
@pytest.mark.parametrize("call, message", [
    (lambda lm, clf: lm.complete("The", top=0), "--top must be a whole number from 1 to 100, got 0"),
    (lambda lm, clf: lm.complete("The", top=-1), "--top must be"),
    (lambda lm, clf: clf.classify([None]), "--texts must be a text, got None"),
    (lambda lm, clf: clf.classify(None), "texts must be a text or a list of texts"),
    (lambda lm, clf: clf.classify(b"great"), "texts must be a text or a list of texts"),
    (lambda lm, clf: clf.classify(["good", ""]), "text 2 is empty"),
    (lambda lm, clf: textgen.load("shakespeare", kind="lm"), "kind 'lm' is not one of"),
    (lambda lm, clf: textgen.load("shakespeare", device="gpu"), "--device 'gpu' is not one of"),
    (lambda lm, clf: textgen.load("sentiment", precision="fp8"), "--precision 'fp8' is not one of"),
    (lambda lm, clf: textgen.load(None), "model must be a bundled name"),
    (lambda lm, clf: lm.generate(None), "--prompt needs a value"),
    (lambda lm, clf: lm.generate(b"ROMEO"), "--prompt must be a text"),
    (lambda lm, clf: lm.generate("x", lenght=5), "no sampling setting 'lenght'; the settings are: length"),
    (lambda lm, clf: list(lm.stream("x", num_samples=2)), "stream() gives one text"),
    (lambda lm, clf: lm.generate("x", num_samples=3), "generate() gives one text, and these settings ask for 3"),
])
def test_the_api_refuses_a_bad_value_with_one_line_as_the_cli_does(shakespeare, sentiment, call, message):
    with pytest.raises(TextgenError) as caught:
        call(shakespeare, sentiment)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_classifying_no_texts_gives_no_predictions(sentiment):
    assert sentiment.classify([]) == [] and sentiment.probabilities([]).shape == (0, 2)


def test_samples_gives_every_sample_a_label_list_asks_for():
    generator = textgen.load("reviews-label", device="cpu")
    texts = generator.samples("This film", label=["pos", "neg"], length=30, seed=3)
    assert texts == [generator.generate("This film", label=label, length=30, seed=seed)
                     for seed, label in ((3, "pos"), (4, "neg"))]
