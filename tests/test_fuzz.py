"""Fuzzing the command line with hypothesis: corpus files of random bytes, csv and jsonl files with
missing, extra and non-string columns, random argument vectors for every subcommand, and random
prompts and texts. Every case ends with exit status 0, 1 or 2 and at most one line of error, never a
traceback and never a hang; a server that starts ends at Ctrl-C, as a user stops it.

This file runs the short profile; `tests/fuzz_long.py` runs the long one (TEXTGEN_FUZZ_PROFILE=long)
and counts the cases. Cases run `cli.main` in this process (fast), but for argument bytes no
in-process call can give (invalid UTF-8) and for `textgen serve`, which real processes run.
"""

import argparse
import collections
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from textgen import cli
from fuzzing import time_limit, work_folder

PROFILE = os.environ.get("TEXTGEN_FUZZ_PROFILE", "short")
EXAMPLES, PROCESS_EXAMPLES, LONG_LINE_MB = {"short": (6, 2, 2), "long": (300, 40, 50)}[PROFILE]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=PROFILE == "short", database=None,
                suppress_health_check=list(HealthCheck))
CASE_SECONDS = 300  # a case still running after this is a hang
CASES: collections.Counter = collections.Counter()  # property -> cases run (tests/fuzz_long.py reports them)
FAILED: collections.Counter = collections.Counter()  # property -> cases that failed, shrinking included
STATUSES: collections.Counter = collections.Counter()  # exit status -> cases


@dataclass
class Outcome:
    argv: list
    status: object
    out: str
    err: str
    interrupted: bool = False  # the case was stopped by Ctrl-C (SIGINT), as a server is


def run_cli(argv: list[str], stdin: str = "") -> Outcome:
    """`cli.main(argv)` in this process with `stdin`, its output captured; an escaped exception is
    written to the captured stderr as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), mock.patch("sys.stdin", io.StringIO(stdin)):
        try:
            with time_limit(CASE_SECONDS):
                status = cli.main(argv)
        except SystemExit as exit:  # argparse: 2 for usage errors, 0 for --help and --version
            status = exit.code
        except BaseException:  # noqa: BLE001 -- a bug, a hang: reported by check() with its traceback
            traceback.print_exc(file=err)
            status = None
    return Outcome(argv, status, out.getvalue(), err.getvalue())


def run_server(world, argv: list[str]) -> Outcome:
    """`textgen serve ...` in a real process, stopped by Ctrl-C (SIGINT) once it listens, as a user stops
    it: a server runs until interrupted. Still running 30 s after that (or never listening nor ending
    within the case's time) is a hang."""
    process = subprocess.Popen([sys.executable, "-m", "textgen", *argv], cwd=world.root, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines, listening = [], threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if line.startswith("textgen serve: listening on "):
                listening.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + CASE_SECONDS
    while process.poll() is None and not listening.wait(0.1) and time.monotonic() < deadline:
        pass
    interrupted = process.poll() is None and listening.is_set()
    if interrupted:
        process.send_signal(signal.SIGINT)
    try:
        status = process.wait(timeout=30 if interrupted else 1)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        status = "hang"
    reader.join(5)  # stderr to its end
    return Outcome(argv, status, "", "".join(lines), interrupted)


def check(name: str, outcome: Outcome) -> Outcome:
    """Exit status 0, 1 or 2 (130 with "textgen: interrupted" where Ctrl-C stopped it); no traceback; a
    failure's error is the last thing printed, on one line."""
    CASES[name] += 1
    STATUSES[str(outcome.status)] += 1
    try:
        lines = outcome.err.rstrip("\n").splitlines()
        if outcome.interrupted and outcome.status == 130:
            assert lines[-1] == "textgen: interrupted", "no 'interrupted' line at the end"
        else:
            assert outcome.status in (0, 1, 2), f"exit status {outcome.status!r}"
        assert "Traceback" not in outcome.err, "a traceback"
        if outcome.status == 1:
            errors = [line for line in lines if line.startswith("textgen: error: ")]
            assert len(errors) == 1 and lines[-1] == errors[0], "not one line of error at the end"
        if outcome.status == 2:  # argparse's usage lines, then its one line of error
            assert lines and lines[-1].startswith("textgen") and ": error: " in lines[-1], "no usage error line"
    except AssertionError as failure:
        FAILED[name] += 1
        raise AssertionError(f"{failure}: textgen {outcome.argv!r:.600}\n--- stderr ---\n{outcome.err[-3000:]}")
    return outcome


@pytest.fixture(scope="module", autouse=True)
def world(tmp_path_factory):
    """A folder to work in (cwd, token and datasets caches), a tiny text and labelled corpus, and a tiny
    language model and classifier trained once for the whole module."""
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as patch:
        text, labelled = work_folder(root, patch)
        small = ["--hidden", "8", "--embed", "8", "--device", "cpu", "--precision", "fp32", "--max-steps", "2"]
        for argv in (["train", "--corpus", str(text), "--preset", "tiny", "--batch-size", "2", "--seq-len", "8",
                      "--out", "lm", *small],
                     ["train", "--task", "classify", "--corpus", str(labelled), "--layers", "1", "--batch-size", "4",
                      "--out", "classifier", *small]):
            assert run_cli(argv).status == 0
        binary = root / "binary.bin"
        binary.write_bytes(bytes(range(256)))
        yield argparse.Namespace(root=root, text=text, labelled=labelled, lm=root / "lm",
                                 classifier=root / "classifier", binary=binary)


def case_path(world, suffix: str) -> Path:
    """A fresh file name in the work folder."""
    return world.root / f"case-{sum(CASES.values())}{suffix}"


def train_small(*argv: str) -> list[str]:
    return ["train", *argv, "--preset", "tiny", "--hidden", "8", "--embed", "8", "--batch-size", "2",
            "--seq-len", "4", "--max-steps", "1", "--eval-interval", "1", "--eval-tokens", "256", "--device", "cpu",
            "--precision", "fp32"]


# --- corpus files of random bytes --------------------------------------------------------------

PIECES = [b"the cat sat. ", b"\x00", b"\xef\xbb\xbf", b"\r\n", b"\n", b"\r", b"\xff\xfe", b"\xc3(", b"\x80",
          "😀 ".encode(), "שלום עולם ".encode(), "مرحبا ".encode(), b"\x1b[31m", b"\t", b"\x7f", b"\xe9t\xe9 ",
          b'"quoted, text"', b",", b"{", b"}"]
FILE_BYTES = st.one_of(st.binary(max_size=3000), st.lists(st.sampled_from(PIECES), max_size=400).map(b"".join))
SUFFIXES = st.sampled_from([".txt", ".csv", ".jsonl", ".json", ".parquet", ".md", ""])


@FUZZ
@given(content=FILE_BYTES, suffix=SUFFIXES, encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "no-such"]),
       tokenizer=st.sampled_from(["char", "char", "sentencepiece"]))
