"""Fuzzing every flag of every subcommand with hostile values (issue 19): nan, inf, -inf, 0,
negative, 1e12, empty, very long, undecodable bytes, and paths that are files, folders, missing,
unwritable, or an input of the same command. Each case runs `cli.main` in this process under a
memory and a time ceiling and must end with exit status 0, 1 or 2 and at most one line of error,
never a traceback; no input file may change (checksums before and after).

The flags are read from the parser itself, so a new flag is fuzzed without a change here. This file
runs the short profile; TEXTGEN_CLI_FUZZ_PROFILE=long runs thousands of cases (random each run;
TEXTGEN_CLI_FUZZ_EXAMPLES sets the cases per subcommand), and TEXTGEN_CLI_FUZZ_REPORT=FILE writes
their counts as JSON.
"""

import argparse
import collections
import contextlib
import hashlib
import io
import json
import os
import resource
import shutil
import threading
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textgen import cli
from textgen.cli.grammar import build_parser
from fuzzing import time_limit, work_folder

PROFILE = os.environ.get("TEXTGEN_CLI_FUZZ_PROFILE", "short")
EXAMPLES = int(os.environ.get("TEXTGEN_CLI_FUZZ_EXAMPLES", {"short": 15, "long": 400}[PROFILE]))  # per subcommand
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=PROFILE == "short", database=None,
                suppress_health_check=list(HealthCheck))
CASE_SECONDS = 60  # the time ceiling of one case
MEMORY_CEILING = 3 << 30  # bytes a case may add to the process's peak resident memory
COUNTS: collections.Counter = collections.Counter()  # (subcommand, outcome) -> cases
SLOWEST: dict[str, float] = {}
SKIPPED_FLAGS = {"--help", "--version", "--traceback"}  # --traceback re-raises on purpose
INPUT_FLAGS = {"--model", "--file", "--prompt-file", "--corpus", "--init-from", "--data-dir", "--check-copy"}


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def checksums(paths: list[Path]) -> dict[str, str]:
    files = [file for path in paths for file in ([path] if path.is_file() else sorted(path.rglob("*")))]
    return {str(file): hashlib.sha256(file.read_bytes()).hexdigest() for file in files if file.is_file()}


def flags_of(command: str) -> list[argparse.Action]:
    """Every option of `command` as the parser declares it."""
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [action for action in subparsers.choices[command]._actions
            if action.option_strings and not set(action.option_strings) & SKIPPED_FLAGS]


HOSTILE = ["nan", "inf", "-inf", "0", "-1", "-0.5", "1e12", "1000000000000", "", " ", "x" * 5000, "\udcff\udcfe",
           "1" * 400, "-", "auto", "0.5", "3"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A work folder (cwd and caches), a text, a labelled corpus, a text that is also a page name, and a
    tiny language model and classifier trained once; `inputs` are the files no case may change."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    with pytest.MonkeyPatch.context() as patch:
        text, labelled = work_folder(root, patch)
        page = root / "page.html"
        page.write_text("the cat sat on the mat")
        binary = root / "binary.bin"
        binary.write_bytes(bytes(range(256)) * 4)
        small = ["--hidden", "8", "--embed", "8", "--device", "cpu", "--precision", "fp32", "--max-steps", "2"]
        for argv in (["train", "--corpus", str(text), "--preset", "tiny", "--batch-size", "2", "--seq-len", "8",
                      "--out", "lm", *small],
                     ["train", "--task", "classify", "--corpus", str(labelled), "--layers", "1", "--batch-size", "4",
                      "--out", "classifier", *small]):
            assert run(argv)[0] == 0
        readonly = root / "readonly"
        readonly.mkdir()
        # special files: a named pipe that a thread feeds to every reader, links to inputs
        pipe = root / "pipe.html"
        os.mkfifo(pipe)
        feeding = threading.Event()
        threading.Thread(target=feed, args=(pipe, feeding), daemon=True).start()
        (root / "link-page.html").symlink_to(page)
        (root / "link-lm").symlink_to(root / "lm")
        yield argparse.Namespace(root=root, text=text, labelled=labelled, page=page, binary=binary,
                                 lm=root / "lm", classifier=root / "classifier",
                                 inputs=[text, labelled, page, binary, root / "lm", root / "classifier"], pipe=pipe)
        feeding.set()
    if report := os.environ.get("TEXTGEN_CLI_FUZZ_REPORT"):  # the long profile's table, once every case has run
        table = {command: {outcome: COUNTS[(c, outcome)] for c, outcome in COUNTS if c == command}
                 for command in BASE}
        Path(report).write_text(json.dumps({"profile": PROFILE, "cases": table, "slowest_seconds": SLOWEST},
                                           indent=2))


def feed(pipe: Path, done: threading.Event) -> None:
    """Give every reader of the named pipe `pipe` a short text, until `done`."""
    while not done.is_set():
        try:  # opening a pipe to write fails at once while no one reads it
            descriptor = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.01)
            continue
        with contextlib.suppress(OSError), os.fdopen(descriptor, "w") as writer:
            writer.write("the cat sat\n")


