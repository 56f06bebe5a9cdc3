"""The `textgen` command: parse into a request, run its recipe, show the result; and the one place
that turns errors into messages. stdout carries only what the user asked for; logs and progress go
to stderr. Each command imports its recipe when it runs, so that `--help` loads no torch."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
from enum import IntEnum
from typing import Any, Callable

from rich.console import Console

from textgen.cli import grammar
from textgen.errors import TextgenError, one_line

log = logging.getLogger("textgen")


class ExitStatus(IntEnum):
    """Process exit codes."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


def train_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.train import run
    from textgen.terminal.interactive import show_training_end
    from textgen.terminal.render import RichReporter

    setup, result = run(request, functools.partial(RichReporter, console))  # told each stage's chars per token
    stopped = show_training_end(console, setup, result)
    return ExitStatus.INTERRUPTED if stopped else ExitStatus.SUCCESS


def sample_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.sample import run
    from textgen.terminal.interactive import pick_interactively, prompt_loop, show_samples

    if request.choices and args.json:
        raise TextgenError("--choices builds one text with you; drop --json")
    sampling = run(request)
    if request.choices:
        pick_interactively(sampling, request.choices, console)
    elif request.interactive:
        prompt_loop(sampling, console, args.json)
    else:
        show_samples(sampling, sampling.prompt, args.json)
    return ExitStatus.SUCCESS


def complete_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.complete import run
    from textgen.terminal.render import print_completions

    print_completions(Console(soft_wrap=True), request.prefix, run(request), args.json, request.until == "line")
    return ExitStatus.SUCCESS


def classify_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.classify import run
    from textgen.terminal.render import LabellingProgress, show_labelling

    with LabellingProgress(console) as progress:
        show_labelling(run(request, progress.counter), request, args.json, progress)
    return ExitStatus.SUCCESS


def eval_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.evaluate import run
    from textgen.terminal.render import print_evaluation

    print_evaluation(request, run(request), args.json)
    return ExitStatus.SUCCESS


def models_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.models import models
    from textgen.terminal.render import print_models

    print_models(models())
    return ExitStatus.SUCCESS


def memory_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.memory import draw, run
    from textgen.terminal.render import log_memory_result, show_benchmark

    benchmark = run(request, log_memory_result if args.verbose else None)
    show_benchmark(benchmark, args.json)  # the results first: a plot that cannot be written loses nothing
    if request.plot and not request.dry_run:
        draw(request, benchmark)
    return ExitStatus.SUCCESS


def inspect_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.inspect import run
    from textgen.terminal.inspection import show_inspection
    from textgen.terminal.render import FindProgress

    with FindProgress(console, request.find) as progress:
        inspection = run(request, progress.update)
    show_inspection(Console(soft_wrap=True), request, inspection, args.json)
    return ExitStatus.SUCCESS


def plot_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.recipes.plot import run

    log.info("wrote %s", run(request))
    return ExitStatus.SUCCESS


def serve_command(request, args: argparse.Namespace, console: Console) -> ExitStatus:
    from textgen.serve import serve

    serve(request)  # until Ctrl-C
    return ExitStatus.SUCCESS


# eval_command for eval, and so on: one function per command of the grammar
COMMANDS: dict[str, Callable[[Any, argparse.Namespace, Console], ExitStatus]] = {
    name: globals()[f"{name}_command"] for name in grammar.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    """Run the textgen command line; returns the exit status instead of exiting."""
    # The Hub libraries log through their own handlers too; textgen reports their failures itself.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    for stream in (sys.stdout, sys.stderr):  # a character the terminal's encoding lacks prints as \xe9, no traceback
        getattr(stream, "reconfigure", lambda **_: None)(errors="backslashreplace")
    console = Console(stderr=True, soft_wrap=True)
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)
    args = grammar.build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](grammar.request_of(args), args, console)
    except TextgenError as error:
        if args.traceback:
            raise
        console.print(f"textgen: error: {one_line(str(error))}", markup=False, highlight=False)
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        if args.traceback:
            raise
        console.print("textgen: interrupted", markup=False, highlight=False)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # the reader left (textgen sample | head): the Unix norm is to end quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush does not fail
        return ExitStatus.SUCCESS


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
