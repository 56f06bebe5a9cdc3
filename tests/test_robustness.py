"""Issue 19: nothing a user hands textgen loses their files, is misread without a word, or ends in a
traceback. One test per kind of probe, each first seen failing."""

import hashlib
import json

import pytest

from textgen import cli
from textgen.nn.checkpoint import load_checkpoint


def train_args(corpus, out, *extra):
    return ["train", "--corpus", str(corpus), "--preset", "tiny", "--out", str(out), "--device", "cpu",
            "--precision", "fp32", "--eval-interval", "4", "--checkpoint-interval", "4", "--log-interval", "1",
            *extra]


def digest(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if path.is_file()}


@pytest.fixture
def trained(corpus, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(corpus, run, "--max-steps", "8")) == 0
    return run


def test_training_into_a_finished_run_without_resume_or_overwrite_is_refused_and_keeps_its_files(
        corpus, trained, capsys):
    before = digest(trained)
    assert cli.main(train_args(corpus, trained, "--max-steps", "4")) == 1
    err = capsys.readouterr().err
    assert "holds a trained run" in err and "--resume" in err and "--overwrite" in err
    assert digest(trained) == before


def test_overwrite_starts_again_and_replaces_the_old_run(corpus, trained):
    assert cli.main(train_args(corpus, trained, "--max-steps", "4", "--overwrite")) == 0
    assert load_checkpoint(trained / "last.pt")["step"] == 4
    assert not (trained / ".replaced").exists()
    assert json.loads((trained / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_a_run_started_with_overwrite_can_be_resumed(corpus, trained):
    """--overwrite is what the command that started a run did to the folder, not a setting of the run:
    resuming such a run (without it) was refused for carrying both."""
    assert cli.main(train_args(corpus, trained, "--max-steps", "4", "--overwrite")) == 0
    assert cli.main(train_args(corpus, trained, "--max-steps", "8", "--resume")) == 0
    assert load_checkpoint(trained / "last.pt")["step"] == 8


def test_an_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(corpus, trained, capsys):
    before = digest(trained)
    code = cli.main(train_args(corpus, trained, "--max-steps", "50", "--overwrite", "--lr", "1e20",
                               "--warmup-steps", "0", "--grad-clip", "0", "--checkpoint-interval", "100",
                               "--eval-interval", "100"))
    assert code == 1 and "the training loss became" in capsys.readouterr().err
    assert digest(trained) == before and not (trained / ".replaced").exists()


def test_a_folder_with_files_textgen_did_not_write_is_refused(corpus, tmp_path, capsys):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    assert cli.main(train_args(corpus, mine, "--max-steps", "4")) == 1
    assert "holds files textgen did not write (config.json)" in capsys.readouterr().err
    assert (mine / "config.json").read_text() == '{"my": "settings"}'
    assert sorted(p.name for p in mine.iterdir()) == ["config.json"]


def test_a_run_that_fails_at_the_start_leaves_no_half_made_folder(corpus, tmp_path, capsys):
    run = tmp_path / "new" / "run"
    code = cli.main(train_args(corpus, run, "--max-steps", "50", "--lr", "1e20", "--warmup-steps", "0",
                               "--grad-clip", "0", "--checkpoint-interval", "100", "--eval-interval", "100"))
    assert code == 1 and "the training loss became" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_failed_start_removes_only_what_it_wrote_and_a_folder_only_when_empty(corpus, tmp_path):
    # issue 34: the folder a failed run made was removed with whatever someone saved in it meanwhile
    import textgen
    from textgen.errors import TextgenError
    from textgen.training.trainer import SilentReporter

    class SavesAFileMeanwhile(SilentReporter):
        def step(self, step, fraction_done, metrics):
            (tmp_path / "new" / "notes.txt").write_text("mine")

    settings = dict(preset="tiny", device="cpu", precision="fp32", max_steps=50, lr=1e20, warmup_steps=0,
                    grad_clip=0, checkpoint_interval=100, eval_interval=100, log_interval=1)
    with pytest.raises(TextgenError, match="the training loss became"):
        textgen.train(corpus=str(corpus), out=str(tmp_path / "new" / "a"), reporter=SavesAFileMeanwhile(),
                      **settings)
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "new").rglob("*")) == ["new/notes.txt"]
    with pytest.raises(TextgenError, match="the training loss became"):  # a second run beside it
        textgen.train(corpus=str(corpus), out=str(tmp_path / "new" / "b"), **settings)
    assert (tmp_path / "new" / "notes.txt").read_text() == "mine" and not (tmp_path / "new" / "b").exists()


