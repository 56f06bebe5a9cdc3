"""Labels as context (--condition): a learned label embedding fed with every token, a "no label"
entry trained by label dropout, fine-tuning from an unconditioned model, sampling and scoring with
and without a label, and the bad input around it as one-line errors."""

import json

import numpy as np
import pytest
import torch

import textgen
from textgen import cli
from textgen.data.batches import StreamBatches, label_array, token_array
from textgen.nn.checkpoint import load_language_model, save_checkpoint
from textgen.config import DataConfig, ModelConfig, SampleConfig, to_dict
from textgen.data.corpus import language_model_split, load_corpus
from textgen.nn.model import LanguageModel, grow_vocabulary
from textgen.generate.sampling import generate
from textgen.generate.stepper import Stepper
from textgen.training.tasks import LanguageModelTask
from textgen.data.tokenizer import CharTokenizer

POSITIVE, NEGATIVE = "good great fine lovely", "bad awful poor dull"


def tiny(vocab_size, labels=("neg", "pos"), cell="lstm", seed=0):
    torch.manual_seed(seed)
    return LanguageModel(ModelConfig(cell=cell, num_layers=2, hidden_size=16, embed_size=8, dropout=0.0,
                                     output_dropout=0.0, vocab_size=vocab_size, condition="label" if labels else None,
                                     label_names=labels, label_embed_size=4)).eval()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A jsonl corpus whose text is decided by its label: positive words or negative words."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    with open(folder / "train.jsonl", "w") as out:
        for label in rng.choice(["pos", "neg"], 400):
            out.write(json.dumps({"text": " ".join([POSITIVE if label == "pos" else NEGATIVE] * 3),
                                  "label": str(label)}) + "\n")
    return folder / "train.jsonl"


@pytest.fixture(scope="module")
def conditioned(labelled, tmp_path_factory):
    """A tiny model trained 150 steps on `labelled` with --condition label."""
    run = tmp_path_factory.mktemp("conditioned") / "run"
    assert cli.main(["train", "--corpus", str(labelled), "--condition", "label", "--preset", "tiny", "--max-steps",
                     "150", "--out", str(run), "--device", "cpu", "--precision", "fp32"]) == 0
    return run


