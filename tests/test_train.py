import json
import math
import os
import signal

import pytest
import torch

from textgen import cli
from textgen.terminal.render import RichReporter
from textgen.nn.checkpoint import load_checkpoint
from textgen.config import TrainConfig
from textgen.nn.precision import resolve_precision
from textgen.training.trainer import learning_rate_factor

def train_args(corpus, out, *extra):
    return ["train", "--corpus", str(corpus), "--preset", "tiny", "--out", str(out), "--device", "cpu",
            "--precision", "fp32", "--eval-interval", "4", "--checkpoint-interval", "4", "--log-interval", "1",
            *extra]


def weights(path):
    return load_checkpoint(path)["model"]


def losses(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line and "split" not in line]


def test_train_writes_a_run_folder_with_checkpoints_config_and_metrics(corpus, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "8")) == 0
    assert {p.name for p in run.iterdir()} == {"last.pt", "best.pt", "config.json", "metrics.jsonl"}
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden_size"] == 64 and config["model"]["vocab_size"] > 20
    payload = load_checkpoint(run / "last.pt", kind="language_model")
    assert payload["step"] == 8 and payload["tokenizer"]["kind"] == "char"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if r.get("split") == "validation"]
    assert [r["step"] for r in evaluations] == [4, 8]
    assert all(math.isfinite(r["bits_per_char"]) for r in evaluations)


def test_training_lowers_the_validation_loss(corpus, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "60", "--eval-interval", "30")) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r["val_loss"] for r in records if r.get("split") == "validation"]
    assert evaluations[-1] < evaluations[0] < math.log(30)


def test_the_same_seed_gives_the_same_losses(corpus, tmp_path):
    for name in ("a", "b"):
        assert cli.main(train_args(corpus, tmp_path / name, "--max-steps", "6", "--seed", "3")) == 0
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert cli.main(train_args(corpus, tmp_path / "c", "--max-steps", "6", "--seed", "4")) == 0
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(corpus, tmp_path, monkeypatch):
    extra = ("--max-steps", "10", "--checkpoint-interval", "100")
    assert cli.main(train_args(corpus, tmp_path / "whole", *extra)) == 0

    original_step = RichReporter.step

    def press_ctrl_c_at_step_4(self, step, fraction, metrics):
        original_step(self, step, fraction, metrics)
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(RichReporter, "step", press_ctrl_c_at_step_4)
    assert cli.main(train_args(corpus, tmp_path / "split", *extra)) == 130
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 4
    monkeypatch.undo()
    assert cli.main(train_args(corpus, tmp_path / "split", *extra, "--resume")) == 0

    whole, split = weights(tmp_path / "whole" / "last.pt"), weights(tmp_path / "split" / "last.pt")
    assert whole.keys() == split.keys()
    for name in whole:
        assert torch.equal(whole[name], split[name]), name
    assert losses(tmp_path / "whole") == losses(tmp_path / "split")


def test_a_second_ctrl_c_during_the_last_evaluation_keeps_the_step_it_stopped_at(corpus, tmp_path, monkeypatch,
                                                                                 capsys):
    from textgen.training.tasks import LanguageModelTask

    original_step, original_evaluate = RichReporter.step, LanguageModelTask.evaluate
    pressed = []

    def press_ctrl_c_at_step_5(self, step, fraction, metrics):
        original_step(self, step, fraction, metrics)
        if step == 5:
            pressed.append(step)
            os.kill(os.getpid(), signal.SIGINT)

    def press_again_while_evaluating(self, *args):
        if pressed:
            os.kill(os.getpid(), signal.SIGINT)
        return original_evaluate(self, *args)

    monkeypatch.setattr(RichReporter, "step", press_ctrl_c_at_step_5)
    monkeypatch.setattr(LanguageModelTask, "evaluate", press_again_while_evaluating)
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "10", "--checkpoint-interval", "100")) == 130
    assert "stopping after this step: saving a checkpoint" in capsys.readouterr().err
    assert load_checkpoint(run / "last.pt")["step"] == 5  # not lost back to the evaluation at step 4


def test_resume_with_another_model_shape_is_refused_and_nothing_is_overwritten(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "4")) == 0
    before = (run / "last.pt").read_bytes()
    assert cli.main(train_args(corpus, run, "--max-steps", "8", "--resume", "--hidden", "32")) == 1
    assert "another model shape (hidden_size 64 vs 32)" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == before


