"""Fine-tuning a language model from a language model (--init-from): weights carried over, new
characters given rows, the source never written to, resume exact, bad input one line."""

import hashlib
import json

import pytest
import torch

from textgen import cli
from textgen.recipes import train as recipes
from textgen.nn.checkpoint import load_checkpoint, load_language_model
from textgen.config import ModelConfig
from textgen.nn.model import LanguageModel, grow_vocabulary
from textgen.data.tokenizer import CharTokenizer


def train_args(corpus, out, *extra):
    return ["train", "--corpus", str(corpus), "--preset", "tiny", "--out", str(out), "--device", "cpu",
            "--precision", "fp32", "--eval-interval", "4", "--checkpoint-interval", "4", "--log-interval", "1",
            *extra]


@pytest.fixture
def pretrained(corpus, tmp_path):
    """A tiny language model trained 40 steps on the tiny corpus (at a high rate: it learns quickly)."""
    run = tmp_path / "pretrained"
    assert cli.main(train_args(corpus, run, "--max-steps", "40", "--lr", "1e-2")) == 0
    return run


def digests(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def validation_losses(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in records if r.get("split") == "validation"]


def test_a_language_model_fine_tunes_from_a_language_model_and_new_characters_get_rows(
        pretrained, corpus, tmp_path, capsys):
    before = digests(pretrained)
    own = tmp_path / "own.txt"
    own.write_text(corpus.read_text().replace("fox", "föx").replace("dog", "dØg"))
    run = tmp_path / "finetuned"
    # a learning rate too small to move anything: what the run holds is what it carried over
    assert cli.main(train_args(own, run, "--init-from", str(pretrained), "--max-steps", "1", "--lr", "1e-12")) == 0
    assert "2 characters it has not seen get new rows ('Ø' 'ö')" in " ".join(capsys.readouterr().err.split())
    assert digests(pretrained) == before  # nothing of the source model is written to

    source, source_tokenizer, _ = load_language_model(pretrained)
    tuned, tokenizer, payload = load_language_model(run / "last.pt")
    assert tokenizer.chars == source_tokenizer.chars + "Øö"  # existing ids keep their places
    assert payload["configs"]["finetune"]["init_from"] == str(pretrained)
    assert (tuned.config.num_layers, tuned.config.hidden_size) == (source.config.num_layers, source.config.hidden_size)
    old, new = source.state_dict(), tuned.state_dict()
    for name, value in old.items():
        torch.testing.assert_close(new[name][:len(value)], value, rtol=0, atol=1e-6, msg=name)
    embedding = old["embedding.weight"]
    torch.testing.assert_close(new["embedding.weight"][-1], embedding[2:].mean(dim=0), rtol=0, atol=1e-6)


def test_new_characters_start_neither_dominating_nor_vanishing():
    torch.manual_seed(0)
    for tie in (True, False):
        model = LanguageModel(ModelConfig(num_layers=1, hidden_size=32, embed_size=16, vocab_size=30, tie_weights=tie))
        with torch.no_grad():
            model.output.bias.normal_(0, 2)  # a trained model's biases spread out
        grown = grow_vocabulary(model, ModelConfig(num_layers=1, hidden_size=32, embed_size=16, vocab_size=33,
                                                   tie_weights=tie)).eval()
        with torch.no_grad():
            probabilities = grown(torch.randint(2, 30, (4, 50)))[0].softmax(-1).mean(dim=(0, 1))
        typical = probabilities[2:30].median()
        assert 0.05 * typical < probabilities[30:].min() and probabilities[30:].max() < 20 * typical, tie


def test_fine_tuning_starts_from_what_the_model_knows(pretrained, corpus, tmp_path, capsys):
    assert cli.main(train_args(corpus, tmp_path / "scratch", "--max-steps", "4")) == 0
    capsys.readouterr()
    assert cli.main(train_args(corpus, tmp_path / "tuned", "--max-steps", "4", "--init-from", str(pretrained))) == 0
    assert validation_losses(tmp_path / "tuned")[0] < validation_losses(tmp_path / "scratch")[0] - 0.3
    # the next steps it suggests sample from the new run and check the samples for copying
    assert f"textgen sample --model {tmp_path / 'tuned'} --length 500 --temperature 0.8 --check-copy" in \
        " ".join(capsys.readouterr().err.split())


def test_fine_tuning_takes_its_own_defaults_unless_typed(pretrained, corpus, tmp_path):
    assert cli.main(train_args(corpus, tmp_path / "a", "--max-steps", "1", "--init-from", str(pretrained))) == 0
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["train"]["lr"] == recipes.LM_FINETUNE["train"]["lr"]
    assert saved["model"]["dropout"] == recipes.LM_FINETUNE["model"]["dropout"]
    assert saved["finetune"]["patience"] == recipes.LM_FINETUNE["finetune"]["patience"] == 1
    assert cli.main(train_args(corpus, tmp_path / "b", "--max-steps", "1", "--init-from", str(pretrained),
                               "--lr", "5e-4", "--dropout", "0.4", "--patience", "3")) == 0
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (saved["train"]["lr"], saved["model"]["dropout"], saved["finetune"]["patience"]) == (5e-4, 0.4, 3)
    assert cli.main(train_args(corpus, tmp_path / "c", "--max-steps", "1")) == 0  # from scratch: the general default
    assert json.loads((tmp_path / "c" / "config.json").read_text())["finetune"]["patience"] == 3


def test_resuming_a_fine_tuned_run_reaches_the_weights_of_an_uninterrupted_one(pretrained, corpus, tmp_path,
                                                                              press_ctrl_c_at):
    extra = ("--max-steps", "8", "--checkpoint-interval", "100", "--init-from", str(pretrained))
    assert cli.main(train_args(corpus, tmp_path / "whole", *extra)) == 0
    press_ctrl_c_at(3)
    assert cli.main(train_args(corpus, tmp_path / "split", *extra)) == 130
    assert cli.main(train_args(corpus, tmp_path / "split", *extra, "--resume")) == 0
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    split = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    for name in whole:
        assert torch.equal(whole[name], split[name]), name


def test_a_sentencepiece_model_keeps_its_vocabulary(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--init-from", "reviews", "--max-steps", "1", "--seq-len", "16",
                               "--batch-size", "2", "--eval-tokens", "64")) == 0
    assert "keeps its SentencePiece vocabulary of 4000 pieces" in " ".join(capsys.readouterr().err.split())
    _, tokenizer, _ = load_language_model(run / "last.pt")
    assert tokenizer.kind == "sentencepiece" and tokenizer.vocab_size == 4000