def test_fine_tuning_into_a_link_to_the_model_it_starts_from_is_refused(corpus, trained, tmp_path, capsys):
    # issue 34: --out LINK --overwrite, LINK -> the --init-from run, replaced every file of that model
    link = tmp_path / "link"
    link.symlink_to(trained)
    before = digest(trained)
    for out in (link, trained):
        assert cli.main(train_args(corpus, out, "--init-from", str(trained), "--max-steps", "4", "--overwrite")) == 1
        assert "holds an input of this command" in capsys.readouterr().err
    assert digest(trained) == before


def test_inspect_html_refuses_to_write_over_its_own_input_file(tmp_path, capsys):
    text = tmp_path / "text.html"
    text.write_text("my own words")
    assert cli.main(["inspect", "--file", str(text), "--html", str(text)]) == 1
    assert "is an input of this command" in capsys.readouterr().err
    assert text.read_text() == "my own words"


def test_plot_refuses_its_own_input_and_an_unknown_format_before_any_work(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    before = digest(trained)
    assert cli.main(["plot", str(trained), "--out", str(trained / "metrics.jsonl")]) == 1
    assert "cannot write a .jsonl file" in capsys.readouterr().err
    assert cli.main(["plot", str(trained), "--out", str(tmp_path / "chart.xyz")]) == 1
    assert "cannot write a .xyz file; name it with one of" in capsys.readouterr().err
    assert cli.main(["plot", str(trained), "--out", str(tmp_path)]) == 1
    assert digest(trained) == before


def test_memory_plot_of_an_unknown_format_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["memory", "--quick", "--plot", str(tmp_path / "m.xyz")]) == 1
    assert "cannot write a .xyz file" in capsys.readouterr().err


# --- checkpoints verify themselves --------------------------------------------------------------

def zero_bytes_inside_the_largest_tensor(path):
    import zipfile
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    start = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra)
    middle = start + entry.file_size // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def test_zeroed_bytes_inside_a_checkpoint_are_found_by_its_checksum(trained, capsys):
    from textgen.errors import CheckpointError
    zero_bytes_inside_the_largest_tensor(trained / "best.pt")
    with pytest.raises(CheckpointError, match="is damaged: its contents no longer match the checksum"):
        load_checkpoint(trained / "best.pt")
    assert cli.main(["sample", "--model", str(trained / "best.pt"), "--length", "5"]) == 1
    assert "is damaged" in capsys.readouterr().err


def test_resume_from_a_damaged_last_pt_takes_an_intact_best_pt_with_a_log_line(corpus, trained, capsys):
    zero_bytes_inside_the_largest_tensor(trained / "last.pt")
    best_step = load_checkpoint(trained / "best.pt")["step"]
    assert cli.main(train_args(corpus, trained, "--max-steps", "12", "--resume")) == 0
    err = "".join(capsys.readouterr().err.split())  # rich wraps log lines
    assert "cannotbeused" in err and f"resumingfrom{trained / 'best.pt'},step{best_step}" in err
    assert (trained / "last.pt.damaged").exists() and load_checkpoint(trained / "last.pt")["step"] == 12


def test_resume_when_last_pt_and_best_pt_are_both_damaged_is_a_clear_error(corpus, trained, capsys):
    for name in ("last.pt", "best.pt"):
        zero_bytes_inside_the_largest_tensor(trained / name)
    assert cli.main(train_args(corpus, trained, "--max-steps", "12", "--resume")) == 1
    assert "last.pt is damaged" in capsys.readouterr().err


def hand_made(trained, tmp_path, change):
    from textgen.nn.checkpoint import save_checkpoint
    payload = load_checkpoint(trained / "best.pt")
    for key in ("path", "checksum", "format", "version"):
        payload.pop(key)
    change(payload)
    path = tmp_path / "hand_made.pt"
    save_checkpoint(path, payload)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda p: p.pop("model"), "model is missing"),
    (lambda p: p.update(tokenizer="chars"), "tokenizer is str, not a dict"),
    (lambda p: p["model_config"].update(hidden_size=10 ** 9), "--hidden must be a whole number from 1 to 16,384, got 1000000000"),
    (lambda p: p["model_config"].update(hidden_size="64"), "do not read back"),
    (lambda p: p["model_config"].update(cell="transformer"), "do not read back"),
    (lambda p: p["model"].update({"output.bias": p["model"]["output.bias"][:3]}), "do not fit its config"),
    (lambda p: p["model"].pop("output.bias"), "output.bias missing"),
])
def test_a_hand_made_checkpoint_with_missing_keys_wrong_types_or_shapes_is_refused_in_one_line(
        trained, tmp_path, capsys, change, message):
    path = hand_made(trained, tmp_path, change)
    for command in (["sample", "--model", str(path), "--length", "5"], ["inspect", "--model", str(path),
                                                                         "--text", "ab"]):
        assert cli.main(command) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_an_old_checkpoint_without_a_checksum_still_loads(trained, tmp_path):
    import torch
    payload = load_checkpoint(trained / "best.pt")
    payload.pop("checksum"), payload.pop("path")
    torch.save(payload, tmp_path / "old.pt")
    assert cli.main(["sample", "--model", str(tmp_path / "old.pt"), "--length", "5"]) == 0


