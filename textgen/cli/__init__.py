"""The `textgen` command: a table from subcommand to function, and the one place that turns errors
into messages. stdout carries only what the user asked for; logs and progress go to stderr."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.logging import RichHandler

from textgen.cli.grammar import build_parser, check_arguments, corpus_config, one_line, read_text_file
from textgen.config import SampleConfig, typed_fields
from textgen.errors import ConfigError, TextgenError
from textgen.cli.render import (LabellingProgress, RichReporter, print_classifier_metrics, print_completions, print_memory,
                            print_models, print_predictions)

log = logging.getLogger("textgen")


class ExitStatus(IntEnum):
    """Process exit codes."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


def train_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen train`: a language model (or classifier) from a corpus, into a run folder."""
    from textgen.recipes.train import run

    setup, result = run(vars(args), lambda chars_per_token: RichReporter(console, chars_per_token))
    run_dir = setup.run_dir
    if result.stop_reason == "interrupted":
        task_flag = "" if setup.train.task == "lm" else " --task classify"
        log.warning("interrupted at step %d; saved %s; continue with: textgen train%s --resume --out %s",
                    result.step, run_dir / "last.pt", task_flag, run_dir)
        return ExitStatus.INTERRUPTED
    if setup.dist.is_main:
        show_next_steps(console, setup.train.task, run_dir, setup.data.corpus, bool(setup.finetune.init_from))
    return ExitStatus.SUCCESS


def show_next_steps(console: Console, task: str, run_dir: Path, corpus: str, finetuned: bool = False) -> None:
    """After training: a short sample of a language model, and the commands to try next."""
    from textgen.api import load

    run = str(run_dir)
    if task == "lm":
        sample = load(run_dir, device="cpu").generate("", length=200, temperature=0.8, seed=0)
        console.print(f"\na sample from {run}:\n", markup=False, highlight=False)
        console.print(sample, markup=False, highlight=False)
        # a model fine-tuned on a small text may recite it: the copy check says how much
        check = " --check-copy" if finetuned else ""
        commands = [f"textgen sample --model {run} --length 500 --temperature 0.8{check}",
                    f"textgen eval --model {run} --corpus {corpus} --split validation"]
    else:
        commands = [f'textgen classify --model {run} "a text to label"',
                    f"textgen classify --model {run} --eval --corpus {corpus} --split validation"]
    console.print("\nnext, try:\n" + "\n".join(f"  {command}" for command in commands), markup=False,
                  highlight=False)


def classify_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen classify`: label texts, or score the classifier on a labelled corpus split."""
    from textgen.api import load
    from textgen.recipes.evaluate import evaluate_classifier

    output = Console(soft_wrap=True)
    if args.eval:
        if not args.corpus:
            raise ConfigError("--eval needs --corpus NAME (and --split) with labels to score against")
        with LabellingProgress(console) as progress:
            metrics = evaluate_classifier(args.model, corpus_config(args), args.split, args.device, args.batch_size,
                                          max_len=args.max_len, long_text=args.long_text, features=args.features,
                                          precision=args.precision, progress=progress.counter)
        if args.json:
            print(json.dumps(metrics))
        else:
            print_classifier_metrics(output, metrics)
        return ExitStatus.SUCCESS
    classifier = load(args.model, args.device, "classifier", args.max_len, args.long_text, args.features,
                      args.precision)
    if args.texts and args.file:
        raise ConfigError("give texts as arguments or --file, not both")
    if args.file:  # read and classified group by group: answers stream out, memory stays bounded
        count, width = 0, max(map(len, [*classifier.label_names, "label"]))
        with LabellingProgress(console) as progress:
            for texts, probabilities in classifier.file_probabilities(args.file, args.text_column, args.encoding,
                                                                      args.batch_size, progress.counter()):
                # a borderless table per group, columns as wide in each; the first has the header
                print_predictions(output, classifier.predictions(texts, probabilities), args.json, count == 0, width)
                count += len(texts)
        if not count:
            raise ConfigError(f"--file {args.file} holds no texts to classify; give one text per line or row")
        log.info("labelled %s texts at %s texts/s", f"{count:,}", f"{progress.texts_per_second:,.1f}")
        return ExitStatus.SUCCESS
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("no texts to classify; pass them as arguments, with --file, or on standard input")
    print_predictions(output, classifier.classify(texts, args.batch_size), args.json)
    return ExitStatus.SUCCESS


def eval_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen eval`: bits per character and perplexity of a checkpoint on a corpus split."""
    from textgen.recipes.evaluate import evaluate_language_model

    if args.text is not None:
        return score_text_command(args)
    if not args.corpus:
        raise TextgenError("textgen eval needs --corpus NAME (and --split), or --text TEXT, to score a checkpoint on")
    result = evaluate_language_model(args.model, corpus_config(args), args.split, args.device, args.batch_size,
                                     args.seq_len)
    print(json.dumps(result) if args.json else
          f"{result['corpus']} {args.split}: {result['bits_per_char']:.4f} bits per character, "
          f"perplexity {result['perplexity']:.3f} per token ({result['tokens']:,} tokens)")
    return ExitStatus.SUCCESS


