"""`textgen sample --interactive --choices N` in a real pseudo-terminal of a given size, driven by
keystrokes: words picked or typed are finished words, + keeps one open, and the screen fits the
terminal (issue 32)."""

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROW = re.compile(r"^\s*(\d+)\s+(.*?)\s+(\d+\.\d%|\de[-+]\d+)\s*$")  # a row of the choices table


class Terminal:
    """The command running in a pseudo-terminal `columns` wide; `type` sends a line, `read_until`
    returns what the screen showed since, without its styles."""

    def __init__(self, columns: int, *argv: str):
        self.leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        self.process = subprocess.Popen([sys.executable, "-m", "textgen", "sample", "--interactive", *argv],
                                        stdin=follower, stdout=follower, stderr=follower, env=env)
        os.close(follower)

    def read_until(self, pattern: str, timeout: float = 60.0) -> str:
        seen, deadline = b"", time.monotonic() + timeout
        while pattern.encode() not in seen:
            ready, _, _ = select.select([self.leader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"{pattern!r} never appeared; the screen showed {seen.decode(errors='replace')!r}")
            seen += os.read(self.leader, 4096)
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace")).replace("\r\n", "\n")

    def type(self, line: str) -> str:
        """Send `line` and Enter; the screen up to the next question."""
        os.write(self.leader, line.encode() + b"\n")
        return self.read_until("quit> ")  # the question's end, wherever the screen's width breaks it

    def close(self) -> int:
        os.write(self.leader, b"quit\n")
        try:
            return self.process.wait(timeout=30)
        finally:
            self.process.kill()
            os.close(self.leader)


@pytest.fixture
def terminal():
    opened = []

    def open_terminal(columns: int = 80, model: str = "english") -> Terminal:
        opened.append(Terminal(columns, "--model", model, "--choices", "3", "--length", "20", "--seed", "0"))
        opened[-1].opening = opened[-1].read_until("prompt> ")
        return opened[-1]

    yield open_terminal
    for each in opened:
        if each.process.poll() is None:
            each.process.kill()
            os.close(each.leader)


def choices(screen: str) -> list[str]:
    """The completion cells (the text's end, then the completion) of the last choices table shown."""
    table = screen[screen.rindex("completion"):]
    return [ROW.match(line).group(2) for line in table.splitlines()[1:] if ROW.match(line)]


def test_a_word_picked_or_typed_is_finished_so_the_next_choices_begin_a_new_word(terminal):
    screen = terminal()
    offered = choices(screen.type("Hello"))
    assert len(offered) == 3 and all(cell.startswith("Hello") and not cell[5].isalnum() for cell in offered)
    text = offered[0]  # e.g. "Hello, and": its word is finished too
    offered = choices(screen.type("1"))
    assert len(offered) == 3 and all(cell.startswith(text) and not cell[len(text)].isalnum() for cell in offered)
    shown = screen.type("lost")
    assert f"\n{text} lost\n" in shown  # a space before it: not "andlost"
    assert all(re.search(r"lost\W", cell) for cell in choices(shown))
    assert screen.close() == 0


def test_a_plus_keeps_a_word_open_or_joins_the_word_before(terminal):
    screen = terminal()
    offered = choices(screen.type("The lo+"))
    assert all(cell.startswith("The lo") for cell in offered)
    assert sum(cell[len("The lo")].isalpha() for cell in offered) >= 2  # lost, love, long ...
    shown = screen.type("+ng")
    assert "\nThe long\n" in shown
    offered = choices(screen.type("1+"))
    assert offered and all(cell.startswith("The long") for cell in offered)
    assert screen.close() == 0


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_the_screen_fits_its_terminal_and_cuts_no_choice(terminal, columns):
    screen = terminal(columns)
    typed = "It was a dark and stormy night, and the rain fell in torrents, except at occasional intervals"
    shown = screen.type(typed)
    answers = shown.index("quit> ")
    for line in shown[:answers].splitlines()[1:]:  # the echo of the typed line runs on; the screen's own lines fit
        assert len(line) <= columns, line
    offered = choices(shown)
    assert len(offered) == 3
    for cell in offered:  # the text's end from a word's start (after an ellipsis), then the completion
        assert cell.startswith("\u2026 ") and " " + cell[2:10] in " " + typed
    assert screen.close() == 0


def test_the_help_says_how_to_keep_a_word_open(terminal):
    shown = terminal(40, "shakespeare").opening  # the help, before the first prompt
    assert "\n3+ " in shown and "\n+text " in shown and "keeps its word" in shown
    assert all(len(line) <= 40 for line in shown.splitlines())