# --- clean behaviour at the edges ---------------------------------------------------------------

class ClosedPipe:
    """A stdout whose reader has gone, as `textgen sample | head` leaves it."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise OSError("no file")


def test_a_closed_pipe_ends_quietly_with_status_0(trained, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert cli.main(["sample", "--model", str(trained), "--length", "50", "--seed", "0"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_long_prompt_is_read_in_bounded_chunks(trained, write_file, monkeypatch, capsys):
    from textgen.nn.model import LanguageModel
    widths, forward = [], LanguageModel.forward

    def recorded(self, ids, state=None, labels=None):
        widths.append(ids.size(1))
        return forward(self, ids, state, labels)

    monkeypatch.setattr(LanguageModel, "forward", recorded)
    prompt = write_file("prompt.txt", "the quick brown fox jumps over a lazy dog.\n" * 5_000)
    assert cli.main(["sample", "--model", str(trained), "--prompt-file", str(prompt), "--length", "5"]) == 0
    assert max(widths) <= 4096 and sum(widths) >= 215_000


def with_stdin(monkeypatch, text):
    import io
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8"))


@pytest.mark.parametrize("dash", [["-"], ["--file", "-"]])
def test_dash_means_standard_input_for_classify(monkeypatch, capsys, dash):
    with_stdin(monkeypatch, "a gripping, beautiful film\n")
    assert cli.main(["classify", *dash, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "a gripping, beautiful film"


def test_dash_means_standard_input_for_prompt_and_inspect_files(trained, monkeypatch, capsys):
    with_stdin(monkeypatch, "the quick")
    assert cli.main(["sample", "--model", str(trained), "--prompt-file", "-", "--length", "5", "--json"]) == 0
    assert capsys.readouterr().out.strip()
    with_stdin(monkeypatch, "the quick")
    assert cli.main(["inspect", "--model", str(trained), "--file", "-", "--json"]) == 0
    assert "".join(json.loads(capsys.readouterr().out)["tokens"]) == "the quick"


def test_memory_results_are_printed_before_a_plot_that_fails(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from textgen.errors import TextgenError

    def fails(summaries, path):
        raise TextgenError(f"could not write {path}: the disk is full")

    monkeypatch.setattr("textgen.recipes.memory.plot", fails)
    code = cli.main(["memory", "--tasks", "adding", "--cells", "rnn", "--lags", "5", "--budget", "64",
                     "--hidden", "4", "--json", "--plot", str(tmp_path / "m.png")])
    captured = capsys.readouterr()
    assert code == 1 and "the disk is full" in captured.err
    assert json.loads(captured.out)["results"]


# --- every argument validated at the parser -----------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--dropout=-inf"], "--dropout"),
    (["sample", "--temperature", "inf"], "--temperature"),
    (["sample", "--top-p", "nan"], "--top-p"),
    (["sample", "--repetition-penalty", "nan"], "--repetition-penalty"),
])
def test_a_float_flag_refuses_nan_and_inf_naming_the_flag(argv, flag, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"textgen: error: {flag} must be a finite number, got " in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, flag", [
    (["sample", "--beams", "100000"], "--beams"),
    (["sample", "--num-samples", "100000"], "--num-samples"),
    (["sample", "--length", "0"], "--length"),
    (["train", "--vocab-size", "1000000000"], "--vocab-size"),
    (["train", "--seq-len", "1000000000000"], "--seq-len"),
    (["memory", "--lags", "1000000000"], "--lags"),
    (["memory", "--budget", "0"], "--budget"),
    (["classify", "--max-len", "0", "a text"], "--max-len"),
    (["eval", "--seq-len", "0"], "--seq-len"),
    (["inspect", "--layer", "-1"], "--layer"),
])
def test_an_int_flag_out_of_its_range_is_refused_with_the_range(argv, flag, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"textgen: error: {flag} must be a whole number from " in err and len(err.strip().splitlines()) == 1
    assert len(err.strip().splitlines()[-1]) < 200


def test_a_zero_time_budget_is_an_error_not_no_limit(corpus, tmp_path, capsys):
    assert cli.main(train_args(corpus, tmp_path / "run", "--time-budget", "0")) == 1
    assert "--time-budget 0 must be longer than 0" in capsys.readouterr().err


def test_training_that_would_ask_for_terabytes_is_refused_before_allocating(corpus, tmp_path, capsys):
    assert cli.main(train_args(corpus, tmp_path / "run", "--hidden", "16384", "--layers", "64",
                               "--batch-size", "65536", "--max-steps", "1")) == 1
    err = capsys.readouterr().err
    assert "of memory, more than the" in err and "lower them" in err
    assert not (tmp_path / "run").exists()


def test_sampling_history_that_would_not_fit_is_refused_before_allocating(trained, capsys):
    assert cli.main(["sample", "--model", str(trained), "--num-samples", "1000", "--length", "10000000",
                     "--no-repeat-ngram", "3"]) == 1
    assert "of memory, more than the" in capsys.readouterr().err


@pytest.mark.parametrize("below", ["", "tokens"])
def test_a_token_cache_setting_that_names_a_file_is_a_one_line_error(corpus, tmp_path, monkeypatch, capsys, below):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    monkeypatch.setenv("TEXTGEN_CACHE", str(mine / below) if below else str(mine))
    assert cli.main(train_args(corpus, tmp_path / "run", "--max-steps", "1")) == 1
    err = capsys.readouterr().err
    assert "could not write the token cache" in err and "Traceback" not in err
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("argv, message", [  # found by tests/test_cli_fuzz.py
    (["sample", "--model", "x" * 5000], "is too long a path"),
    (["train", "--corpus", "x" * 300, "--max-steps", "1"], "is too long a path"),
    (["inspect", "--file", "a\x00b"], "is not a usable path"),
    (["train", "--encoding", "\udcff\udcfe", "--max-steps", "1"], "which is not UTF-8 text"),
    (["train", "--corpus", "/proc/version", "--max-steps", "1", "--preset", "tiny"], "could not read /proc/version"),
])
def test_a_path_or_encoding_no_system_takes_is_a_one_line_error(argv, message, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# issue 34: tracebacks from bytes, encodings and special files
@pytest.mark.parametrize("argv", [["classify", "great \udcff\udcfe film"],
                                  ["sample", "--model", "reviews", "--prompt", "bad \udcff", "--length", "5"],
                                  ["complete", "--model", "english", "Th\udcffe"]])
def test_an_argument_with_bytes_that_are_not_utf8_is_one_line(argv, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "holds byte \\xff at character" in err and "not UTF-8" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["train", "--corpus", "/dev/zero", "--max-steps", "1"],
                                  ["sample", "--prompt-file", "/dev/zero", "--length", "5"],
                                  ["classify", "--file", "/dev/zero"],
                                  ["inspect", "--file", "/dev/zero"]])
def test_a_device_given_as_a_file_is_refused_by_its_kind(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    assert "/dev/zero is a character device, not a file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_named_pipe_still_gives_a_prompt(tmp_path, capsys):
    import os
    import threading

    pipe = tmp_path / "prompt"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text("ROMEO:\n"))
    writer.start()
    assert cli.main(["sample", "--prompt-file", str(pipe), "--length", "10", "--seed", "1"]) == 0
    writer.join()
    assert capsys.readouterr().out.startswith("ROMEO:\n")


def test_a_terminal_that_cannot_show_a_character_gets_an_escape_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for argv in (["sample", "--prompt", "café", "--length", "5", "--seed", "1"], ["classify", "café crème"]):
        done = subprocess.run([sys.executable, "-m", "textgen", *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert "caf\\xe9" in done.stdout


def test_resuming_on_another_corpus_is_refused_and_on_the_same_file_goes_on(corpus, trained, tmp_path, monkeypatch,
                                                                           capsys):
    # issue 34: --resume --corpus OTHER trained on the other text (best.pt then picked across two corpora)
    other = tmp_path / "other.txt"
    other.write_text("a different text altogether\n" * 100)
    before = digest(trained)
    assert cli.main(train_args(other, trained, "--max-steps", "12", "--resume")) == 1
    assert "--resume continues" in capsys.readouterr().err and digest(trained) == before
    monkeypatch.chdir(corpus.parent)  # the same file by another name
    assert cli.main(train_args(corpus.name, trained, "--max-steps", "12", "--resume")) == 0


@pytest.mark.parametrize("extra", [["--condition", "text"], ["--task", "classify", "--label-column", "text"]])
def test_one_column_as_both_text_and_labels_is_one_line(extra, tmp_path, capsys):
    # issue 34: the labels' encoding turned the text into numbers: AttributeError in corpus.py
    table = tmp_path / "t.csv"
    table.write_text("text,label\n" + "hello there,pos\nawful film,neg\n" * 20)
    assert cli.main(train_args(table, tmp_path / "run", "--max-steps", "1", *extra)) == 1
    assert "is the column the text is read from too" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_says_its_new_settings_in_config_json_as_in_its_checkpoint(corpus, trained):
    # issue 34: --resume --lr changed the checkpoint's settings, and config.json kept the old ones
    assert cli.main(train_args(corpus, trained, "--max-steps", "12", "--resume", "--lr", "0.0123")) == 0
    saved = json.loads((trained / "config.json").read_text())
    assert saved["train"]["lr"] == 0.0123 and saved["train"]["max_steps"] == 12
    assert load_checkpoint(trained / "last.pt")["configs"]["train"] == saved["train"]


PEAK = ("import resource, sys; from textgen import cli; status = cli.main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr); sys.exit(status)")


@pytest.mark.slow
def test_one_huge_line_costs_about_its_own_size_in_memory_and_prints_a_shortened_row(tmp_path):
    """Issue 34: classify --file with one 174 MB line peaked at 5.6 GB (the encoder's ids and the
    n-grams of the whole text at once, then a table laying out every character)."""
    import subprocess
    import sys
    words = "the film was not bad at all but a little long and the acting good great awful boring".split()
    line = " ".join(words[(i * 7919) % len(words)] for i in range(4_000_000))  # about 20 MB
    (tmp_path / "huge.txt").write_text(line + "\n")
    (tmp_path / "small.txt").write_text("a good film\n")

    def peak(name: str) -> tuple[int, str]:
        result = subprocess.run([sys.executable, "-c", PEAK, "classify", "--file", str(tmp_path / name)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return int(result.stderr.strip().splitlines()[-1]), result.stdout

    (huge, shown), (small, _) = peak("huge.txt"), peak("small.txt")
    assert huge - small < 6 * len(line), f"{(huge - small) / 1e6:.0f} MB more for one line of {len(line) / 1e6:.0f} MB"
    assert len(shown) < 10_000 and f"{len(line):,}characters" in shown.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize("writer", ["train", "inspect", "plot", "memory"])
def test_every_writer_refuses_an_output_that_is_an_input_through_a_link_or_a_pipe(writer, corpus, trained, tmp_path,
                                                                                 capsys):
    """Issue 34: one guard, through links, for every command that writes; no pipe or device as output."""
    pytest.importorskip("matplotlib")
    import os
    pipe = tmp_path / "out.png"
    os.mkfifo(pipe)
    os.mkfifo(tmp_path / "pipe.html")
    page = tmp_path / "notes.html"
    page.write_text("my own words")
    (tmp_path / "link.html").symlink_to(page)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.txt").write_text(corpus.read_text())
    (tmp_path / "data-link").symlink_to(tmp_path / "data")
    before = digest(trained)
    cases = {
        "train": [(train_args(tmp_path / "data", tmp_path / "data-link"), "is an input"),
                  (train_args(corpus, tmp_path, "--init-from", str(trained / "best.pt")), "holds an input")],
        "inspect": [(["inspect", "--model", str(trained), "--corpus", str(page), "--find", "quote", "--split", "train",
                      "--html", str(tmp_path / "link.html")], "is an input"),
                    (["inspect", "--model", str(trained), "--text", "the", "--html", str(tmp_path / "pipe.html")],
                     "is a named pipe, not a file")],
        "plot": [(["plot", str(trained), "--out", str(pipe)], "is a named pipe, not a file")],
        "memory": [(["memory", "--quick", "--plot", str(pipe)], "is a named pipe, not a file")],
    }[writer]
    for argv, message in cases:
        assert cli.main(argv) == 1, argv
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    assert digest(trained) == before and page.read_text() == "my own words"
    assert (tmp_path / "data" / "train.txt").read_text() == corpus.read_text()