def score_text_command(args: argparse.Namespace) -> ExitStatus:
    """`textgen eval --text`: log-probability and bits per character of one text."""
    from textgen.recipes.evaluate import score_text

    if args.corpus:
        raise ConfigError("--text and --corpus both give what to score; choose one")
    result = score_text(args.model, args.text, args.device)
    print(json.dumps(result) if args.json else
          f"{result['bits_per_char']:.4f} bits per character, log-probability {result['log_prob']:.4f} "
          f"nats ({result['chars']:,} characters, {result['tokens']:,} tokens)")
    return ExitStatus.SUCCESS


def one_thread_unless_told() -> None:
    """One torch thread for a small model's step-by-step work unless OMP_NUM_THREADS says how many:
    beside other work, more threads wait on each other (docs/performance.md#threads)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def sample_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen sample`: text from a language model, streamed to stdout as it is generated."""
    from textgen.api import load, logged_copy_checks

    config = SampleConfig(**typed_fields(vars(args), SampleConfig))
    if args.prompt is not None and args.prompt_file is not None:
        raise ConfigError("--prompt and --prompt-file both give a prompt; choose one")
    if args.interactive and (args.prompt is not None or args.prompt_file is not None):
        raise ConfigError("--interactive reads each prompt from the terminal; drop --prompt/--prompt-file")
    if args.choices and not args.interactive:
        raise ConfigError(f"--choices {args.choices} lists next words to pick from in a terminal; add --interactive")
    if args.choices and (config.num_samples > 1 or config.beams > 1 or args.json):
        raise ConfigError("--choices builds one text with you; drop --num-samples, --beams and --json")
    prompt = read_text_file("--prompt-file", args.prompt_file) if args.prompt_file is not None else args.prompt or ""
    if config.greedy:
        log.info("--temperature %g is <= 0: greedy decoding, always the most likely next token",
                 config.temperature)
    if config.num_samples == 1:
        one_thread_unless_told()
    generator = load(args.model, config.device, "language_model")
    copies = generator.copy_index(args.check_copy, args.data_dir) if args.check_copy is not None else None

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def show(text: str, echo_prompt: bool) -> None:
        # one streamed sample need not be kept whole: memory stays flat at any --length
        keep_text = args.json or config.num_samples > 1 or copies is not None
        chunks = generator.chunks(text, config, keep_text=keep_text)
        if copies is not None:
            chunks = logged_copy_checks(chunks, copies)
        shown_prompt = text if echo_prompt else ""
        if args.json:
            for chunk in chunks:
                if chunk.sample:
                    record = dataclasses.asdict(chunk.sample)
                    if copies is not None:
                        report = copies.check(chunk.sample.text)
                        record.update(longest_copied=report.longest, copied_share=report.copied_share)
                    write(json.dumps(record) + "\n")
        elif config.num_samples == 1:
            write(shown_prompt)
            for chunk in chunks:  # the sample's last chunk ends its line, before any log line about it
                write(chunk.text + ("\n" if chunk.sample else ""))
        else:  # samples finish at different steps; each is shown whole when it does
            for chunk in chunks:
                if chunk.sample:
                    write(shown_prompt + chunk.sample.text + "\n---------------\n")

    if not args.interactive:
        show(prompt, echo_prompt=True)
        return ExitStatus.SUCCESS
    if args.choices:
        return pick_interactively(generator, config, args.choices, console)
    while True:
        console.print("prompt> ", end="", markup=False, highlight=False)
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            return ExitStatus.SUCCESS
        show(line.rstrip("\n"), echo_prompt=False)


def pick_interactively(generator, config: SampleConfig, choices: int, console: Console) -> ExitStatus:
    """`textgen sample --interactive --choices N`: one text written together. After a first prompt,
    each turn shows the N likeliest next words; a number adds that word, other text is added as
    typed, Enter lets the model write --length characters, and 'quit' (or EOF) ends."""
    output = Console(soft_wrap=True)
    label = config.label[0] if config.label else None
    console.print("prompt> ", end="", markup=False, highlight=False)
    line = sys.stdin.readline()
    text = line.rstrip("\n")
    while line and line.strip() != "quit":
        completions = generator.complete(text, choices, label=label)
        output.print(text[-300:], markup=False, highlight=False)
        print_completions(output, text, completions, as_json=False)
        console.print(f"pick 1-{len(completions)}, type text to add, Enter for the model to go on, or quit> ",
                      end="", markup=False, highlight=False)
        line = sys.stdin.readline()
        answer = line.rstrip("\n")
        if answer.strip().isdigit() and 1 <= int(answer) <= len(completions):
            text += completions[int(answer) - 1].text
        elif not answer.strip() and line:
            text += "".join(chunk.text for chunk in generator.chunks(text, config, keep_text=False))
        elif answer.strip() != "quit":
            text += answer
    return ExitStatus.SUCCESS


