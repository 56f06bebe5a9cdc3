"""Evaluation computes and changes nothing: not the model, not its mode, not the training policy
(unfreezing and patience follow an evaluation in the loop). One formula gives bits per character."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from textgen.data.batches import LabelledBatches, StreamBatches
from textgen.config import ClassifierConfig, FinetuneConfig, ModelConfig
from textgen.training.distributed import Distributed
from textgen.metrics import bits_per_char
from textgen.training.validation import classifier_metrics, language_model_metrics
from textgen.nn.model import Classifier, LanguageModel
from textgen.training.tasks import ClassificationTask, LanguageModelTask


def test_bits_per_char_is_nats_over_ln_2_per_character():
    assert bits_per_char(3 * math.log(2), 3) == pytest.approx(1.0)
    assert bits_per_char(2.0, 4.0) == pytest.approx(2.0 / math.log(2) / 4.0)


def weights(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


def test_a_language_model_evaluation_leaves_the_model_its_mode_and_the_task_as_they_were():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(num_layers=1, hidden_size=16, embed_size=16, vocab_size=12))
    tokens = np.random.default_rng(0).integers(0, 12, 400).astype(np.uint16)
    streams = StreamBatches(tokens, 4, 16)
    task = LanguageModelTask(streams, streams, chars_per_token=1.0)
    before = weights(model)
    model.train()
    first = task.evaluate(model, torch.device("cpu"), Distributed())
    assert model.training and task.after_evaluation(first) == {}
    assert task.evaluate(model, torch.device("cpu"), Distributed()) == first
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    model.eval()
    assert language_model_metrics(model, streams, 1.0, torch.device("cpu")) == first and not model.training
    assert first["bits_per_char"] == pytest.approx(bits_per_char(first["val_loss"], 1.0))
    assert first["val_tokens"] == 396  # 4 streams of 99 targets


def test_a_classifier_evaluation_changes_no_training_policy_until_the_loop_applies_it():
    torch.manual_seed(0)
    model = Classifier(ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=10),
                       ClassifierConfig(head_hidden=8, label_names=("neg", "pos")))
    batches = LabelledBatches([np.array([3, 4])] * 4, np.array([0, 1, 0, 1]), 2, pad_id=0)
    task = ClassificationTask(batches, batches, FinetuneConfig(init_from="x", patience=1), group_count=3,
                              pretrained=True, dist=Distributed())
    metrics = task.evaluate(model, torch.device("cpu"), Distributed())
    assert task.evaluate(model, torch.device("cpu"), Distributed()) == metrics
    assert task.lr_scales[:2] == [0.0, 0.0] and not task.should_stop
    assert metrics == classifier_metrics(model, batches.epoch(0), torch.device("cpu"))
    assert set(metrics) == {"val_loss", "accuracy", "val_examples"} and metrics["val_examples"] == 4
    assert task.after_evaluation(metrics) == {"unfrozen_groups": 2}
    task.after_evaluation(metrics)  # no better accuracy: one stale evaluation reaches patience 1
    assert task.should_stop


def test_adapting_as_it_reads_gains_on_a_repetitive_text_and_never_writes_the_model(capsys):
    """eval --adapt (issue 31): each segment is scored before the step it leads to; the unchanged
    reading is what `eval --text` scores; the model file is the same afterwards."""
    import hashlib
    import json

    from textgen import cli
    from textgen.nn.checkpoint import resolve_checkpoint_path
    path = resolve_checkpoint_path("shakespeare")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    text = "Zanzibar the quokka ate the mango. " * 30
    assert cli.main(["eval", "--model", "shakespeare", "--text", text, "--json", "--device", "cpu"]) == 0
    static = json.loads(capsys.readouterr().out)["bits_per_char"]
    assert cli.main(["eval", "--model", "shakespeare", "--text", text, "--adapt", "--json", "--device", "cpu"]) == 0
    adapted = json.loads(capsys.readouterr().out)
    assert abs(adapted["bits_per_char_static"] - static) < 1e-3
    assert adapted["bits_per_char"] < static - 0.2 and adapted["gain"] > 0.2
    import textgen  # the Python API reads the same way
    by_api = textgen.load("shakespeare", device="cpu").score_adapting(text)
    assert abs(by_api["bits_per_char"] - adapted["bits_per_char"]) < 1e-4
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    # no step at all: the adapted reading is the unchanged one
    assert cli.main(["eval", "--model", "shakespeare", "--text", text, "--adapt", "--adapt-lr", "1e-30", "--json",
                     "--device", "cpu"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["gain"]) < 1e-4



def test_a_text_shorter_than_one_segment_gains_nothing_and_says_so_without_a_minus_sign(capsys):
    """One segment is scored before any step, by two identical predictions: the gain is nothing, and
    the line says 0.0000 (the float difference once printed -0.0000); JSON gives it rounded too."""
    import json

    from textgen import cli
    argv = ["eval", "--model", "english", "--text", "Hello there. A short note.", "--adapt", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "(a gain of 0.0000;" in capsys.readouterr().out
    assert cli.main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["gain"] == 0 and result["gain"] == round(result["gain"], 4)

def test_adapting_leans_on_the_trained_model_where_adapting_only_hurts(capsys):
    """eval --adapt scores a mixture of the adapting model's prediction and the trained model's, the
    shares learnt as it reads from what it has scored (issue 31): with a step size that wrecks the
    adapting model, the trained model's share grows and the figure stays near the unchanged one."""
    import json

    from textgen import cli
    text = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 12
    assert cli.main(["eval", "--model", "shakespeare", "--text", text, "--adapt", "--adapt-lr", "0.05", "--json",
                     "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bits_per_char_adapting"] > result["bits_per_char_static"] + 1.0  # adapting alone is wrecked
    assert result["bits_per_char"] < result["bits_per_char_static"] + 0.3
    assert result["trained_share"] > 0.8


@pytest.mark.parametrize("argv, message", [
    (["--model", "sentiment", "--text", "a fine film"], "classifier"),
    (["--text", "abc", "--batch-size", "4"], "drop --batch-size"),
    (["--text", "abc", "--adapt-lr", "0"], "--adapt-lr"),
    (["--text", "abc", "--adapt-decay", "-1"], "--adapt-decay"),
])
def test_adapting_refuses_what_it_cannot_do_in_one_line(argv, message, capsys):
    from textgen import cli
    assert cli.main(["eval", "--adapt", "--device", "cpu", *argv]) in (1, 2)
    error = capsys.readouterr().err
    assert message in error and error.strip().count("\n") <= 2, error


def test_eval_of_one_file_scores_all_of_it_as_its_bytes_are(tmp_path, capsys):
    """Issue 32: `eval --corpus FILE` scores the whole file (no carved split), and (issue 31) keeps
    its CRLF line ends, so bits per byte compare with a compressor's on the same file."""
    import json

    from textgen import cli
    lines = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer"] * 20
    unix, windows = tmp_path / "unix.txt", tmp_path / "windows.txt"
    unix.write_bytes("\n".join(lines).encode())
    windows.write_bytes("\r\n".join(lines).encode())
    results = {}
    for path in (unix, windows):
        assert cli.main(["eval", "--model", "shakespeare", "--corpus", str(path), "--json", "--device", "cpu"]) == 0
        results[path.name] = json.loads(capsys.readouterr().out)
    assert results["unix.txt"]["tokens"] == unix.stat().st_size == results["unix.txt"]["bytes"]
    assert results["windows.txt"]["tokens"] == windows.stat().st_size  # every \r read and paid for
    assert results["windows.txt"]["bits_per_byte"] > results["unix.txt"]["bits_per_byte"]
    # the same reading as `eval --text` of the whole text
    assert cli.main(["eval", "--model", "shakespeare", "--text", unix.read_text(), "--json", "--device", "cpu"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["bits_per_char"] - results["unix.txt"]["bits_per_char"]) < 1e-3


def test_sample_adapt_on_a_document_writes_its_names_and_leaves_the_model_alone(tmp_path, capsys):
    """sample --adapt-on (issue 31): a model fitted to one document in seconds, no training run."""
    import hashlib

    import textgen
    from textgen import cli
    from textgen.nn.checkpoint import resolve_checkpoint_path
    document = tmp_path / "doc.txt"
    document.write_text('Mr. Quentin Zorbaugh of Xanadu Street met Mrs. Zorbaugh. Quentin said: "Xanadu!"\n' * 30)
    path = resolve_checkpoint_path("english")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    argv = ["sample", "--model", "english", "--prompt", "Mr. Quentin", "--length", "200", "--seed", "0",
            "--temperature", "0.5", "--device", "cpu"]
    assert cli.main(argv) == 0
    plain = capsys.readouterr().out
    assert cli.main([*argv, "--adapt-on", str(document)]) == 0
    adapted = capsys.readouterr().out
    assert adapted.count("Zorbaugh") >= 2 > plain.count("Zorbaugh")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    # the Python API: a new generator; the loaded one writes as before
    model = textgen.load("english", device="cpu")
    first = model.generate("Mr. Quentin", length=60, seed=0, temperature=0.5)
    adapted = model.adapted(document.read_text())
    assert "Zorbaugh" in adapted.generate("Mr. Quentin", length=60, seed=0, temperature=0.5)
    assert model.generate("Mr. Quentin", length=60, seed=0, temperature=0.5) == first


@pytest.mark.parametrize("content, message", [(None, "cannot be read"), (b"", "holds no text"),
                                               (b"\xff\xfe\x00\x9c" * 10, "cannot be read")])
def test_sample_adapt_on_a_missing_empty_or_binary_file_is_one_line(content, message, tmp_path, capsys):
    from textgen import cli
    document = tmp_path / "doc.txt"
    if content is not None:
        document.write_bytes(content)
    assert cli.main(["sample", "--adapt-on", str(document), "--length", "5", "--device", "cpu"]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("textgen: error") == 1, error

def test_the_shipped_example_by_its_bare_name_is_scored_and_adapted_to_whole(tmp_path, capsys, monkeypatch):
    # the train summary and docs name my_text.txt bare, read from textgen/examples where no such file is here
    import json

    from textgen import cli
    monkeypatch.chdir(tmp_path)
    shipped = Path(__file__).resolve().parent.parent / "textgen" / "examples" / "my_text.txt"
    for extra in ([], ["--adapt"]):
        assert cli.main(["eval", "--model", "shakespeare", "--corpus", "my_text.txt", "--json", "--device", "cpu",
                         *extra]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["split"] is None and result["bytes"] == shipped.stat().st_size
    # and sample --adapt-on, as the README names it
    assert cli.main(["sample", "--model", "shakespeare", "--adapt-on", "my_text.txt", "--length", "5", "--seed", "0",
                     "--device", "cpu"]) == 0



@pytest.mark.parametrize("adapt", [[], ["--adapt"]])
def test_eval_of_an_empty_file_says_the_file_is_empty(adapt, tmp_path, capsys):
    """An empty file to score is named as such, not as an empty training text."""
    from textgen import cli
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert cli.main(["eval", "--model", "shakespeare", "--corpus", str(empty), "--device", "cpu", *adapt]) == 1
    error = capsys.readouterr().err
    assert "empty.txt is empty" in error and "training" not in error and error.count("textgen: error") == 1, error
