"""First contact: what ships with the package (the corpus, the bundled models) works offline, by
name, from any folder, and from a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from textgen import cli
from textgen.nn.checkpoint import bundled_models, describe_checkpoint, export_weights, load_checkpoint, \
    load_language_model

ROOT = Path(__file__).resolve().parent.parent


def test_a_checkpoint_exported_in_half_precision_is_smaller_and_predicts_the_same(corpus, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--corpus", str(corpus), "--preset", "tiny", "--hidden", "32", "--embed", "16",
                     "--out", str(run), "--max-steps", "20", "--device", "cpu", "--precision", "fp32"]) == 0
    packed = export_weights(run, tmp_path / "small.pt")
    assert packed.stat().st_size < (run / "best.pt").stat().st_size / 2
    payload = load_checkpoint(packed)
    assert {tensor.dtype for tensor in payload["model"].values()} == {torch.float16}
    assert "optimizer" not in payload and "ranks" not in payload
    # the tied output weight is stored once, as the embedding
    assert payload["model"]["output.weight"].data_ptr() == payload["model"]["embedding.weight"].data_ptr()
    full, tokenizer, _ = load_language_model(run)
    half, _, _ = load_language_model(packed)
    assert next(half.parameters()).dtype == torch.float32
    ids = torch.from_numpy(tokenizer.encode("the quick brown fox"))[None]
    torch.testing.assert_close(half(ids)[0], full(ids)[0], atol=2e-2, rtol=1e-2)
    info = describe_checkpoint(packed)
    assert info["kind"] == "language model" and info["corpus"] == str(corpus)
    assert info["parameters"] == sum(p.numel() for p in full.parameters())


def test_an_unknown_model_name_lists_the_bundled_ones(capsys):
    assert cli.main(["sample", "--model", "no-such-model", "--length", "5"]) == 1
    err = capsys.readouterr().err
    assert "--model no-such-model does not exist; pass a run folder, a .pt checkpoint or a bundled model name (" in err
    for name in bundled_models():
        assert name in err



def test_a_flag_a_command_does_not_take_shows_that_commands_usage(capsys):
    """`textgen complete --prompt ...` (sample's flag) once showed `usage: textgen [-h] [--version]
    COMMAND ...`; the usage of the command typed shows how to give it what it takes."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["complete", "--prompt", "To be or not to"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "usage: textgen complete" in err
    assert err.strip().splitlines()[-1] == "textgen complete: error: unrecognized arguments: --prompt"

def test_a_path_wins_over_a_bundled_name(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--corpus", str(corpus), "--preset", "tiny", "--out", "shakespeare",
                     "--max-steps", "2", "--device", "cpu", "--precision", "fp32"]) == 0
    assert load_checkpoint("shakespeare")["path"] == str(Path("shakespeare") / "best.pt")


# --- the bundled models themselves ---------------------------------------------------------------

needs_models = pytest.mark.skipif(not {"shakespeare", "sentiment"} <= set(bundled_models()),
                                  reason="the bundled models are not built yet (tools/build_models.py)")


@needs_models
def test_textgen_sample_without_a_model_streams_shakespeare(capsys):
    assert cli.main(["sample", "--length", "300", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert len(text) >= 300
    words = text.split()
    # Shakespeare-like: mostly real words, and speaker names in capitals
    assert sum(word.strip(".,;:!?'").lower() in {"the", "and", "i", "to", "of", "my", "you", "a", "that", "in",
                                                   "is", "not", "me", "with", "be", "your", "it", "his"}
               for word in words) > len(words) / 10


@needs_models
def test_textgen_classify_without_a_model_labels_the_readme_examples(capsys):
    assert cli.main(["classify", "--json", "a gorgeous, moving film", "dull and lifeless"]) == 0
    labels = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert labels == ["pos", "neg"]


@needs_models
def test_textgen_models_lists_every_bundled_model(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in bundled_models():
        assert name in out
    assert "tiny_shakespeare" in out and "language model" in out and "classifier" in out


@needs_models
def test_each_bundled_model_has_a_card_with_the_sha256_of_its_weights():
    import hashlib

    total = 0
    for name, path in bundled_models().items():
        card = path.with_suffix(".md").read_text()
        assert hashlib.sha256(path.read_bytes()).hexdigest() in card
        assert "textgen train " in card
        total += path.stat().st_size
    assert total < 40 * 10**6  # all bundled weights together stay under 40 MB


@pytest.mark.slow
@needs_models
def test_a_wheel_holds_the_corpus_and_models_and_works_from_an_empty_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True)
    wheel, = wheels.glob("textgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for split in ("train", "validation", "test"):
        assert f"textgen/corpora/tiny_shakespeare/{split}.txt" in names
    for name in bundled_models():
        assert f"textgen/pretrained/{name}.pt" in names and f"textgen/pretrained/{name}.md" in names
    installed = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(installed),
                    str(wheel)], check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    # only the wheel's copy of textgen is importable; torch and the rest come from this environment
    environment = {**os.environ, "PYTHONPATH": str(installed), "HF_HUB_OFFLINE": "1"}
    environment.pop("TEXTGEN_DATA", None)

    def run(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "textgen", *args], cwd=empty, env=environment,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert len(run("sample", "--length", "40", "--seed", "0")) >= 40
    assert "neg" in run("classify", "dull and lifeless")
    assert "shakespeare" in run("models")
    run("train", "--preset", "tiny", "--max-steps", "3", "--out", "run", "--precision", "fp32")
    assert (empty / "run" / "best.pt").is_file()
    found = subprocess.run([sys.executable, "-c", "import textgen; print(textgen.__file__)"], cwd=empty,
                           env=environment, capture_output=True, text=True).stdout
    assert found.startswith(str(installed))
