import json

import numpy as np
import pytest
import torch

from textgen import cli
from textgen.nn.checkpoint import load_checkpoint
from textgen.metrics import classification_metrics
from textgen.config import ClassifierConfig, FinetuneConfig, ModelConfig
from textgen.nn.model import Classifier
from textgen.training.distributed import Distributed
from textgen.training.tasks import ClassificationTask

POSITIVE = "good great lovely fine superb warm".split()
NEGATIVE = "bad awful dull poor grim cold".split()
FILLER = "the film was and its plot a cast".split()


def labelled_rows(count, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(FILLER, 3)) + list(rng.choice(POSITIVE if label else NEGATIVE, 2))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture
def reviews(tmp_path):
    """A tiny labelled corpus folder: train.jsonl and validation.jsonl with a learnable signal."""
    folder = tmp_path / "reviews"
    folder.mkdir()
    for split, count, seed in (("train", 240, 0), ("validation", 60, 1)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labelled_rows(count, seed)))
    return folder


@pytest.fixture
def lm_corpus(tmp_path):
    path = tmp_path / "lm.txt"
    path.write_text("".join(r["text"] + ".\n" for r in labelled_rows(400, 2)))
    return path


def tiny_classifier(**overrides):
    torch.manual_seed(0)
    model_config = ModelConfig(num_layers=2, hidden_size=12, embed_size=8, vocab_size=20, dropout=0.0)
    return Classifier(model_config, ClassifierConfig(label_names=("neg", "pos"), **overrides)).eval()


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_token_dropout_drops_whole_tokens_while_training_and_none_at_evaluation():
    model = tiny_classifier(token_dropout=0.5)
    seen = []
    model.rnn.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    ids = torch.randint(1, 20, (4, 50), generator=torch.Generator().manual_seed(0))
    lengths = torch.full((4,), 50)
    model.train()(ids, lengths)
    model.eval()(ids, lengths)
    training, evaluation = seen
    embedded = model.embedding(ids).detach()
    torch.testing.assert_close(evaluation, embedded)
    dropped = (training == 0).all(-1)
    assert 0.3 < dropped.float().mean() < 0.7  # about half the tokens, each dropped whole
    torch.testing.assert_close(training[~dropped], 2 * embedded[~dropped])  # the rest scaled by 1 / (1 - p)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_text_alone_and_in_a_padded_batch_get_the_same_probabilities(bidirectional):
    model = tiny_classifier(bidirectional=bidirectional)
    short = torch.tensor([[3, 4, 5]])
    alone = torch.softmax(model(short, torch.tensor([3])), dim=1)
    batch = torch.tensor([[3, 4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 10, 11, 12]])
    together = torch.softmax(model(batch, torch.tensor([3, 7])), dim=1)
    torch.testing.assert_close(together[0:1], alone)


def test_the_batch_norm_head_trains_on_a_lone_text_and_labels_it_alone_or_in_a_batch():
    model = tiny_classifier(head_norm=True).train()
    norms = [module for module in model.head if isinstance(module, torch.nn.BatchNorm1d)]
    width = 3 * (model.rnn.proj_size or 12)  # pooled features: last, max and mean of the top layer
    assert [norm.num_features for norm in norms] == [width, 64]
    ids = torch.randint(1, 20, (4, 9), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([9, 7, 5, 3])
    model(ids, lengths)  # a batch updates the running statistics
    seen = norms[0].running_mean.clone()
    model(ids[:1], lengths[:1]).sum().backward()  # a lone text (an epoch's remainder) trains too
    torch.testing.assert_close(norms[0].running_mean, seen)  # without statistics of its own
    assert all(norm.training for norm in norms)
    model.eval()
    alone = torch.softmax(model(ids[2:3, :5], lengths[2:3]), dim=1)
    together = torch.softmax(model(ids, lengths), dim=1)
    torch.testing.assert_close(together[2:3], alone)


def test_layer_groups_hold_every_parameter_once_bottom_up():
    model = tiny_classifier()
    groups = model.layer_groups()
    assert len(groups) == 4  # embedding, two recurrent layers, head
    ids = [id(p) for group in groups for p in group]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert groups[0][0] is model.embedding.weight


def test_gradual_unfreezing_thaws_one_group_per_evaluation_with_discriminative_rates():
    from textgen.data.batches import LabelledBatches

    batches = LabelledBatches([np.array([3, 4])] * 4, np.array([0, 1, 0, 1]), 2, pad_id=0)
    task = ClassificationTask(batches, batches, FinetuneConfig(init_from="x", layer_lr_decay=2.0),
                              group_count=3, pretrained=True, dist=Distributed())
    assert task.lr_scales == [0.0, 0.0, 1.0]
    task.after_evaluation(task.evaluate(tiny_classifier(), torch.device("cpu"), Distributed()))
    assert task.lr_scales == [0.0, 0.5, 1.0]
    scratch = ClassificationTask(batches, batches, FinetuneConfig(), group_count=3, pretrained=False,
                                 dist=Distributed())
    assert scratch.lr_scales == [1.0, 1.0, 1.0]


def test_classification_metrics_count_the_confusion_matrix():
    metrics = classification_metrics(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), ["neg", "pos"])
    assert metrics["confusion"] == [[1, 1], [1, 2]]
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def classify_args(corpus, out, *extra, shape=("--layers", "1", "--hidden", "32", "--embed", "16")):
    return ["train", "--task", "classify", "--corpus", str(corpus), "--out", str(out), "--device", "cpu",
            "--precision", "fp32", *shape, "--batch-size", "16", "--lr", "1e-2", *extra]