ENCODINGS = ["utf-8", "ascii", "latin-1", "cp1252"]  # of the terminal a case prints to


def run(argv: list[str], encoding: str = "utf-8") -> tuple[object, str, str, float, int]:
    """`cli.main(argv)` in this process, printing to streams of `encoding`: status, stdout, stderr (an
    escaped exception's traceback included), seconds, and bytes added to the peak resident memory."""
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding=encoding) for _ in range(2))
    before, started = peak_bytes(), time.monotonic()
    with redirect_stdout(out), redirect_stderr(err), mock.patch("sys.stdin", io.StringIO("the cat\n")):
        try:
            with time_limit(CASE_SECONDS):
                status = cli.main(argv)
        except SystemExit as exit:  # argparse: 2 for usage errors
            status = exit.code
        except BaseException:  # noqa: BLE001 -- a bug or a case over its ceiling: reported with its traceback
            err.reconfigure(errors="backslashreplace")
            traceback.print_exc(file=err)
            status = None
    for stream in (out, err):
        stream.flush()
    text = [stream.buffer.getvalue().decode(encoding) for stream in (out, err)]
    return status, text[0], text[1], time.monotonic() - started, peak_bytes() - before


def paths(world, case: str) -> st.SearchStrategy[str]:
    """Paths a careless user might give: files, folders, missing, unwritable, inputs of the command."""
    return st.sampled_from([str(world.text), str(world.labelled), str(world.page), str(world.binary),
                            str(world.lm), str(world.lm / "best.pt"), str(world.lm / "metrics.jsonl"),
                            str(world.classifier), str(world.root), str(world.root / "readonly"), "/",
                            str(Path.home()), "/proc/version", "/proc/none/out.png", "/dev/null", "/dev/zero",
                            str(world.pipe), str(world.root / "link-page.html"), str(world.root / "link-lm"),
                            str(world.root / f"missing-{case}" / "x.png"), f"new-{case}.png", f"new-{case}.html",
                            f"new-{case}", "out.xyz", "-"])


def value_for(action: argparse.Action, world, case: str) -> st.SearchStrategy[list[str]]:
    """The words after a flag: nothing for a switch, else one to three hostile values."""
    if action.nargs == 0:
        return st.just([])
    one = st.one_of(st.sampled_from(HOSTILE), paths(world, case),
                    *([st.sampled_from([str(choice) for choice in action.choices])] if action.choices else []),
                    st.text(max_size=30))
    return st.lists(one, min_size=1, max_size=3 if action.nargs in ("+", "*") else 1)