@example(content=b"\x00\x00", suffix=".txt", encoding="utf-16", tokenizer="char")  # found: no byte-order mark
@example(content=b"\x00", suffix=".txt", encoding="utf-8", tokenizer="sentencepiece")  # found: SentencePiece's own error
def test_a_corpus_of_random_bytes_trains_or_fails_in_one_line(world, content, suffix, encoding, tokenizer):
    path = case_path(world, suffix)
    path.write_bytes(content)
    check("corpus_bytes", run_cli(train_small("--corpus", str(path), "--encoding", encoding, "--tokenizer",
                                              tokenizer, "--vocab-size", "40", "--out", str(path) + ".run")))


def test_a_corpus_of_one_long_line_trains(world):
    path = world.root / "long-line.txt"
    with open(path, "w") as file:
        for _ in range(LONG_LINE_MB):
            file.write("a quick brown fox, " * (1_000_000 // 19))
        file.write("\n")
    assert check("long_line", run_cli(train_small("--corpus", str(path), "--out", "long-line"))).status == 0


# --- csv and jsonl files with missing, extra and non-string columns -----------------------------

COLUMNS = st.sampled_from(["text", "label", "review", "extra", "", "Text", "0"])
VALUES = st.one_of(st.text(max_size=12), st.integers(-3, 3), st.floats(), st.none(), st.booleans(),
                   st.lists(st.integers(0, 3), max_size=2), st.sampled_from(["good", "bad", "pos", "neg"]))


def write_table(path: Path, header: list, rows: list) -> None:
    """A csv file (each row as long as it happens to be: missing and extra fields) or a jsonl file."""
    if path.suffix == ".csv":
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows([["" if value is None else value for value in row.values()] for row in rows])
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@FUZZ
@given(suffix=st.sampled_from([".csv", ".jsonl"]), header=st.lists(COLUMNS, max_size=4),
       rows=st.lists(st.dictionaries(COLUMNS, VALUES, max_size=4), max_size=25),
       flags=st.lists(st.sampled_from([["--text-column", "review"], ["--label-column", "extra"], ["--json"],
                                       ["--long-text", "chunk"], ["--max-len", "2"]]), max_size=2))
# found: a text column of digits, one labelled row, texts that are all empty, a single label
@example(suffix=".csv", header=["text", "label"], rows=[{"text": "1", "label": ""}], flags=[])
@example(suffix=".csv", header=["text", "text", "label"], rows=[{"text": "", "label": "", "review": "", "extra": [1, 1]},
                                                              {"text": "", "label": "0", "review": "", "extra": [1, 1]}],
         flags=[])
@example(suffix=".csv", header=["text", "label"], rows=[{"text": "a", "label": "x"}] * 3, flags=[])
def test_a_labelled_file_with_odd_columns_trains_and_classifies_or_fails_in_one_line(world, suffix, header, rows,
                                                                                   flags):
    path = case_path(world, suffix)
    write_table(path, header, rows)
    training = [flag for pair in flags for flag in pair if pair[0] in ("--text-column", "--label-column")]
    check("labelled_files", run_cli(train_small("--task", "classify", "--corpus", str(path), *training,
                                                "--out", str(path) + ".run")))
    labelling = [flag for pair in flags for flag in pair if pair[0] != "--label-column"]
    outcome = check("labelled_files", run_cli(["classify", "--model", str(world.classifier), "--file", str(path),
                                               *labelling]))
    if outcome.status == 0 and "--json" in labelling:
        assert all(json.loads(line)["label"] in ("neg", "pos") for line in outcome.out.splitlines())


# --- random argument vectors for every subcommand -----------------------------------------------

def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in cli.grammar.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# Flags that bound a case's work, typed last so that they win: a fuzzed argument vector must not
# start a ten-minute training run or a 45-model benchmark.
BOUNDS = {"train": ["--max-steps", "2", "--preset", "tiny", "--out", "fuzzed-run", "--device", "cpu"],
          "serve": ["--host", "127.0.0.1", "--port", "0"],  # a free loopback port; run_server stops it
          "memory": ["--budget", "32", "--lags", "10", "--seeds", "0", "--hidden", "4"],
          "inspect": ["--max-chars", "2000"]}
NUMBERS = ["-1", "0", "1", "2", "3", "7", "x", "", "2.5", "nan", "inf", "-inf", "1e-9", "٣"]
NUMBER_VALUES = st.sampled_from(NUMBERS)
WORDS = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8)


def values(world, action: argparse.Action):
    """Values for one option: its choices, numbers of its type, or paths and words."""
    if action.choices:
        return st.sampled_from([*map(str, action.choices), "bogus"])
    if action.type in (int, float):
        return NUMBER_VALUES
    paths = [world.text, world.labelled, world.lm, world.classifier, world.binary, world.root / "missing",
             world.root / "out.png", world.root / "out.html", world.lm / "last.pt"]
    return st.one_of(st.sampled_from([*map(str, paths), "", "-", "tiny_shakespeare", "sentiment", "a\nb", "😀",
                                      "שלום", "1m", "10s"]), WORDS)


@st.composite
def argument_vectors(draw, world):
    parsers = subcommands()
    name = draw(st.sampled_from(sorted(parsers)))
    options = [action for action in parsers[name]._actions
               if action.option_strings and "--traceback" not in action.option_strings]  # it re-raises by design
    argv = [name]
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 5)) == 0:
            argv.append(draw(WORDS))  # a stray word
            continue
        action = draw(st.sampled_from(options))
        argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs != 0:
            argv.extend(draw(st.lists(values(world, action), min_size=1, max_size=2 if action.nargs == "+" else 1)))
    return argv + BOUNDS.get(name, [])