def complete_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen complete`: the likeliest completions of a prefix, as a table or JSON."""
    from textgen.api import load

    if not args.prefix:
        raise ConfigError('the prefix to complete is empty; give the text typed so far, e.g. "The quick bro"')
    generator = load(args.model, args.device, "language_model")
    completions = generator.complete(args.prefix, args.top, args.until, args.label)
    print_completions(Console(soft_wrap=True), args.prefix, completions, args.json)
    return ExitStatus.SUCCESS


def models_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen models`: the bundled models with their kind, size, data and validation figure."""
    from textgen.api import models

    print_models(models())
    return ExitStatus.SUCCESS


def memory_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen memory`: the sequences each cell needs to bridge each lag of synthetic tasks."""
    from textgen.lab.memory import PROFILES, MemoryConfig, check_plot_path, plot, run_benchmark, summarize, to_json

    if args.quick and args.profile not in ("default", "quick"):
        raise ConfigError(f"--quick is --profile quick; drop one of --quick and --profile {args.profile}")
    typed = {name: getattr(args, name) for name in ("tasks", "cells", "lags", "budget", "check_every", "hidden_size",
                                                    "lr", "init", "seeds", "threads") if getattr(args, name) is not None}
    config = MemoryConfig(**{**PROFILES["quick" if args.quick else args.profile], **typed})
    if args.plot:
        check_plot_path(args.plot)
    plan = (f"{config.models} models ({' '.join(config.tasks)}; {' '.join(config.cells)}; lags "
            f"{' '.join(map(str, config.lags))}; seeds {' '.join(map(str, config.seeds))}), each trained on at most "
            f"{config.budget:,} sequences until solved, checked every {config.check_every:,} on {config.eval_size:,} "
            f"held-out ones; {config.hidden_size} units, Adam lr {config.lr:g}, batch {config.batch_size}, "
            f"init {config.init}, {config.threads} thread{'s' if config.threads > 1 else ''}")
    if args.dry_run:
        print(json.dumps({"config": dataclasses.asdict(config), "models": config.models}) if args.json
              else f"would train {plan}")
        return ExitStatus.SUCCESS
    log.info("training %s", plan)

    def report(result) -> None:
        log.info("%s %s lag %d seed %d: beat the baseline after %s, solved after %s; %s %.4f (chance %.4f), skill "
                 "%.2f after %s sequences in %.1f s", result.task, result.cell, result.lag, result.seed,
                 f"{result.beat_at:,}" if result.beat_at else "-", f"{result.solved_at:,}" if result.solved_at else "-",
                 result.metric, result.score, result.chance, result.skill, f"{result.sequences:,}", result.seconds)

    results = run_benchmark(config, report)
    summaries = summarize(results)
    if args.json:  # the results first: a plot that cannot be written loses nothing
        print(json.dumps(to_json(config, results)))
    else:
        print_memory(config, summaries, results)
    if args.plot:
        plot(summaries, args.plot)
        log.info("wrote %s", args.plot)
    return ExitStatus.SUCCESS


