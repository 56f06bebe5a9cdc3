"""`textgen plot`: training curves of runs, in bits per character (or per token), headless."""

import json
import math
import sys

import numpy as np
import pytest

from textgen.cli import main
from textgen.errors import TextgenError
from textgen.training.plots import plot_runs, read_run


def write_run(folder, tokenizer="char", task="lm", chars_per_token=None, steps=(10, 20, 30, 40)):
    """A run folder as `textgen train` leaves it: config.json and metrics.jsonl."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"data": {"tokenizer": tokenizer}, "train": {"task": task}}))
    records = [{"step": step, "elapsed": step * 0.5, "loss": 3.0 - step / 20, "lr": 1e-3} for step in steps]
    evaluation = {"step": 20, "split": "validation", "val_loss": 2.0}
    if chars_per_token:
        evaluation["bits_per_char"] = 2.0 / math.log(2) / chars_per_token
    lines = [json.dumps(r) for r in records[:2]] + [json.dumps(evaluation)] + [json.dumps(r) for r in records[2:]]
    (folder / "metrics.jsonl").write_text("\n".join(lines + [json.dumps({"step": 40, "event": "stop"})]) + "\n")
    return folder


def test_losses_become_bits_per_character_with_the_runs_own_characters_per_token(tmp_path):
    subword = read_run(write_run(tmp_path / "sp", tokenizer="sentencepiece", chars_per_token=4.0))
    assert subword.unit == "bits per character"
    np.testing.assert_allclose(subword.train_loss, (3.0 - np.array([10, 20, 30, 40]) / 20) / math.log(2) / 4)
    np.testing.assert_allclose(subword.val_loss, [2.0 / math.log(2) / 4])
    # an evaluation's wall time is read off the training step of the same number
    assert subword.val_steps.tolist() == [20] and subword.val_elapsed.tolist() == [10.0]
    char = read_run(write_run(tmp_path / "char"))
    assert char.unit == "bits per character" and char.train_loss[0] == pytest.approx(2.5 / math.log(2))
    assert read_run(write_run(tmp_path / "sp-early", tokenizer="sentencepiece")).unit == "bits per token"
    assert read_run(write_run(tmp_path / "clf", task="classify")).unit == "bits per text"


def test_plot_draws_several_runs_on_one_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    first, second = write_run(tmp_path / "a"), write_run(tmp_path / "b", steps=(10, 20, 30, 40, 50, 60))
    out = tmp_path / "curves.png"
    assert main(["plot", str(first), str(second), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert capsys.readouterr().out == ""  # stdout stays clean; the path is logged on stderr


def test_plot_refuses_runs_measured_in_different_units(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(TextgenError, match=r"different units \(bits per character, bits per text\)"):
        plot_runs([write_run(tmp_path / "lm"), write_run(tmp_path / "clf", task="classify")], tmp_path / "x.png")


def test_plot_says_what_is_missing(tmp_path, capsys, monkeypatch):
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert (f"textgen: error: {tmp_path} holds no metrics.jsonl; pass run folders written by `textgen train`"
            in capsys.readouterr().err)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # as if not installed
    assert main(["plot", str(write_run(tmp_path / "run")), "--out", str(tmp_path / "x.png")]) == 1
    assert ("textgen plot needs matplotlib, an optional dependency; install it with pip install 'textgen[plot]' "
            "(or pip install matplotlib)") in capsys.readouterr().err


def test_a_half_written_last_line_is_skipped_but_a_damaged_middle_is_reported(tmp_path):
    run = write_run(tmp_path / "live")
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"step": 50, "elap')
    assert read_run(run).train_steps.tolist() == [10, 20, 30, 40]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(TextgenError, match="line 2 is not JSON; the file is damaged"):
        read_run(run)
