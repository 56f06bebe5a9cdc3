"""Shared fixtures: the real corpora folder (from $TEXTGEN_DATA) and tiny corpora written to tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture
def corpora_dir() -> Callable[[str], Path]:
    """A function giving the folder of a real corpus under $TEXTGEN_DATA; it skips the test when that is missing."""
    root = os.environ.get("TEXTGEN_DATA")
    # CI sets TEXTGEN_REQUIRE_CORPORA so that a missing corpus fails there instead of skipping silently
    missing = pytest.fail if os.environ.get("TEXTGEN_REQUIRE_CORPORA") else pytest.skip

    def folder(name: str) -> Path:
        if not root:
            missing("TEXTGEN_DATA is unset; set it to the corpora folder (e.g. ../shared/corpora) to run this test")
        path = Path(root) / name
        if not path.is_dir():
            missing(f"{path} does not exist; TEXTGEN_DATA={root} lacks the {name} corpus")
        return path

    return folder


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """A function that writes text (UTF-8) or bytes to a file under tmp_path and returns its path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    return write


WORDS = "the quick brown fox jumps over a lazy dog while seven wizards box and hum".split()


@pytest.fixture
def corpus(tmp_path):
    """A small deterministic text file of a few thousand characters."""
    generator = torch.Generator().manual_seed(0)
    lines = []
    for _ in range(300):
        count = int(torch.randint(3, 9, (1,), generator=generator))
        picks = torch.randint(0, len(WORDS), (count,), generator=generator).tolist()
        lines.append(" ".join(WORDS[i] for i in picks) + ".\n")
    path = tmp_path / "tiny.txt"
    path.write_text("".join(lines))
    return path


@pytest.fixture
def press_ctrl_c_at(monkeypatch):
    """A function that makes the next `textgen train` in this test receive Ctrl-C after the given step."""
    import signal

    from textgen.terminal.render import RichReporter

    def press(at_step: int) -> None:
        original_step = RichReporter.step

        def step(self, step, fraction, metrics):
            original_step(self, step, fraction, metrics)
            if step == at_step:
                monkeypatch.undo()  # once only: the resumed run goes on
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(RichReporter, "step", step)

    return press