def test_a_classifier_trained_from_scratch_learns_and_labels_texts(reviews, tmp_path, capsys):
    run = tmp_path / "clf"
    assert cli.main(classify_args(reviews, run, "--max-steps", "90", "--eval-interval", "30")) == 0
    payload = load_checkpoint(run / "best.pt", kind="classifier")
    assert payload["best_metrics"]["accuracy"] > 0.8
    capsys.readouterr()
    assert cli.main(["classify", "--model", str(run), "--json", "the film was superb and lovely",
                     "a dull and awful plot"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = payload["classifier_config"]["label_names"]
    assert [line["label"] for line in lines] == [names[1], names[0]]
    assert all(0.5 <= line["probability"] <= 1 for line in lines)

    assert cli.main(["classify", "--model", str(run), "--eval", "--corpus", str(reviews), "--split",
                     "validation", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 60 and metrics["accuracy"] > 0.8
    assert sum(map(sum, metrics["confusion"])) == 60


def test_a_classifier_from_a_language_model_fine_tunes_it_first(lm_corpus, reviews, tmp_path, capsys):
    lm_run = tmp_path / "lm"
    assert cli.main(["train", "--corpus", str(lm_corpus), "--preset", "tiny", "--out", str(lm_run),
                     "--max-steps", "6", "--device", "cpu", "--precision", "fp32"]) == 0
    run = tmp_path / "clf"
    assert cli.main(classify_args(reviews, tmp_path / "other", "--init-from", str(lm_run), "--max-steps", "2",
                                  shape=("--hidden", "32"))) == 1
    assert "--hidden 32 would change the pretrained encoder from --init-from" in capsys.readouterr().err
    assert cli.main(classify_args(reviews, run, "--init-from", str(lm_run), "--lm-finetune-steps", "4",
                                  "--max-steps", "30", "--seq-len", "16", "--embed-dropout", "0.25",
                                  shape=("--layers", "1"))) == 0
    assert load_checkpoint(run / "lm" / "last.pt", kind="language_model")["step"] == 4
    payload = load_checkpoint(run / "last.pt", kind="classifier")
    lm_payload = load_checkpoint(lm_run / "last.pt")
    # the shape is the language model's; the dropouts may be set for fine-tuning
    assert payload["model_config"] == {**lm_payload["model_config"], "embed_dropout": 0.25}
    assert payload["tokenizer"] == lm_payload["tokenizer"]
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"accuracy"' in l]
    assert [r["unfrozen_groups"] for r in records] == [2, 3]  # embedding, one LSTM layer, head


def test_the_classifier_flags_the_wrong_kind_of_checkpoint_and_empty_text(reviews, lm_corpus, tmp_path, capsys):
    lm_run = tmp_path / "lm"
    assert cli.main(["train", "--corpus", str(lm_corpus), "--preset", "tiny", "--out", str(lm_run),
                     "--max-steps", "2", "--device", "cpu", "--precision", "fp32"]) == 0
    capsys.readouterr()
    assert cli.main(["classify", "--model", str(lm_run), "some text"]) == 1
    assert "holds a language model, but this command needs a classifier" in capsys.readouterr().err

    run = tmp_path / "clf"
    assert cli.main(classify_args(reviews, run, "--max-steps", "2")) == 0
    capsys.readouterr()
    assert cli.main(["classify", "--model", str(run), "fine", "   "]) == 1
    assert "text 2 is empty" in capsys.readouterr().err

    table = tmp_path / "texts.csv"
    table.write_text("review,stars\ngood film,5\n")
    assert cli.main(["classify", "--model", str(run), "--file", str(table)]) == 1
    assert "columns: review, stars" in capsys.readouterr().err
    assert cli.main(["classify", "--model", str(run), "--file", str(table), "--text-column", "review",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "good film"

    assert cli.main(["classify", "--model", str(run), "--eval", "--corpus", str(lm_corpus)]) == 1
    assert "label" in capsys.readouterr().err


def test_bidirectional_needs_training_from_scratch(reviews, tmp_path, capsys):
    assert cli.main(classify_args(reviews, tmp_path / "c", "--init-from", str(tmp_path), "--bidirectional",
                                  "--max-steps", "2")) == 1
    assert "--bidirectional needs a classifier trained from scratch" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_long_text_read_in_chunks_gets_the_probabilities_of_one_pass(cell):
    torch.manual_seed(0)
    model_config = ModelConfig(cell=cell, num_layers=2, hidden_size=12, embed_size=8, vocab_size=20, dropout=0.0)
    one_pass = Classifier(model_config, ClassifierConfig(label_names=("neg", "pos"), max_len=10_000)).eval()
    chunked = Classifier(model_config, ClassifierConfig(label_names=("neg", "pos"), max_len=64)).eval()
    chunked.load_state_dict(one_pass.state_dict())
    ids = torch.randint(1, 20, (3, 1_000), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([1_000, 700, 64])  # ends mid-chunk, on a chunk edge, in the first chunk
    with torch.no_grad():
        expected = torch.softmax(one_pass(ids, lengths), dim=1)
        got = torch.softmax(chunked(ids, lengths), dim=1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_training_on_chunks_backpropagates_through_the_last_chunk_only():
    torch.manual_seed(0)
    model_config = ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=20, dropout=0.0)
    model = Classifier(model_config, ClassifierConfig(label_names=("neg", "pos"), max_len=16)).train()
    ids = torch.randint(1, 20, (2, 40))
    seen = []
    model.rnn.register_forward_hook(lambda module, inputs, output: seen.append(output[0].requires_grad))
    model(ids, torch.tensor([40, 40])).sum().backward()
    assert seen == [False, False, True]  # chunks 0-15 and 16-31 without a graph, 32-39 with one
    assert model.embedding.weight.grad[ids[:, 32:].unique()].abs().sum() > 0
    assert model.embedding.weight.grad[sorted(set(ids[:, :32].flatten().tolist()) - set(ids[:, 32:].flatten().tolist()))].abs().sum() == 0


def test_a_classifier_is_evaluated_on_a_folder_holding_only_test_rows_with_integer_labels(reviews, tmp_path, capsys):
    named = tmp_path / "named"  # the classifier learns label names, the held-out rows have ids
    named.mkdir()
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in (reviews / f"{split}.jsonl").read_text().splitlines()]
        (named / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": row["text"], "label": ["neg", "pos"][row["label"]]}) + "\n" for row in rows))
    run = tmp_path / "clf"
    assert cli.main(classify_args(named, run, "--max-steps", "60", "--eval-interval", "30")) == 0
    assert list(load_checkpoint(run / "best.pt")["classifier_config"]["label_names"]) == ["neg", "pos"]
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    (held_out / "test.jsonl").write_text((reviews / "validation.jsonl").read_text())
    capsys.readouterr()
    assert cli.main(["classify", "--model", str(run), "--eval", "--corpus", str(held_out), "--split", "test",
                     "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["examples"] == 60 and json.loads(captured.out)["accuracy"] > 0.8
    assert "integer labels taken by position as the classifier's: 0 = neg, 1 = pos" in captured.err
    assert cli.main(["classify", "--model", str(run), "--eval", "--corpus", str(held_out), "--split",
                     "validation"]) == 1
    assert "has no training split (has test); add train.<ext>, or evaluate one of those with --split" in \
        capsys.readouterr().err


def test_labels_match_by_name_or_by_position_and_otherwise_say_why():
    from textgen.metrics import match_labels
    from textgen.errors import TextgenError

    assert match_labels(["pos", "neg"], ["neg", "pos"])[0].tolist() == [1, 0]
    assert match_labels(["pos"], ["neg", "pos"]) == (np.array([1]), None)
    ids, note = match_labels(["0", "1"], ["neg", "pos"])
    assert ids.tolist() == [0, 1] and "0 = neg, 1 = pos" in note
    with pytest.raises(TextgenError, match=r"labels \(bad, good\) are not the classifier's \(neg, pos\)"):
        match_labels(["bad", "good"], ["neg", "pos"])
    with pytest.raises(TextgenError, match="integer labels 0..1"):
        match_labels(["0", "1", "2"], ["neg", "pos"])


def test_a_classifier_goes_on_fine_tuning_from_a_classifier_and_keeps_its_head_when_the_labels_match(
        reviews, tmp_path, capsys):
    first = tmp_path / "first"
    assert cli.main(classify_args(reviews, first, "--max-steps", "60", "--eval-interval", "30")) == 0
    before = load_checkpoint(first / "best.pt")
    again = tmp_path / "again"
    assert cli.main(classify_args(reviews, again, "--init-from", str(first), "--max-steps", "1", "--lr", "1e-9",
                                  "--unfreeze-every", "0")) == 0
    after = load_checkpoint(again / "last.pt")
    assert after["tokenizer"] == before["tokenizer"]
    for name, weight in before["model"].items():  # one step at lr 1e-9 leaves every weight, head too, in place
        torch.testing.assert_close(after["model"][name], weight, atol=1e-6, rtol=0)
    assert after["best_metrics"]["accuracy"] == pytest.approx(before["best_metrics"]["accuracy"])
    capsys.readouterr()
    assert cli.main(classify_args(reviews, tmp_path / "bad", "--init-from", str(first), "--max-steps", "1",
                                  "--lm-finetune-steps", "5")) == 1
    assert "--lm-finetune-steps fine-tunes a language model, and" in capsys.readouterr().err


def test_a_classifier_from_a_classifier_takes_its_head_shape_unless_another_is_typed(reviews, tmp_path, capsys):
    first = tmp_path / "first"
    assert cli.main(classify_args(reviews, first, "--max-steps", "2", "--head-hidden", "16", "--head-norm")) == 0
    before = load_checkpoint(first / "last.pt")["model"]
    kept = tmp_path / "kept"
    assert cli.main(classify_args(reviews, kept, "--init-from", str(first), "--max-steps", "1")) == 0
    assert load_checkpoint(kept / "last.pt")["classifier_config"]["head_hidden"] == 16
    capsys.readouterr()
    narrower = tmp_path / "narrower"
    assert cli.main(classify_args(reviews, narrower, "--init-from", str(first), "--max-steps", "1",
                                  "--head-hidden", "8")) == 0
    assert "--head-hidden changes the head of" in capsys.readouterr().err
    assert load_checkpoint(narrower / "last.pt")["model"]["head.2.weight"].shape[0] == 8
    plain = tmp_path / "plain"
    assert cli.main(classify_args(reviews, plain, "--init-from", str(first), "--max-steps", "1", "--no-head-norm")) == 0
    assert "--head-norm changes the head of" in capsys.readouterr().err
    after = load_checkpoint(plain / "last.pt")["model"]
    assert "head.0.weight" not in after and after["head.1.weight"].shape == before["head.2.weight"].shape


def test_scoring_the_train_split_of_one_file_scores_every_row_even_of_one_label(tmp_path):
    # issue 34: a validation carve nobody asked for scored 43 of 48 rows, and one-label files were refused
    import textgen

    classifier = textgen.load("sentiment", device="cpu")
    mixed, one_label = tmp_path / "mixed.csv", tmp_path / "praise.csv"
    mixed.write_text("text,label\n" + "a wonderful film,pos\na dull mess,neg\n" * 24)
    one_label.write_text("text,label\n" + "a wonderful, moving film,pos\n" * 7)
    scored = classifier.evaluate(str(mixed), split="train")
    assert scored["examples"] == 48 and scored["accuracy"] == 1.0
    assert classifier.evaluate(str(one_label), split="train")["examples"] == 7


def test_the_training_summary_prints_counts_as_counts():
    # issue 32: the classifier summary printed "val_examples 5.0000"
    import io

    from rich.console import Console

    from textgen.terminal.render import RichReporter

    screen = io.StringIO()
    reporter = RichReporter(Console(file=screen, width=120), None)
    reporter.start(0, 10, None)
    metrics = {"val_loss": 0.51234, "accuracy": 0.8, "val_examples": 1234.0}
    reporter.finish({"run_dir": "run", "step": 10, "stop_reason": "max_steps", "elapsed": 1.0,
                     "tokens_per_second": 100.0, "metrics": metrics, "best_metrics": metrics})
    shown = screen.getvalue()
    assert "1,234" in shown and "1234.0000" not in shown and "0.5123" in shown
