"""The command line's grammar, generated from the request types: one flag (or argument) per field, its
help and choices from the field, every default left None so a request sees only what was typed. The
values are checked when the request is built (`textgen.requests`), never here."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from textgen import __version__
from textgen.config import PRESETS, flag_of, field_kind
from textgen.errors import one_line
from textgen.requests import JOBS as COMMANDS, NEVER_TYPED, TRAIN_CONFIGS, TrainRequest

PRINTS_JSON = {"sample", "complete", "classify", "eval", "memory", "inspect"}
LOGS_EACH_MODEL = {"memory"}  # many models trained: a log line each only when asked (-v)
_PARSE = {"int": int, "float": float, "str": str}
# a shell passes --stop "\n\n" as backslashes and n's: typed stop texts mean what they show
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_TYPED = {"stop": lambda text: re.sub(r"\\([ntr\\])", lambda found: _ESCAPES[found.group(1)], text)}
# tuple fields given as several words after one flag, not by repeating it
_WORDS = {"tasks", "cells", "lags", "seeds"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser (and its subcommands'), its usage error kept to one line."""

    commands: dict[str, argparse.ArgumentParser] = {}  # textgen's own: each command's parser, by name

    def error(self, message: str):
        super().error(one_line(message))

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:  # said by the command's own parser, so that its usage is the one shown
            self.commands.get(parsed.command, self).error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed


def add_fields(parser: argparse.ArgumentParser, owner: type, exclude: tuple[str, ...] = (),
               from_preset: frozenset[str] = frozenset(), title: str | None = None) -> None:
    """One argument per field of dataclass `owner`, typed as the field is, with default None."""
    group = parser.add_argument_group(title or owner.__doc__.strip().splitlines()[0].rstrip("."))
    for spec in dataclasses.fields(owner):
        if spec.name in exclude:
            continue
        meta, (base, _, many) = spec.metadata, field_kind(spec)
        default = "from --preset" if spec.name in from_preset else spec.default
        shown = "" if default in (None, (), False, "") else f" (default: {default})"
        common = dict(help=meta["help"] + shown, default=None)
        if meta.get("positional"):
            group.add_argument(spec.name, metavar=spec.name.upper(), nargs="*" if many else "?", type=_PARSE[base],
                               help=meta["help"])
        elif base == "bool":
            action = argparse.BooleanOptionalAction if owner in TRAIN_CONFIGS.values() else "store_true"
            group.add_argument(flag_of(owner, spec.name), dest=spec.name, action=action, **common)
        elif spec.name == "check_copy":  # a flag alone: the model's own training text
            group.add_argument("--check-copy", nargs="?", const="", metavar="CORPUS", **common)
        else:
            nargs = {"nargs": "+"} if spec.name in _WORDS else {"action": "append"} if many else {}
            group.add_argument(flag_of(owner, spec.name), dest=spec.name, type=_TYPED.get(spec.name, _PARSE[base]),
                               choices=meta.get("choices"), metavar=None if meta.get("choices") else spec.name.upper(),
                               **nargs, **common)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    parser = ArgumentParser(prog="textgen", description="Train recurrent language models on your text, sample from "
                                                        "them, and classify sentiment with their encoders.")
    parser.add_argument("--version", action="version", version=f"textgen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = commands.choices
    for name, request_type in COMMANDS.items():
        help_text, _, description = request_type.__doc__.partition("\n\n")
        sub = commands.add_parser(name, parents=[common], help=help_text[0].lower() + help_text[1:].rstrip("."),
                                  description=" ".join(description.split()) or help_text)
        if request_type is TrainRequest:
            presets = {group: frozenset(k for p in PRESETS.values() for k in p[group]) for group in ("model", "train")}
            for group, config in TRAIN_CONFIGS.items():
                add_fields(sub, config, NEVER_TYPED.get(group, ()), presets.get(group, frozenset()))
        else:
            add_fields(sub, request_type, title="options")
        if name in PRINTS_JSON:
            sub.add_argument("--json", action="store_true", help="print JSON instead of text")
        if name in LOGS_EACH_MODEL:
            sub.add_argument("-v", "--verbose", action="store_true", help="log each model's result as it ends")
    return parser


def request_of(args: argparse.Namespace) -> Any:
    """The request the parsed `args` make, checked."""
    request_type = COMMANDS[args.command]
    typed = {name: tuple(value) if isinstance(value, list) else value for name, value in vars(args).items()
             if value is not None and name not in ("command", "traceback", "json", "verbose")}
    if request_type is TrainRequest:
        return TrainRequest(typed)
    names = {spec.name for spec in dataclasses.fields(request_type)}
    return request_type(**{name: value for name, value in typed.items() if name in names})