def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"not a checkpoint")
    assert cli.main(train_args(corpus, run, "--max-steps", "8", "--resume")) == 1
    assert "is not a readable checkpoint" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == b"not a checkpoint"


def test_a_diverging_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    code = cli.main(train_args(corpus, run, "--max-steps", "200", "--lr", "1e20", "--warmup-steps", "0",
                               "--grad-clip", "0", "--checkpoint-interval", "1", "--eval-interval", "1000"))
    err = capsys.readouterr().err
    assert code == 1 and "the training loss became" in err and "lower --lr" in err
    payload = load_checkpoint(run / "last.pt")
    assert f"from step {payload['step']}" in err
    assert all(torch.isfinite(t).all() for t in payload["model"].values())


def test_a_time_budget_stops_cleanly_evaluates_and_saves(corpus, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--time-budget", "2s", "--eval-interval", "100000")) == 0
    payload = load_checkpoint(run / "last.pt")
    assert payload["step"] > 0 and "val_loss" in payload["metrics"]
    assert (run / "best.pt").exists()


def test_bf16_autocast_trains_on_the_cpu(corpus, tmp_path):
    run = tmp_path / "run"
    args = train_args(corpus, run, "--max-steps", "30", "--eval-interval", "15")
    args[args.index("fp32")] = "bf16"
    assert cli.main(args) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r["val_loss"] for r in records if r.get("split") == "validation"]
    assert evaluations[-1] < evaluations[0]
    assert load_checkpoint(run / "last.pt")["model"]["output.bias"].dtype == torch.float32


def test_auto_precision_is_bf16_only_where_the_hardware_runs_it():
    from textgen.nn.precision import cpu_has_native_bf16

    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_fp16_on_the_cpu_is_refused_with_the_fix(corpus, tmp_path, capsys):
    args = train_args(corpus, tmp_path / "run", "--max-steps", "2")
    args[args.index("fp32")] = "fp16"
    assert cli.main(args) == 1
    assert "--precision fp16 needs a CUDA GPU" in capsys.readouterr().err


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = TrainConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate_factor(0, 0.0, config) == pytest.approx(0.1)
    assert learning_rate_factor(9, 0.0, config) == pytest.approx(1.0)
    assert learning_rate_factor(50, 0.5, config) == pytest.approx(0.55)
    assert learning_rate_factor(100, 1.0, config) == pytest.approx(0.1)


def test_a_corpus_too_small_for_one_batch_says_what_to_lower(tmp_path, capsys):
    path = tmp_path / "small.txt"
    path.write_text("hello there\n" * 5)
    # batches typed (untyped ones narrow to what the text fills: test_finetune.py)
    assert cli.main(train_args(path, tmp_path / "run", "--max-steps", "2", "--batch-size", "4", "--seq-len", "64")) == 1
    err = capsys.readouterr().err
    assert "--batch-size" in err and "--seq-len" in err


def test_eval_scores_a_checkpoint_on_a_corpus_split(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "8")) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(run), "--corpus", str(corpus), "--split", "validation", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "validation" and 0 < result["bits_per_char"] < 8
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))


def test_a_language_model_stops_when_its_validation_stops_improving_unless_patience_is_0(corpus, tmp_path, capsys):
    """Issue 31: early stopping for language models; a rate too small to move a weight leaves the
    validation loss where it was, so each evaluation after the first is stale."""
    def stop(run):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return next(r for r in records if r.get("event") == "stop")

    common = ["--max-steps", "40", "--eval-interval", "2", "--lr", "1e-30", "--warmup-steps", "0"]
    assert cli.main(train_args(corpus, tmp_path / "a", *common, "--patience", "2")) == 0
    assert stop(tmp_path / "a")["reason"] == "early_stopping" and stop(tmp_path / "a")["step"] == 6
    assert load_checkpoint(tmp_path / "a" / "best.pt")["step"] == 2
    # the summary says why it stopped and since when
    assert "early stopping: validation no better after step 2" in " ".join(capsys.readouterr().err.split())
    assert cli.main(train_args(corpus, tmp_path / "b", *common, "--patience", "0")) == 0
    assert stop(tmp_path / "b")["reason"] == "max_steps" and stop(tmp_path / "b")["step"] == 40
