"""The README and docs/ as users read them: every command block marked runnable runs as written.

A fenced block whose info string is `sh runnable` holds `textgen ...` commands (a `# comment` may
end a line, a trailing backslash continues it); each runs in-process through `textgen.cli.main` in a
empty folder, as a user who has only installed textgen runs it (a bare name of a file in
textgen/examples, such as my_labels.csv, reads that example), and must exit 0. `sh runnable corpora` marks a
block that needs the real corpora: it skips, saying why, unless TEXTGEN_DATA points at them (and
fails instead under TEXTGEN_REQUIRE_CORPORA, as in CI). Blocks that are only `sh` are examples and
do not run."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from pathlib import Path

import pytest

from textgen import cli
from textgen.data.files import local_or_example

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.S | re.M)


def blocks(kind: str = "runnable"):
    """(page, line, info words, body) of every fenced block of the README and docs/."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            words = match.group("info").split()
            yield page, text.count("\n", 0, match.start()) + 1, words, match.group("body")


RUNNABLE = [pytest.param(body, "corpora" in words, id=f"{page.relative_to(ROOT)}:{line}")
            for page, line, words, body in blocks() if words[:2] == ["sh", "runnable"]]


def commands(body: str) -> list[list[str]]:
    """The argument vectors of a block: one per line, backslash-continued lines joined."""
    return [argv for line in body.replace("\\\n", " ").splitlines() if (argv := shlex.split(line, comments=True))]


@pytest.mark.parametrize("body, needs_corpora", RUNNABLE)
def test_runnable_block_runs_as_written(body, needs_corpora, tmp_path, monkeypatch, capsys, corpora_dir):
    argvs = commands(body)
    assert argvs and all(argv[0] == "textgen" for argv in argvs), "a runnable block holds textgen commands only"
    if needs_corpora:
        for argv in argvs:
            for flag, value in zip(argv, argv[1:]):
                if flag == "--corpus" and not Path(value).exists():
                    corpora_dir(value)  # skips (or fails under TEXTGEN_REQUIRE_CORPORA) when it is missing
    monkeypatch.chdir(tmp_path)
    # a block not marked corpora must run without them
    changes = {"TEXTGEN_CACHE": str(tmp_path / "cache"), **({} if needs_corpora else {"TEXTGEN_DATA": None})}
    with environment(changes):
        for argv in argvs:
            status = cli.main(argv[1:])
            err = capsys.readouterr().err
            assert status == 0, f"{shlex.join(argv)} exited {status}:\n{err[-2000:]}"


@contextlib.contextmanager
def environment(changes: dict[str, str | None]):
    """Environment variables set (None: removed) for the block, then put back. Not monkeypatch: a
    datasets.map with num_proc replaces os.environ with a copy, and monkeypatch would put the old
    values back into the object it replaced."""
    saved = {name: os.environ.get(name) for name in changes}
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_there_are_runnable_blocks_and_each_is_fenced_as_sh():
    assert len(RUNNABLE) >= 8
    for page, line, words, _ in blocks():
        if "runnable" in words:
            assert words[0] == "sh" and words[1] == "runnable" and set(words[2:]) <= {"corpora"}, \
                f"{page.name}:{line}: write ```sh runnable (or ```sh runnable corpora)"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file():
    for page in PAGES:
        text = BLOCK.sub("", page.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_a_bare_example_name_reads_the_shipped_example_unless_a_file_of_that_name_is_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = ROOT / "textgen" / "examples" / "my_labels.csv"
    assert local_or_example("--corpus", "my_labels.csv").resolve() == shipped
    assert local_or_example("--corpus", "data/my_labels.csv") == Path("data/my_labels.csv")  # a path stays a path
    assert local_or_example("--corpus", "yours.csv") == Path("yours.csv")
    (tmp_path / "my_labels.csv").write_text("text,label\nmine,pos\n")
    assert local_or_example("--corpus", "my_labels.csv") == Path("my_labels.csv")