def one_line_error(capsys):
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("textgen: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_label_changes_the_prediction_and_no_label_is_its_own_entry(cell):
    model = tiny(12, cell=cell)
    ids = torch.randint(2, 12, (3, 7))
    logits = {label: model(ids, labels=torch.full((3,), label))[0] for label in (0, 1, 2)}
    assert not torch.allclose(logits[1], logits[2]) and not torch.allclose(logits[0], logits[1])
    torch.testing.assert_close(model(ids)[0], logits[0])  # no labels given: "no label"
    per_token = torch.tensor([[1] * 7, [2] * 7, [0] * 7])
    torch.testing.assert_close(model(ids, labels=per_token)[0],
                               torch.stack([logits[1][0], logits[2][1], logits[0][2]]))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_fused_step_reads_the_label_as_the_model_does(cell):
    model = tiny(12, cell=cell)
    ids, labels = torch.randint(2, 12, (4, 5)), torch.tensor([0, 1, 2, 1])
    expected, _ = model(ids, labels=labels)
    stepper, state = Stepper(model), None
    with torch.no_grad():
        _, state = model(ids[:, :1], labels=labels)
        for step in range(1, 5):
            logits, state = stepper(ids[:, step], state, labels)
            torch.testing.assert_close(logits, expected[:, step], rtol=1e-4, atol=1e-5)


def test_conditioning_an_unconditioned_model_starts_from_exactly_what_it_computed():
    plain = tiny(12, labels=())
    grown = grow_vocabulary(plain, ModelConfig(**{**to_dict(plain.config), "condition": "label",
                                                 "label_names": ("neg", "pos"), "label_embed_size": 4})).eval()
    ids = torch.randint(2, 12, (2, 9))
    for label in (0, 1, 2):
        torch.testing.assert_close(grown(ids, labels=torch.full((2,), label))[0], plain(ids)[0])
    assert grown.label_embedding.weight.abs().sum() > 0  # zero columns, not zero embeddings: gradients flow


def test_label_dropout_withholds_whole_rows_and_none_without_it():
    tokens = np.arange(2, 12).repeat(40) % 12
    labels = np.array([1, 2] * 200)
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = tiny(12)

        def forward(self, ids, state=None, labels=None):
            seen.append(labels.clone())
            return self.model(ids, state, labels)

    for dropout in (0.0, 1.0, 0.5):
        task = LanguageModelTask(StreamBatches(tokens, 8, 10, labels=labels), StreamBatches(tokens, 2, 10),
                                 1.0, label_dropout=dropout)
        torch.manual_seed(0)
        for _ in range(20):
            task.train_loss(Recorder(), torch.device("cpu"), "fp32")
    kept, dropped, half = torch.stack(seen[:20]), torch.stack(seen[20:40]), torch.stack(seen[40:])
    assert (kept > 0).all() and (dropped == 0).all()
    rows = half.flatten(0, 1)  # (windows * batch, seq): each row all labelled or all withheld
    assert ((rows > 0).all(1) | (rows == 0).all(1)).all()
    assert 0.3 < (rows == 0).all(1).float().mean() < 0.7


def test_each_token_carries_its_rows_label_and_unlabelled_rows_none(labelled, tmp_path):
    corpus = load_corpus(DataConfig(corpus=str(labelled)), condition="label")
    tokenizer = CharTokenizer.from_texts([POSITIVE + NEGATIVE + "\n"])
    tokens = token_array(corpus, "train", tokenizer, cache_dir=tmp_path)
    labels = label_array(corpus, "train", tokenizer, cache_dir=tmp_path)
    assert len(labels) == len(tokens) and corpus.label_names == ["neg", "pos"]
    text = tokenizer.decode(tokens.tolist()).split("\n")[:-1]
    ends = np.cumsum([len(row) + 1 for row in text])
    for row, end in zip(text, ends):
        assert set(labels[end - len(row) - 1:end].tolist()) == {2 if row.startswith("good") else 1}


def test_the_checkpoint_records_the_labels_and_steers_the_text(conditioned):
    model, tokenizer, payload = load_language_model(conditioned)
    assert tuple(payload["model_config"]["label_names"]) == ("neg", "pos")
    assert model.config.condition == "label"
    config = dict(length=200, temperature=0.5, seed=3)
    positive = generate(model, tokenizer, "", SampleConfig(label=("pos",), **config))[0].text
    negative = generate(model, tokenizer, "", SampleConfig(label=("neg",), **config))[0].text
    assert positive.count("good") > positive.count("bad") and negative.count("bad") > negative.count("good")
    assert textgen.load(conditioned, "cpu").generate(label="pos", **config) == positive
    # a batch: one label per sample in turn, sample i seeded seed + i
    both = generate(model, tokenizer, "", SampleConfig(label=("pos", "neg"), **config))
    config["seed"] += 1
    assert [sample.text for sample in both] == [positive, generate(model, tokenizer, "", SampleConfig(
        label=("neg",), **config))[0].text]


def test_eval_reports_bits_per_char_with_the_label_and_without(conditioned, labelled, capsys):
    assert cli.main(["eval", "--model", str(conditioned), "--corpus", str(labelled), "--split", "validation",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bits_per_char_with_label"] < result["bits_per_char"]


def test_a_checkpoint_from_before_conditioning_still_loads(tmp_path):
    model = tiny(12, labels=())
    config = {k: v for k, v in to_dict(model.config).items()
              if k not in ("condition", "label_embed_size", "label_dropout", "label_names")}
    tokenizer = CharTokenizer.from_texts(["abcdefghij"])
    save_checkpoint(tmp_path / "old.pt", {"kind": "language_model", "model_config": config,
                                          "tokenizer": tokenizer.to_data(), "model": model.state_dict()})
    loaded, _, _ = load_language_model(tmp_path / "old.pt")
    assert loaded.label_embedding is None and loaded.config.label_names == ()
    assert load_language_model("shakespeare")[0].label_embedding is None


def test_fine_tuning_an_unconditioned_model_with_condition_carries_its_weights(labelled, tmp_path):
    plain = tmp_path / "plain"
    common = ["--corpus", str(labelled), "--preset", "tiny", "--device", "cpu", "--precision", "fp32"]
    assert cli.main(["train", *common, "--max-steps", "5", "--out", str(plain)]) == 0
    tuned = tmp_path / "tuned"
    assert cli.main(["train", *common, "--init-from", str(plain), "--condition", "label", "--max-steps", "1",
                     "--lr", "1e-12", "--out", str(tuned)]) == 0
    source, _, _ = load_language_model(plain)
    model, _, _ = load_language_model(tuned / "last.pt")
    ids = torch.randint(2, source.config.vocab_size, (2, 20))
    torch.testing.assert_close(model(ids, labels=torch.tensor([1, 2]))[0], source(ids)[0], rtol=1e-4, atol=1e-5)


def test_label_on_an_unconditioned_model_is_a_one_line_error(capsys):
    assert cli.main(["sample", "--model", "shakespeare", "--label", "pos", "--length", "5"]) != 0
    assert "was not trained with --condition" in one_line_error(capsys)


def test_an_unknown_label_is_a_one_line_error(conditioned, capsys):
    assert cli.main(["sample", "--model", str(conditioned), "--label", "meh", "--length", "5"]) != 0
    assert "--label meh is not a label of this model; it knows: neg, pos" in one_line_error(capsys)


def test_condition_on_a_corpus_without_that_column_is_a_one_line_error(corpus, tmp_path, capsys):
    assert cli.main(["train", "--corpus", str(corpus), "--condition", "label", "--preset", "tiny", "--max-steps",
                     "1", "--out", str(tmp_path / "run")]) != 0
    assert "has no label column 'label'" in one_line_error(capsys)


def test_a_classifier_cannot_start_from_a_conditioned_model(conditioned, labelled, tmp_path, capsys):
    assert cli.main(["train", "--task", "classify", "--corpus", str(labelled), "--init-from", str(conditioned),
                     "--max-steps", "1", "--out", str(tmp_path / "run")]) != 0
    assert "reads labels as context" in one_line_error(capsys)


def test_inspect_reads_a_conditioned_model_with_no_label(conditioned, capsys):
    assert cli.main(["inspect", "--model", str(conditioned), "--text", "good film", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == list("good film")


def guided_greedy_by_hand(model, tokenizer, label, guidance, steps):
    """Greedy decoding on labelled + guidance * (labelled - unlabelled) log-probabilities, step by step."""
    ids = [tokenizer.encode("\n")[0]]
    with torch.no_grad():
        for _ in range(steps):
            batch = torch.tensor([ids, ids])
            logits, _ = model(batch, labels=torch.tensor([label, 0]))
            labelled, unlabelled = logits[:, -1].log_softmax(-1)
            scores = labelled + guidance * (labelled - unlabelled)
            scores[[tokenizer.pad_id, tokenizer.unk_id]] = -float("inf")
            ids.append(int(scores.argmax()))
    return tokenizer.decode(ids[1:])


def test_guidance_moves_each_step_away_from_the_unlabelled_prediction(conditioned):
    model, tokenizer, _ = load_language_model(conditioned)
    sample = generate(model, tokenizer, "", SampleConfig(label=("neg",), guidance=2.0, temperature=0, length=30))[0]
    assert sample.text == guided_greedy_by_hand(model, tokenizer, 1, 2.0, 30)
    sampled = {guidance: generate(model, tokenizer, "", SampleConfig(label=("neg",), guidance=guidance, length=60,
                                                                      seed=0))[0].text for guidance in (0.0, 3.0)}
    assert sampled[0.0] != sampled[3.0]


def test_guided_samples_that_stop_early_leave_the_batch_with_their_unlabelled_copies(conditioned):
    model, tokenizer, _ = load_language_model(conditioned)
    config = dict(guidance=1.5, temperature=0.9, length=60, stop=("d",))
    batch = generate(model, tokenizer, "", SampleConfig(label=("pos", "neg"), num_samples=4, seed=7, **config))
    alone = [generate(model, tokenizer, "", SampleConfig(label=(label,), seed=7 + i, **config))[0]
             for i, label in enumerate(["pos", "neg", "pos", "neg"])]
    assert [s.text for s in batch] == [s.text for s in alone]
    assert len({len(s.text) for s in batch}) > 1  # they did stop at different steps


def test_guidance_without_a_label_is_a_one_line_error(conditioned, capsys):
    assert cli.main(["sample", "--model", str(conditioned), "--guidance", "2", "--length", "5"]) != 0
    assert "--guidance 2.0 steers towards a --label" in one_line_error(capsys)


def test_rows_of_an_unlabelled_split_join_with_no_label(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in
                                                [("good", "pos"), ("bad", "neg")] * 20))
    (folder / "unsupervised.jsonl").write_text("".join(json.dumps({"text": "meh"}) + "\n" for _ in range(10)))
    corpus = load_corpus(DataConfig(corpus=str(folder)), condition="label")
    split = language_model_split(corpus, "train,unsupervised")
    tokenizer = CharTokenizer.from_texts(["goodbadmeh\n"])
    tokens = token_array(corpus, split, tokenizer, cache_dir=tmp_path / "cache")
    labels = label_array(corpus, split, tokenizer, cache_dir=tmp_path / "cache")
    unlabelled = 10 * len("meh\n")
    assert len(labels) == len(tokens) and (labels[-unlabelled:] == 0).all() and (labels[:-unlabelled] > 0).all()


def test_a_label_holding_a_comma_is_asked_for_with_a_backslash_before_it():
    assert SampleConfig(label=("pos,neg",)).label == ("pos", "neg")
    assert SampleConfig(label=("good\\, not great,bad",)).label == ("good, not great", "bad")
    model = tiny(12, labels=("bad", "good, not great"))
    config = SampleConfig(label=("good\\, not great",), length=5, seed=0)
    tokenizer = CharTokenizer.from_texts(["abcdefghij"])
    assert len(generate(model, tokenizer, "ab", config)[0].text) == 5