def one_line_error(capsys):
    """The error line, checked to be the one line of stderr that says textgen: error, with no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("textgen: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("extra, message", [
    (("--hidden", "32"), "--hidden 32 would change the pretrained model from --init-from"),
    (("--tokenizer", "sentencepiece"), "--tokenizer sentencepiece differs from"),
    (("--vocab-size", "500"), "--vocab-size would change the vocabulary"),
])
def test_flags_that_would_change_the_pretrained_model_are_one_line_errors(pretrained, corpus, tmp_path, capsys,
                                                                          extra, message):
    assert cli.main(train_args(corpus, tmp_path / "run", "--init-from", str(pretrained), "--max-steps", "1", *extra)) != 0
    assert message in one_line_error(capsys)


def test_fine_tuning_a_language_model_from_a_classifier_is_a_one_line_error(corpus, tmp_path, capsys):
    assert cli.main(train_args(corpus, tmp_path / "run", "--init-from", "sentiment", "--max-steps", "1")) != 0
    assert "is a classifier, and a language model fine-tunes from a language model" in one_line_error(capsys)


def test_a_corpus_with_no_character_in_common_is_a_one_line_error(pretrained, write_file, tmp_path, capsys):
    greek = write_file("greek.txt", "αβγδε ζηθ ικλμν ξοπρσ\n" * 50)
    assert cli.main(train_args(greek, tmp_path / "run", "--init-from", str(pretrained), "--max-steps", "1")) != 0
    assert "has no character in common with" in one_line_error(capsys)


def test_an_empty_corpus_is_a_one_line_error(pretrained, write_file, tmp_path, capsys):
    empty = write_file("empty.txt", "")
    assert cli.main(train_args(empty, tmp_path / "run", "--init-from", str(pretrained), "--max-steps", "1")) != 0
    one_line_error(capsys)


def test_resume_with_another_init_from_is_refused(pretrained, corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "2")) == 0
    assert cli.main(train_args(corpus, run, "--max-steps", "4", "--resume", "--init-from", str(pretrained))) != 0
    assert "which started from scratch" in one_line_error(capsys)


def test_a_small_local_text_fine_tunes_english_unless_told_otherwise(tmp_path, capsys, monkeypatch):
    english = tmp_path / "english.txt"
    english.write_text("It was the best of times, it was the worst of times, and he said that it was so.\n" * 40)

    def started_from(corpus, run, *extra):
        assert cli.main(["train", "--corpus", str(corpus), "--out", str(tmp_path / run), "--max-steps", "1",
                         "--batch-size", "4", "--seq-len", "16", "--device", "cpu", "--precision", "fp32", *extra]) == 0
        saved = json.loads((tmp_path / run / "config.json").read_text())
        return saved["finetune"]["init_from"], saved["model"]["hidden_size"]

    assert started_from(english, "auto") == ("english", 512)
    assert "--init-from none to train from scratch" in " ".join(capsys.readouterr().err.split())
    assert started_from(english, "none", "--init-from", "none") == (None, 256)  # from scratch: the compact preset
    assert started_from(english, "shaped", "--hidden", "128") == (None, 128)  # a shape asked for: from scratch
    greek = tmp_path / "greek.txt"
    greek.write_text("Καλημέρα κόσμε, τι κάνεις σήμερα; " * 100)  # characters english mostly lacks
    assert started_from(greek, "greek")[0] is None
    monkeypatch.setattr(recipes, "AUTO_COMPACT_BELOW", 1000)  # a "large" text: from scratch, the small preset
    assert started_from(english, "large") == (None, 384)


def test_a_text_too_small_for_the_default_batches_trains_in_narrower_ones(tmp_path, capsys):
    letter = tmp_path / "letter.txt"
    letter.write_text("Dear Margaret, the orchard is quiet and the pickers have gone home.\n" * 15)  # 1 KB

    def trained(run, *extra):
        return cli.main(["train", "--corpus", str(letter), "--out", str(tmp_path / run), "--max-steps", "2",
                         "--device", "cpu", "--precision", "fp32", *extra])

    for run, extra in (("english", ()), ("scratch", ("--init-from", "none"))):
        assert trained(run, *extra) == 0
        saved = json.loads((tmp_path / run / "config.json").read_text())["train"]
        assert saved["batch_size"] * saved["seq_len"] < 32 * 128 and saved["seq_len"] == 128
        assert "the most it fills" in " ".join(capsys.readouterr().err.split())
    # batches typed are kept: too large is a one-line error that says what to lower
    assert trained("typed", "--batch-size", "32") != 0
    assert "lower --batch-size or --seq-len" in one_line_error(capsys)


def test_char_vocabularies_extend_in_place():
    tokenizer = CharTokenizer("abc")
    grown = tokenizer.extended("cab dé")
    assert grown.chars == "abc dé"
    assert grown.encode("abc").tolist() == tokenizer.encode("abc").tolist()


def test_a_small_local_text_gets_the_compact_preset_unless_told_otherwise(corpus, tmp_path, capsys, monkeypatch):
    def trained(run, *extra):
        assert cli.main(["train", "--corpus", str(corpus), "--out", str(tmp_path / run), "--max-steps", "1",
                         "--device", "cpu", "--precision", "fp32", *extra]) == 0
        return json.loads((tmp_path / run / "config.json").read_text())

    saved = trained("auto", "--init-from", "none")
    assert "the compact preset (2x256, dropout 0.3)" in " ".join(capsys.readouterr().err.split())
    assert (saved["model"]["hidden_size"], saved["model"]["dropout"], saved["train"]["preset"]) == (256, 0.3, "auto")
    assert trained("typed", "--hidden", "128", "--dropout", "0.1")["model"]["hidden_size"] == 128
    assert trained("small", "--preset", "small")["model"]["hidden_size"] == 384
    monkeypatch.setattr(recipes, "AUTO_COMPACT_BELOW", 1000)  # a "large" text: the small preset
    assert trained("large", "--init-from", "none")["model"]["hidden_size"] == 384


def test_the_python_api_fine_tunes_a_language_model_too(pretrained, corpus, tmp_path):
    import textgen

    run = textgen.train(corpus=corpus, init_from=pretrained, out=tmp_path / "api", max_steps=2, device="cpu",
                        precision="fp32")
    assert run.step == 2 and load_checkpoint(run.folder / "last.pt")["configs"]["finetune"]["init_from"] == str(pretrained)
    assert isinstance(run.load(device="cpu").generate("the ", length=20, seed=0), str)