def inspect_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen inspect`: chosen units' values along a text, and with --find the units that best
    track a feature of a corpus split; in the terminal, as JSON, or as one HTML page."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from textgen.data.corpus import load_corpus
    from textgen.lab.inspection import (EXCERPT_CHARS, check_unit, corpus_rows, find_units, found_unit,
                                    informative_unit, load_model, trace_text)
    from textgen.lab.views import html_page, page_title, render_prediction, render_unit, score_json, trace_json

    if args.text is not None and args.file is not None:
        raise ConfigError("--text and --file both give the text to inspect; choose one")
    if args.corpus and not args.find:
        raise ConfigError("--corpus is where --find measures a feature; add --find FEATURE, or drop --corpus")
    if args.find and not args.corpus:
        raise ConfigError(f"--find {args.find} measures units over a corpus split; add --corpus NAME (and --split)")
    if args.max_chars <= 0 or args.top <= 0:
        raise ConfigError("--max-chars and --top must be positive")
    if not args.find:  # one text, step by step (--find reads batches of a corpus)
        one_thread_unless_told()
    model, tokenizer, payload = load_model(args.model)
    units = [check_unit(model, args.layer, args.gate, unit) for unit in args.unit or [None]]
    ranking, rows, choice = [], [], None
    if args.find:
        corpus = load_corpus(corpus_config(args), task="classify" if args.find == "label" else "lm")
        rows, labels = corpus_rows(corpus, args.split, args.find, args.max_chars)
        log.info("ranking units by how they track %s over %s characters of %s %s", args.find,
                 f"{sum(map(len, rows)):,}", corpus.name, args.split)
        started = time.perf_counter()
        with Progress(TextColumn(f"--find {args.find}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TextColumn("{task.completed:,.0f} of {task.total:,.0f} tokens"), TimeElapsedColumn(),
                      TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
                      disable=not console.is_terminal) as progress:
            task = progress.add_task("find", total=sum(map(len, rows)))  # characters until the tokens are counted
            ranking = find_units(model, tokenizer, rows, args.find, labels, args.layer, args.gate,
                                 progress=lambda done, total: progress.update(task, completed=done, total=total))
        ranking = ranking[:args.top]
        log.info("measured in %.1f s", time.perf_counter() - started)
        if not args.unit:
            choice = found_unit(ranking[0], args.find, f"{corpus.name} {args.split}")
    if args.file is not None:
        text = read_text_file("--file", args.file, args.encoding)
    elif args.text is not None:
        text = args.text
    elif rows:  # the first labelled text, or the start of the split
        text = rows[0] if args.find == "label" else "".join(rows)[:EXCERPT_CHARS]
    else:
        raise ConfigError("give the text to inspect with --text or --file (or --find FEATURE --corpus NAME)")
    trace = trace_text(model, tokenizer, text)
    if not args.unit and choice is None:  # unit 0 usually shows little: open on the unit that shows most
        choice = informative_unit(trace, units[0].layer, units[0].gate)
    if choice is not None:
        units = [choice.unit]

    if args.json:
        result = {"model": payload["path"], **trace_json(trace, units)}
        if choice is not None:
            result["reason"] = choice.reason
        if args.find:
            result.update(feature=args.find, corpus=args.corpus, split=args.split,
                          ranking=[score_json(score) for score in ranking])
        print(json.dumps(result))
    output = Console(soft_wrap=True)
    if ranking and not args.json:
        table = Table(title=f"units that best track {args.find} ({args.corpus} {args.split}, "
                            f"{ranking[0].positions:,} positions)")
        for column in ("layer", "gate", "unit", "correlation"):
            table.add_column(column, justify="left" if column == "gate" else "right")
        for score in ranking:
            table.add_row(str(score.unit.layer), score.unit.gate, str(score.unit.unit), f"{score.correlation:+.3f}")
        output.print(table)
    if args.html:  # after the results: a page that cannot be written loses no --find ranking
        page = html_page(trace, page_title(args.model, text), units[0], ranking, args.find, args.layer, args.gate,
                         reason=choice.reason if choice else "")
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as error:
            raise TextgenError(f"could not write --html {args.html} ({error.strerror or error}); "
                               f"choose another path") from error
        log.info("wrote %s (%.1f MB): open it in a browser", args.html, len(page) / 1e6)
        if choice is not None:
            log.info("it opens on %s: %s", choice.unit, choice.reason)
    if args.json or args.html:
        return ExitStatus.SUCCESS
    if choice is not None:
        output.print(f"why this unit: {choice.reason}", markup=False, highlight=False)
    key = "red high, blue low" + (", underlined: unknown to the model" if trace.unknown.any() else "")
    for unit in units:
        output.print(f"{unit} ({key}):", markup=False, highlight=False)
        output.print(render_unit(trace, unit))
    if trace.probabilities is not None:
        final = int(trace.probabilities[-1].argmax())
        output.print(f"the classifier's probability of {trace.label_names[final]} had the text ended at each "
                     f"token ({trace.probabilities[0, final]:.2f} at the start, {trace.probabilities[-1, final]:.2f} "
                     f"at the end; deeper is surer):", markup=False, highlight=False)
        output.print(render_prediction(trace))
    return ExitStatus.SUCCESS


def plot_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen plot`: training and validation loss of runs against step and wall time, as a PNG."""
    from textgen.training.plots import plot_runs

    out = plot_runs(args.runs, args.out)
    log.info("wrote %s", out)
    return ExitStatus.SUCCESS


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], ExitStatus]] = {
    "train": train_command,
    "sample": sample_command,
    "complete": complete_command,
    "classify": classify_command,
    "eval": eval_command,
    "models": models_command,
    "memory": memory_command,
    "inspect": inspect_command,
    "plot": plot_command,
}


def main(argv: list[str] | None = None) -> int:
    """Run the textgen command line; returns the exit status instead of exiting."""
    # The Hub libraries log through their own handlers too; textgen reports their failures itself.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    console = Console(stderr=True, soft_wrap=True)
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
        return COMMANDS[args.command](args, console)
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