BASE = {  # a valid call that each case then overrides with hostile flags (argparse: the last one wins)
    "train": lambda w, case: ["--corpus", str(w.text), "--preset", "tiny", "--hidden", "8", "--embed", "8",
                              "--batch-size", "2", "--seq-len", "8", "--max-steps", "2", "--eval-interval", "1",
                              "--eval-tokens", "64", "--device", "cpu", "--precision", "fp32", "--out",
                              str(w.root / f"run-{case}")],
    "sample": lambda w, case: ["--model", str(w.lm), "--length", "20", "--device", "cpu"],
    "complete": lambda w, case: ["--model", str(w.lm), "--device", "cpu", "the ca"],
    "classify": lambda w, case: ["--model", str(w.classifier), "--device", "cpu", "good film"],
    "eval": lambda w, case: ["--model", str(w.lm), "--text", "the cat", "--device", "cpu"],
    "models": lambda w, case: [],
    "memory": lambda w, case: ["--tasks", "adding", "--cells", "rnn", "--lags", "5", "--budget", "64", "--hidden", "4"],
    "inspect": lambda w, case: ["--model", str(w.lm), "--text", "the cat"],
    "plot": lambda w, case: [str(w.lm), "--out", f"plot-{case}.png"],
}


def check_case(world, command: str, argv: list[str], encoding: str = "utf-8") -> None:
    inputs = world.inputs
    # a file an output flag names may be written, unless it is also an input of the command (issue 19)
    real = lambda path: os.path.abspath(path) if "\0" in path else os.path.realpath(path)  # through links
    given = lambda flags: {real(argv[i + 1]) for i, word in enumerate(argv[:-1]) if word in flags}
    read = given(INPUT_FLAGS) | ({real(word) for word in argv[1:] if not word.startswith("-")}
                                if command == "plot" else set())
    written = given({"--html", "--plot"} | ({"--out"} if command == "plot" else set()))
    if command == "train" and {"--resume", "--overwrite"} & set(argv):  # the run it continues or replaces is its output
        written |= given({"--out"})
    inputs = [path for path in inputs if str(path) not in written - read]
    before = checksums(inputs)
    status, out, err, seconds, added = run(argv, encoding)
    lines = err.rstrip("\n").splitlines()
    outcome = {0: "ok", 1: "error", 2: "usage"}.get(status, "bad status")
    if "Traceback" in err:
        outcome = "traceback"
    elif status == 1 and not (lines and lines[-1].startswith("textgen: error: ")
                              and sum(line.startswith("textgen: error: ") for line in lines) == 1):
        outcome = "not one line"
    changed = [path for path, digest in checksums(inputs).items() if before.get(path) != digest]
    COUNTS[(command, outcome)] += 1
    COUNTS[(command, "files changed")] += bool(changed)
    COUNTS[(command, "over ceiling")] += seconds > CASE_SECONDS or added > MEMORY_CEILING
    SLOWEST[command] = max(SLOWEST.get(command, 0.0), seconds)
    shown = [word if len(word) < 80 else word[:40] + f"...({len(word)} characters)" for word in argv]
    assert outcome in ("ok", "error", "usage"), f"{outcome}: textgen {shown}\n{err[-1500:]}"
    assert not changed, f"input files changed: {changed}: textgen {shown}"
    assert added <= MEMORY_CEILING, f"{added / 1e9:.1f} GB more peak memory: textgen {shown}"


@pytest.mark.parametrize("command", list(BASE))
def test_every_flag_of_every_subcommand_takes_hostile_values_without_a_traceback_or_a_lost_file(world, command):
    flags = flags_of(command)

    @FUZZ
    @given(data=st.data())
    def case(data):
        name = f"{command}-{sum(COUNTS[(command, o)] for o in ('ok', 'error', 'usage'))}"
        chosen = data.draw(st.lists(st.sampled_from(flags), min_size=1, max_size=3), label="flags") if flags else []
        argv = [command, *BASE[command](world, name)]
        for action in chosen:
            argv += [data.draw(st.sampled_from(action.option_strings)),
                     *data.draw(value_for(action, world, name), label=action.dest)]
        check_case(world, command, argv, data.draw(st.sampled_from(ENCODINGS), label="terminal encoding"))
        for leftover in world.root.glob(f"run-{name}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    case()
