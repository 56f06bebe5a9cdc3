"""Files a command reads or writes beside its corpus: a text file (or standard input), and the guard
that refuses an output path before any work when it would replace an input or cannot be written."""

from __future__ import annotations

import importlib.resources
import logging
import os
import stat
import sys
from pathlib import Path

from textgen.errors import ConfigError

HTML_FORMATS = ("html", "htm")

log = logging.getLogger("textgen")


def local_or_example(flag: str, spec: str) -> Path:
    """The file or folder `spec` names; a bare name with no such file here that names an example shipped
    in textgen/examples (my_labels.csv, my_text.txt) is that example, so the README's commands run in
    any folder."""
    path = Path(spec).expanduser()
    example = importlib.resources.files("textgen") / "examples" / spec
    if path.exists() or path.name != spec or not example.is_file():
        return path
    if (flag, spec) not in _EXAMPLES_SAID:  # a command looks at its corpus more than once: say it once
        _EXAMPLES_SAID.add((flag, spec))
        log.info("%s %s: no such file here, so the example that ships with textgen (%s)", flag, spec, example)
    return Path(str(example))


_EXAMPLES_SAID: set[tuple[str, str]] = set()


def image_formats() -> tuple[str, ...]:
    """The file extensions matplotlib can write (none when it is not installed: the command says so)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return ()
    return tuple(Figure().canvas.get_supported_filetypes())


def check_output(flag: str, path: str, inputs: list[Path], formats: tuple[str, ...]) -> None:
    """Refuse, before any work, an output file that would replace one of the command's `inputs`, that
    is a folder, a device or a pipe, or in a folder that cannot be written, or whose extension is not
    among `formats`."""
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    if formats and suffix not in formats:
        raise ConfigError(f"{flag} {path}: cannot write a {'.' + suffix if suffix else 'file without an extension'}"
                          f" file; name it with one of .{', .'.join(formats)}")
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name such as {target / ('out.' + formats[0])}")
    check_not_device(flag, target, kind="write")
    folder = target.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the folder {folder} does not exist or cannot be written; create it or "
                          f"choose another path")
    check_not_input(flag, target, inputs)


def check_not_input(flag: str, path: Path, inputs: list[Path], folder: bool = False) -> None:
    """The one guard of every command that writes: refuse an output `path` that is, through any link,
    one of the command's `inputs` (models included), or, for an output `folder`, one that holds one."""
    target = _real(path)
    for given in inputs:
        real = _real(given)
        same = target == real or (target.exists() and real.exists() and os.path.samefile(target, real))
        if same or (folder and target in real.parents):
            raise ConfigError(f"{flag} {path} {'is' if same else 'holds'} an input of this command "
                              f"({given}); writing there would replace it; choose another {flag}")


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):  # a NUL in the name: no file has it
        return Path(os.path.abspath(path))


SPECIAL_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                 (stat.S_ISSOCK, "a socket"), (stat.S_ISFIFO, "a named pipe"))


def check_not_device(flag: str, path: str | Path, pipes: bool = False, kind: str = "read") -> None:
    """Refuse a device or socket (and, unless `pipes`, a named pipe) where a file is read or written:
    /dev/zero never ends, a pipe no one reads never opens. A pipe stays allowed where a text is read
    once (`--prompt-file <(command)`)."""
    try:
        mode = Path(path).stat().st_mode
    except (OSError, ValueError):
        return  # missing: the reader says so
    for test, what in SPECIAL_KINDS[:3 if pipes else 4]:
        if test(mode):
            raise ConfigError(f"{flag} {path} is {what}, not a file; give a regular file" +
                              (" to write" if kind == "write" else ""))


def read_text_file(flag: str, path: str, encoding: str = "utf-8", raw: bool = False) -> str:
    """The text of the file `flag` names; `-` is standard input. Line ends become newlines unless
    `raw`, which keeps every character as it is in the file (CRLF too)."""
    if path != "-":
        check_not_device(flag, path, pipes=True)
    try:
        if path == "-":  # as bytes, so that --encoding applies (a stand-in stdin may have text only)
            stdin = sys.stdin
            return stdin.buffer.read().decode(encoding) if hasattr(stdin, "buffer") else stdin.read()
        with open(path, encoding=encoding, newline="" if raw else None) as file:
            return file.read()
    except (OSError, UnicodeDecodeError, LookupError) as error:
        raise ConfigError(f"{flag} {path} cannot be read ({error}); give a text file in {encoding}") from error