@FUZZ
@given(data=st.data())
def test_a_random_argument_vector_ends_cleanly(world, data):
    argv = data.draw(argument_vectors(world))
    check("argument_vectors", run_server(world, argv) if argv[0] == "serve" else run_cli(argv))


def test_a_server_started_by_an_argument_vector_stops_at_ctrl_c(world):
    outcome = check("server", run_server(world, ["serve", "--model", str(world.lm), *BOUNDS["serve"]]))
    assert outcome.interrupted and outcome.status == 130


@settings(FUZZ, max_examples=PROCESS_EXAMPLES)
@given(name=st.sampled_from(["train", "sample", "classify", "eval", "--version", "bogus"]),
       words=st.lists(st.binary(min_size=1, max_size=6).filter(lambda word: b"\x00" not in word), max_size=3))
@example(name="train", words=[b"\n\x01"])  # found: argparse's error quoted the line break
def test_argument_bytes_that_are_not_utf8_end_cleanly_in_a_real_process(world, name, words):
    argv = [name, *words, *BOUNDS.get(name, [])]
    if name == "train":
        argv += ["--corpus", str(world.text)]
    try:
        done = subprocess.run([sys.executable, "-m", "textgen", *argv], capture_output=True, timeout=CASE_SECONDS,
                              cwd=world.root, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        done = subprocess.CompletedProcess([], "hang", b"", b"still running after the time limit")
    check("process_argv", Outcome(argv, done.returncode, done.stdout.decode(errors="replace"),
                                  done.stderr.decode(errors="replace")))


def test_argument_vectors_found_by_fuzzing_end_cleanly(world):
    for argv in (["classify", "--model", str(world.text)],  # a text file as a checkpoint: unpickled garbage
                 ["classify", "--model", str(world.classifier), "--file", "no\nsuch"]):  # a line break in the error
        assert check("found", run_cli(argv)).status == 1
    # refused when the request is built, before any model loads, since the fields have ranges
    refused = check("found", run_cli(["classify", "--model", str(world.classifier), "--batch-size", "0", "good"]))
    assert refused.status == 1 and "--batch-size must be a whole number from 1 to 65,536, got 0" in refused.err


# --- random prompts and texts -------------------------------------------------------------------

SPECIAL = ["", " ", "😀🎉👩‍👩‍👧", "שלום עולם", "مرحبا بالعالم", "\u202eevil\u202c", "\x01\x1b[2J\x7f", "\ufeffbom",
           "a\r\nb", "[bold]x[/]", "é" * 10_000, "the cat " * 125_000]  # the last one is 1 MB
TEXTS = st.one_of(st.text(max_size=300), st.sampled_from(SPECIAL))
SAMPLE_FLAGS = st.lists(st.sampled_from([["--json"], ["--num-samples", "3"], ["--temperature", "0"], ["--stop", "e"],
                                         ["--stop", "\n"], ["--beams", "2"], ["--top-k", "1"], ["--length", "1"],
                                         ["--quantize", "int8"], ["--no-repeat-ngram", "2"], ["--seed", "1"],
                                         ["--repetition-penalty", "1.5"], ["--length", "60"]]), max_size=3)


@FUZZ
@given(prompt=TEXTS, as_file=st.booleans(), flags=SAMPLE_FLAGS)
def test_a_random_prompt_samples_or_fails_in_one_line(world, prompt, as_file, flags):
    if as_file or "\x00" in prompt or len(prompt) > 100_000:  # argv holds no NUL, nor 1 MB in one argument
        path = case_path(world, ".txt")
        path.write_text(prompt, encoding="utf-8", errors="surrogatepass")
        given_prompt = ["--prompt-file", str(path)]
    else:
        given_prompt = ["--prompt", prompt]
    outcome = check("prompts", run_cli(["sample", "--model", str(world.lm), "--length", "30", *given_prompt,
                                        *[flag for pair in flags for flag in pair]]))
    if outcome.status == 0 and ["--json"] in flags:
        assert all("text" in json.loads(line) for line in outcome.out.splitlines())


@FUZZ
@given(texts=st.lists(TEXTS, max_size=4), route=st.sampled_from(["argv", "stdin", "file"]),
       flags=st.lists(st.sampled_from([["--json"], ["--long-text", "chunk"], ["--long-text", "whole"],
                                       ["--max-len", "64"], ["--batch-size", "1"]]), max_size=2))
def test_random_texts_classify_or_fail_in_one_line(world, texts, route, flags):
    argv, stdin = ["classify", "--model", str(world.classifier), *[flag for pair in flags for flag in pair]], ""
    if route == "file":
        path = case_path(world, ".txt")
        path.write_text("\n".join(texts), encoding="utf-8", errors="surrogatepass")
        argv += ["--file", str(path)]
    elif route == "stdin":
        stdin = "\n".join(texts)
    else:
        argv += [text.replace("\x00", "") for text in texts if len(text) < 100_000]
    outcome = check("texts", run_cli(argv, stdin))
    if outcome.status == 0 and ["--json"] in flags:
        assert all(json.loads(line)["label"] in ("neg", "pos") for line in outcome.out.splitlines())


def test_numeric_flags_are_fuzzed_with_numbers_at_and_past_their_bounds(world):
    # once dead: flags were typed by range-checking parsers, so `action.type in (int, float)` was never
    # true; now the grammar types them int and float and the requests check the ranges
    numeric = [action for parser in subcommands().values() for action in parser._actions
               if action.option_strings and not action.choices and action.type in (int, float)]
    assert len(numeric) > 40
    assert all(values(world, action) is NUMBER_VALUES for action in numeric)
    assert {"0", "-1", "nan", "inf"} <= set(NUMBERS)
