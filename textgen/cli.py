"""The `textgen` command: a table from subcommand to function, and the one place that turns errors
into messages. stdout carries only what the user asked for; logs and progress go to stderr."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.logging import RichHandler

from textgen import __version__
from textgen.config import (PRESETS, ClassifierConfig, DataConfig, FinetuneConfig, ModelConfig, SampleConfig,
                            TrainConfig, flag_of)
from textgen.errors import ConfigError, TextgenError

log = logging.getLogger("textgen")


class ExitStatus(IntEnum):
    """Process exit codes."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


_LINE_BREAKS = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what str.splitlines splits at


def one_line(text: str) -> str:
    """`text` with its line breaks escaped (\\n), so that an error quoting what the user typed stays one line."""
    return _LINE_BREAKS.sub(lambda match: repr(match.group())[1:-1], text)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser (and its subcommands'), its usage error kept to one line."""

    def error(self, message: str):
        super().error(one_line(message))


_TYPES = {"int": int, "float": float, "str": str}


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, exclude: tuple[str, ...] = (),
                         preset_fields: frozenset[str] = frozenset()) -> None:
    """One flag per dataclass field; defaults stay None so we can tell what the user typed."""
    group = parser.add_argument_group(config_class.__doc__.strip().rstrip("."))
    for spec in dataclasses.fields(config_class):
        if spec.name in exclude:
            continue
        meta = spec.metadata
        default = "from --preset" if spec.name in preset_fields else spec.default
        help_text = f"{meta['help']} (default: {default})"
        flag = flag_of(config_class, spec.name)
        if spec.type == "bool":
            group.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
            continue
        type_name = spec.type.replace(" | None", "")
        group.add_argument(flag, dest=spec.name, type=_TYPES[type_name], default=None,
                           choices=meta.get("choices"), help=help_text,
                           metavar=None if meta.get("choices") else spec.name.upper())


def typed_values(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of `config_class` that the user set on the command line."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def train_configs(args: argparse.Namespace) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """Configs from a preset overlaid with the flags the user typed; validated before data loads."""
    preset = PRESETS[args.preset or TrainConfig.preset]
    data = DataConfig(**typed_values(args, DataConfig))
    model = ModelConfig(**{**preset["model"], **typed_values(args, ModelConfig)})
    train = TrainConfig(**{**preset["train"], **typed_values(args, TrainConfig)})
    return data, model, train


class RichReporter:
    """Draws a progress bar with loss, bits per character, chars/s and ETA on stderr."""

    def __init__(self, console: Console, chars_per_token: float):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console, self.chars_per_token = console, chars_per_token
        self.progress = Progress(
            TextColumn("step {task.fields[step]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("loss {task.fields[loss]:.3f}  {task.fields[bpc]:.3f} bpc  "
                       "{task.fields[chars_per_s]:,.0f} chars/s"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=False, disable=not console.is_terminal,
        )
        self.task_id = None

    def start(self, step, total_steps, time_budget):
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=1.0, step=step, loss=float("nan"),
                                              bpc=float("nan"), chars_per_s=0.0)

    def step(self, step, fraction_done, metrics):
        self.progress.update(self.task_id, completed=fraction_done, step=step, loss=metrics["loss"],
                             bpc=metrics["loss"] / 0.6931471805599453 / self.chars_per_token,
                             chars_per_s=metrics.get("tokens_per_s", 0.0) * self.chars_per_token)

    def evaluated(self, step, metrics):
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        log.info("step %d validation: %s", step, shown)

    def finish(self, summary):
        from rich.table import Table

        self.progress.update(self.task_id, completed=1.0)
        self.progress.stop()
        table = Table(title="training summary", show_header=False)
        rows = {"run folder": str(summary["run_dir"]), "steps": str(summary["step"]),
                "stopped by": summary["stop_reason"].replace("_", " "),
                "time": f"{summary['elapsed']:.1f} s",
                "chars/s": f"{summary['tokens_per_second'] * self.chars_per_token:,.0f}"}
        for name, value in summary["metrics"].items():
            rows[f"final {name}"] = f"{value:.4f}" if isinstance(value, float) else str(value)
        for name, value in summary["best_metrics"].items():
            if isinstance(value, float):
                rows[f"best {name}"] = f"{value:.4f}"
        for name, value in rows.items():
            table.add_row(name, value)
        self.console.print(table)


def train_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen train`: a language model (or classifier) from a corpus, into a run folder."""
    from textgen.recipes import Setup, train_classifier, train_language_model
    from textgen.model import resolve_device
    from textgen.trainer import Distributed, resolve_precision

    data, model_config, train = train_configs(args)
    classifier_config = ClassifierConfig(**typed_values(args, ClassifierConfig))
    finetune = FinetuneConfig(**typed_values(args, FinetuneConfig))
    device = resolve_device(train.device)
    precision = resolve_precision(train.precision, device)
    dist = Distributed.from_environment(device.type)
    kind = model_config.cell if train.task == "lm" else "classifier"
    run_dir = Path(train.out or f"runs/{Path(data.corpus).name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(dist.gather(str(run_dir))[0])  # every rank writes into rank 0's folder name
    typed = {name: typed_values(args, config_class) for name, config_class in
             (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig), ("classifier", ClassifierConfig))}
    setup = Setup(data, model_config, train, classifier_config, finetune, typed, device, precision, dist, run_dir)

    def make_reporter(chars_per_token: float) -> RichReporter | None:
        return RichReporter(console, chars_per_token) if dist.is_main else None

    recipe = train_language_model if train.task == "lm" else train_classifier
    result = recipe(setup, make_reporter)
    if result.stop_reason == "interrupted":
        task_flag = "" if train.task == "lm" else " --task classify"
        log.warning("interrupted at step %d; saved %s; continue with: textgen train%s --resume --out %s",
                    result.step, run_dir / "last.pt", task_flag, run_dir)
        return ExitStatus.INTERRUPTED
    if dist.is_main:
        show_next_steps(console, train.task, run_dir, setup.data.corpus)
    return ExitStatus.SUCCESS


def show_next_steps(console: Console, task: str, run_dir: Path, corpus: str) -> None:
    """After training: a short sample of a language model, and the commands to try next."""
    from textgen.checkpoint import load_language_model
    from textgen.sampling import generate

    run = str(run_dir)
    if task == "lm":
        model, tokenizer, _ = load_language_model(run_dir)
        sample = generate(model, tokenizer, "", SampleConfig(length=200, temperature=0.8, seed=0))[0].text
        console.print(f"\na sample from {run}:\n", markup=False, highlight=False)
        console.print(sample, markup=False, highlight=False)
        commands = [f"textgen sample --model {run} --length 500 --temperature 0.8",
                    f"textgen eval --model {run} --corpus {corpus} --split test"]
    else:
        commands = [f'textgen classify --model {run} "a text to label"',
                    f"textgen classify --model {run} --eval --corpus {corpus} --split validation"]
    console.print("\nnext, try:\n" + "\n".join(f"  {command}" for command in commands), markup=False,
                  highlight=False)


def classify_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen classify`: label texts, or score the classifier on a labelled corpus split."""
    import numpy as np
    from rich.table import Table

    from textgen.checkpoint import load_classifier
    from textgen.classify import classification_metrics, match_labels, predict
    from textgen.model import resolve_device

    device = resolve_device(args.device)
    model, tokenizer, _ = load_classifier(args.model, device)
    if args.max_len or args.long_text:
        model.config = dataclasses.replace(model.config, max_len=args.max_len or model.config.max_len,
                                           long_text=args.long_text or model.config.long_text)
    names = list(model.config.label_names)
    output = Console(soft_wrap=True)
    if args.eval:
        if not args.corpus:
            raise ConfigError("--eval needs --corpus NAME (and --split) with labels to score against")
        from textgen.corpus import load_corpus

        data = DataConfig(corpus=args.corpus, data_dir=args.data_dir, text_column=args.text_column,
                          label_column=args.label_column, encoding=args.encoding)
        corpus = load_corpus(data, task="classify", evaluate=args.split)
        if args.split not in corpus.splits:
            raise ConfigError(f"--split {args.split} is not in {corpus.name}, or has no labels; it has: "
                              f"{', '.join(corpus.splits)}")
        to_classifier, note = match_labels(list(corpus.label_names), names)
        if note:
            log.info("%s", note)
        rows = corpus.splits[args.split]
        probabilities = predict(model, tokenizer, list(rows[corpus.text_column]), device, args.batch_size)
        metrics = {"corpus": corpus.name, "split": args.split,
                   **classification_metrics(to_classifier[np.asarray(rows[corpus.label_column])],
                                            probabilities.argmax(1), names)}
        if args.json:
            print(json.dumps(metrics))
            return ExitStatus.SUCCESS
        output.print(f"{corpus.name} {args.split}: accuracy {metrics['accuracy']:.4f}, macro-F1 "
                     f"{metrics['macro_f1']:.4f} over {metrics['examples']:,} texts", markup=False, highlight=False)
        table = Table(title="confusion (rows: true, columns: predicted)")
        table.add_column("")
        for name in names:
            table.add_column(name, justify="right")
        for name, row in zip(names, metrics["confusion"]):
            table.add_row(name, *map(str, row))
        output.print(table)
        return ExitStatus.SUCCESS

    if args.texts and args.file:
        raise ConfigError("give texts as arguments or --file, not both")
    if args.file:  # read and classified group by group: answers stream out, memory stays bounded
        from rich.text import Text

        from textgen.classify import predict_stream
        from textgen.corpus import read_texts

        count = 0
        groups = predict_stream(model, tokenizer, read_texts(args.file, args.text_column, args.encoding), device,
                                args.batch_size)
        for texts, probabilities in groups:
            labels = [names[int(row.argmax())] for row in probabilities]
            if args.json:
                for text, label, row in zip(texts, labels, probabilities):
                    print(json.dumps({"text": text, "label": label, "probability": float(row.max()),
                                      "probabilities": dict(zip(names, map(float, row)))}), flush=True)
            else:  # a borderless table per group, columns as wide in each; the first has the header
                table = Table(show_header=count == 0, box=None)
                table.add_column("label", min_width=max(map(len, [*names, "label"])))
                table.add_column("probability", justify="right", min_width=len("probability"))
                table.add_column("text", overflow="fold")
                for text, label, row in zip(texts, labels, probabilities):
                    table.add_row(Text(label), f"{row.max():.3f}", Text(text))
                output.print(table)
            count += len(texts)
        if not count:
            raise ConfigError(f"--file {args.file} holds no texts to classify; give one text per line or row")
        return ExitStatus.SUCCESS
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("no texts to classify; pass them as arguments, with --file, or on standard input")
    probabilities = predict(model, tokenizer, texts, device, args.batch_size)
    if args.json:
        for text, row in zip(texts, probabilities):
            print(json.dumps({"text": text, "label": names[int(row.argmax())], "probability": float(row.max()),
                              "probabilities": dict(zip(names, map(float, row)))}))
        return ExitStatus.SUCCESS
    table = Table(show_header=True)
    table.add_column("label")
    table.add_column("probability", justify="right")
    table.add_column("text", overflow="fold")
    for text, row in zip(texts, probabilities):
        table.add_row(names[int(row.argmax())], f"{row.max():.3f}", text)
    output.print(table)
    return ExitStatus.SUCCESS


def eval_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen eval`: bits per character and perplexity of a checkpoint on a corpus split."""
    import torch

    from textgen.batches import StreamBatches, token_array
    from textgen.checkpoint import load_language_model
    from textgen.corpus import count_chars, load_corpus
    from textgen.model import resolve_device
    from textgen.trainer import Distributed, LanguageModelTask

    if args.text is not None:
        return score_text_command(args)
    if not args.corpus:
        raise TextgenError("textgen eval needs --corpus NAME (and --split), or --text TEXT, to score a checkpoint on")
    device = resolve_device(args.device)
    model, tokenizer, _ = load_language_model(args.model, device)
    data = DataConfig(corpus=args.corpus, data_dir=args.data_dir, text_column=args.text_column,
                      encoding=args.encoding)
    corpus = load_corpus(data, task="lm")
    if args.split not in corpus.splits:
        raise TextgenError(f"--split {args.split} is not in {corpus.name}; it has: {', '.join(corpus.splits)}")
    tokens = token_array(corpus, args.split, tokenizer)
    seq_len = max(1, min(args.seq_len, len(tokens) - 1))
    batch = max(1, min(args.batch_size, (len(tokens) - 1) // seq_len))
    streams = StreamBatches(tokens, batch, seq_len)
    task = LanguageModelTask(streams, streams, count_chars(corpus, args.split) / len(tokens))
    with torch.inference_mode():
        metrics = task.evaluate(model, device, Distributed())
    result = {"corpus": corpus.name, "split": args.split, "loss": metrics["val_loss"],
              "bits_per_char": metrics["bits_per_char"], "perplexity": metrics["perplexity"],
              "tokens": int(metrics["val_tokens"])}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{corpus.name} {args.split}: {result['bits_per_char']:.4f} bits per character, "
              f"perplexity {result['perplexity']:.3f} per token, loss {result['loss']:.4f} nats per token "
              f"({result['tokens']:,} tokens)")
    return ExitStatus.SUCCESS


def score_text_command(args: argparse.Namespace) -> ExitStatus:
    """`textgen eval --text`: log-probability and bits per character of one text."""
    from textgen.checkpoint import load_language_model
    from textgen.sampling import score
    from textgen.model import resolve_device

    if args.corpus:
        raise ConfigError("--text and --corpus both give what to score; choose one")
    device = resolve_device(args.device)
    model, tokenizer, _ = load_language_model(args.model, device)
    result = score(model, tokenizer, args.text, device)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['bits_per_char']:.4f} bits per character, log-probability {result['log_prob']:.4f} "
              f"nats ({result['chars']:,} characters, {result['tokens']:,} tokens)")
    return ExitStatus.SUCCESS


def sample_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen sample`: text from a language model, streamed to stdout as it is generated."""
    from textgen.checkpoint import load_language_model
    from textgen.sampling import stream
    from textgen.model import resolve_device

    config = SampleConfig(**typed_values(args, SampleConfig))
    if args.prompt is not None and args.prompt_file is not None:
        raise ConfigError("--prompt and --prompt-file both give a prompt; choose one")
    if args.interactive and (args.prompt is not None or args.prompt_file is not None):
        raise ConfigError("--interactive reads each prompt from the terminal; drop --prompt/--prompt-file")
    prompt = args.prompt or ""
    if args.prompt_file is not None:
        try:
            prompt = Path(args.prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TextgenError(f"--prompt-file {args.prompt_file} cannot be read ({error}); "
                               f"give a UTF-8 text file") from error
    if config.greedy:
        log.info("--temperature %g is <= 0: greedy decoding, always the most likely next token",
                 config.temperature)
    device = resolve_device(config.device)
    model, tokenizer, _ = load_language_model(args.model, device)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def show(text: str, echo_prompt: bool) -> None:
        # one streamed sample need not be kept whole: memory stays flat at any --length
        chunks = stream(model, tokenizer, text, config, device, keep_text=args.json or config.num_samples > 1)
        shown_prompt = text if echo_prompt else ""
        if args.json:
            for chunk in chunks:
                if chunk.sample:
                    write(json.dumps(dataclasses.asdict(chunk.sample)) + "\n")
        elif config.num_samples == 1:
            write(shown_prompt)
            for chunk in chunks:
                write(chunk.text)
            write("\n")
        else:  # samples finish at different steps; each is shown whole when it does
            for chunk in chunks:
                if chunk.sample:
                    write(shown_prompt + chunk.sample.text + "\n---------------\n")

    if not args.interactive:
        show(prompt, echo_prompt=True)
        return ExitStatus.SUCCESS
    while True:
        console.print("prompt> ", end="", markup=False, highlight=False)
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            return ExitStatus.SUCCESS
        show(line.rstrip("\n"), echo_prompt=False)


def models_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen models`: the bundled models with their kind, size, data and validation figure."""
    from rich.table import Table

    from textgen.checkpoint import bundled_models, describe_checkpoint

    table = Table(title="bundled models (use as --model NAME; cards in textgen/pretrained/NAME.md)")
    for column in ("name", "kind", "tokenizer", "parameters", "size", "trained on", "validation"):
        table.add_column(column, justify="right" if column in ("parameters", "size") else "left")
    for name, path in bundled_models().items():
        info = describe_checkpoint(path)
        table.add_row(name, info["kind"], info["tokenizer"], f"{info['parameters'] / 1e6:.1f}M",
                      f"{path.stat().st_size / 1e6:.1f} MB", Path(info["corpus"]).name, info["validation"])
    output = Console(soft_wrap=True)
    if not output.is_terminal:  # piped: no terminal width to fit, so keep every row on one line
        output = Console(soft_wrap=True, width=160)
    output.print(table)
    return ExitStatus.SUCCESS

def memory_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen memory`: how long a lag each cell bridges on synthetic tasks, scored against chance."""
    from rich.table import Table

    from textgen.memory import (BRIDGED, QUICK, MemoryConfig, bridged_lags, check_plot_path, plot, run_benchmark,
                                summarize, to_json)

    typed = {name: getattr(args, name) for name in ("tasks", "cells", "lags", "steps", "hidden_size", "seeds")
             if getattr(args, name) is not None}
    config = MemoryConfig(**{**(QUICK if args.quick else {}), **typed})
    if args.plot:
        check_plot_path(args.plot)
    log.info("%d models of %d steps each: tasks %s, cells %s, lags %s, seeds %s", len(config.tasks) *
             len(config.cells) * len(config.lags) * len(config.seeds), config.steps, " ".join(config.tasks),
             " ".join(config.cells), " ".join(map(str, config.lags)), " ".join(map(str, config.seeds)))

    def report(result) -> None:
        log.info("%s %s lag %d seed %d: %s %.4f (chance %.4f), skill %.2f in %.1f s", result.task, result.cell,
                 result.lag, result.seed, result.metric, result.score, result.chance, result.skill, result.seconds)

    results = run_benchmark(config, report)
    summaries = summarize(results)
    if args.plot:
        plot(summaries, args.plot)
        log.info("wrote %s", args.plot)
    if args.json:
        print(json.dumps(to_json(config, results)))
        return ExitStatus.SUCCESS

    def shown(value: float, metric: str) -> str:
        return f"{value:.1%}" if metric == "accuracy" else f"{value:.4f}"

    bridged = bridged_lags(summaries)
    table = Table(title="held-out accuracy (or mean squared error) after training at each lag T"
                        + ("; in brackets the range over seeds" if len(config.seeds) > 1 else ""))
    for column in ("task", "cell", "chance", *(f"T={lag}" for lag in config.lags), "bridges"):
        table.add_column(column, justify="left" if column in ("task", "cell") else "right")
    for task in config.tasks:
        for cell in config.cells:
            rows = [s for s in summaries if s.task == task and s.cell == cell]
            scores = [shown(s.score, s.metric) + (f" ({shown(s.score_min, s.metric)}-{shown(s.score_max, s.metric)})"
                                                  if len(config.seeds) > 1 else "") for s in rows]
            longest = bridged[task][cell]
            reach = "none" if longest is None else f"to {longest}" + (" (all)" if longest == max(config.lags) else "")
            table.add_row(task, cell, shown(rows[0].chance, rows[0].metric), *scores, reach)
    output = Console(soft_wrap=True)
    output.print(table)
    output.print(f"bridges: the longest lag up to which skill (0 at chance, 1 perfect) stays at least "
                 f"{BRIDGED}", markup=False, highlight=False)
    return ExitStatus.SUCCESS


def inspect_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen inspect`: chosen units' values along a text, and with --find the units that best
    track a feature of a corpus split; in the terminal, as JSON, or as one HTML page."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from textgen.corpus import load_corpus
    from textgen.inspection import (EXCERPT_CHARS, check_unit, corpus_rows, find_units, found_unit,
                                    html_page, informative_unit, load_model, page_title, render_prediction,
                                    render_unit, score_json, trace_json, trace_text)

    if args.text is not None and args.file is not None:
        raise ConfigError("--text and --file both give the text to inspect; choose one")
    if args.corpus and not args.find:
        raise ConfigError("--corpus is where --find measures a feature; add --find FEATURE, or drop --corpus")
    if args.find and not args.corpus:
        raise ConfigError(f"--find {args.find} measures units over a corpus split; add --corpus NAME (and --split)")
    if args.max_chars <= 0 or args.top <= 0:
        raise ConfigError("--max-chars and --top must be positive")
    model, tokenizer, payload = load_model(args.model)
    units = [check_unit(model, args.layer, args.gate, unit) for unit in args.unit or [None]]
    ranking, rows, choice = [], [], None
    if args.find:
        data = DataConfig(corpus=args.corpus, data_dir=args.data_dir, text_column=args.text_column,
                          label_column=args.label_column, encoding=args.encoding)
        corpus = load_corpus(data, task="classify" if args.find == "label" else "lm")
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
        try:
            text = Path(args.file).read_text(encoding=args.encoding)
        except (OSError, UnicodeDecodeError) as error:
            raise TextgenError(f"--file {args.file} cannot be read ({error}); give a text file") from error
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

    if args.html:
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
    if args.json:
        result = {"model": payload["path"], **trace_json(trace, units)}
        if choice is not None:
            result["reason"] = choice.reason
        if args.find:
            result.update(feature=args.find, corpus=args.corpus, split=args.split,
                          ranking=[score_json(score) for score in ranking])
        print(json.dumps(result))
        return ExitStatus.SUCCESS
    output = Console(soft_wrap=True)
    if ranking:
        table = Table(title=f"units that best track {args.find} ({args.corpus} {args.split}, "
                            f"{ranking[0].positions:,} positions)")
        for column in ("layer", "gate", "unit", "correlation"):
            table.add_column(column, justify="left" if column == "gate" else "right")
        for score in ranking:
            table.add_row(str(score.unit.layer), score.unit.gate, str(score.unit.unit), f"{score.correlation:+.3f}")
        output.print(table)
    if args.html:
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
    from textgen.plots import plot_runs

    out = plot_runs(args.runs, args.out)
    log.info("wrote %s", out)
    return ExitStatus.SUCCESS


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], ExitStatus]] = {
    "train": train_command,
    "sample": sample_command,
    "classify": classify_command,
    "eval": eval_command,
    "models": models_command,
    "memory": memory_command,
    "inspect": inspect_command,
    "plot": plot_command,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    parser = ArgumentParser(
        prog="textgen", description="Train recurrent language models on your text, sample from them, "
                                    "and classify sentiment with their encoders.")
    parser.add_argument("--version", action="version", version=f"textgen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", parents=[common], help="train a language model or classifier",
                                description="Train a language model (or, with --task classify, a "
                                            "classifier) on a corpus; writes a run folder.")
    add_config_arguments(train, DataConfig)
    preset_model = frozenset(k for p in PRESETS.values() for k in p["model"])
    preset_train = frozenset(k for p in PRESETS.values() for k in p["train"])
    add_config_arguments(train, ModelConfig, exclude=("vocab_size",), preset_fields=preset_model)
    add_config_arguments(train, TrainConfig, preset_fields=preset_train)
    add_config_arguments(train, ClassifierConfig, exclude=("label_names",))
    add_config_arguments(train, FinetuneConfig)

    sample = commands.add_parser("sample", parents=[common], help="generate text from a language model",
                                 description="Generate text from a language model, streamed as it is "
                                             "written; --json gives one object per sample.")
    sample.add_argument("--model", default="shakespeare",
                        help="run folder (its best.pt), .pt checkpoint or bundled model name (default: "
                             "shakespeare; see textgen models)")
    sample.add_argument("--prompt", help="text to continue (default: none, start afresh)")
    sample.add_argument("--prompt-file", help="UTF-8 file whose text to continue")
    sample.add_argument("--interactive", action="store_true",
                        help="read a prompt, print its continuation, repeat until EOF or 'quit'")
    sample.add_argument("--json", action="store_true",
                        help="print one JSON object per sample: text, mean_log_prob, stop_reason")
    add_config_arguments(sample, SampleConfig, exclude=("stop",))
    sample.add_argument("--stop", action="append", metavar="TEXT",
                        help=SampleConfig.__dataclass_fields__["stop"].metadata["help"])
    classify = commands.add_parser(
        "classify", parents=[common], help="label texts with a sentiment classifier",
        description="Label texts with a classifier from `textgen train --task classify`, or score it on a "
                    "labelled corpus split with --eval. Texts longer than the classifier's --max-len tokens "
                    "(IMDb reviews, say) are read whole in max-len chunks carrying the state (--long-text "
                    "whole), cut to their first max-len tokens (truncate), or split into max-len chunks whose "
                    "probabilities are averaged (chunk).")
    classify.add_argument("texts", nargs="*", help="texts to label (else --file, else standard input)")
    classify.add_argument("--model", default="sentiment",
                          help="classifier run folder (its best.pt), .pt file or bundled model name (default: "
                               "sentiment; see textgen models)")
    classify.add_argument("--file", help="one text per line, or a csv/jsonl/parquet file with --text-column")
    classify.add_argument("--text-column", help="column holding the text (default: text)")
    classify.add_argument("--label-column", help="column holding the label, with --eval (default: label)")
    classify.add_argument("--encoding", default="utf-8", help="text encoding of --file or local corpora")
    classify.add_argument("--eval", action="store_true", help="score on --corpus --split: accuracy, macro-F1, "
                                                             "confusion matrix")
    classify.add_argument("--corpus", help="labelled corpus for --eval: a name, Hub id or local path")
    classify.add_argument("--split", default="validation", help="split to score with --eval (default: validation)")
    classify.add_argument("--data-dir", help="local data folder for named corpora")
    classify.add_argument("--max-len", type=int, help="tokens per text or chunk (default: the classifier's)")
    classify.add_argument("--long-text", choices=("whole", "truncate", "chunk"),
                          help="texts over --max-len: read whole in chunks, truncate, or average over chunks "
                               "(default: the classifier's)")
    classify.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    classify.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    classify.add_argument("--json", action="store_true", help="one JSON object per text (or the metrics)")

    evaluate = commands.add_parser("eval", parents=[common], help="score a checkpoint on a corpus split",
                                   description="Bits per character and perplexity of a language "
                                               "model on a corpus split.")
    evaluate.add_argument("--model", default="shakespeare",
                          help="run folder (its best.pt), .pt checkpoint or bundled model name (default: shakespeare)")
    evaluate.add_argument("--corpus", help="named corpus, Hub id, or local file/folder")
    evaluate.add_argument("--text", help="score this text instead of a corpus split")
    evaluate.add_argument("--split", default="test", help="split to score (default: test)")
    evaluate.add_argument("--data-dir", help="local data folder for named corpora")
    evaluate.add_argument("--text-column", help="column holding the text")
    evaluate.add_argument("--encoding", default="utf-8", help="text encoding of local files")
    evaluate.add_argument("--batch-size", type=int, default=16, help="streams scored at once")
    evaluate.add_argument("--seq-len", type=int, default=256, help="tokens per forward call")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    commands.add_parser("models", parents=[common], help="list the bundled models",
                        description="The models that ship with textgen, usable by name as --model NAME; "
                                    "each has a model card beside its weights.")
    memory = commands.add_parser(
        "memory", parents=[common], help="measure how long a lag each recurrent cell bridges",
        description="Train small rnn, gru and lstm models on synthetic tasks whose answer lies T steps back "
                    "(the adding problem, delayed recall, the embedded Reber grammar) and score each on "
                    "held-out sequences against chance. The default runs 45 models; --quick runs the short lags.")
    memory.add_argument("--tasks", nargs="+", choices=("adding", "recall", "reber"),
                        help="tasks to run (default: all three)")
    memory.add_argument("--cells", nargs="+", choices=("rnn", "gru", "lstm"), help="cells to compare (default: all)")
    memory.add_argument("--lags", nargs="+", type=int, metavar="T",
                        help="lags to measure (default: 10 30 100 300 1000; --quick: 10 30 100)")
    memory.add_argument("--steps", type=int, help="training steps per model, the budget (default: 300)")
    memory.add_argument("--hidden", dest="hidden_size", type=int, help="units per model (default: 16)")
    memory.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                        help="one run per seed; several give a spread (default: 0)")
    memory.add_argument("--quick", action="store_true", help="the short lags only (10 30 100), a tenth of the time")
    memory.add_argument("--json", action="store_true", help="print one JSON object: every run and the summary")
    memory.add_argument("--plot", metavar="FILE.png", help="also draw skill against lag, one line per cell "
                                                         "(needs matplotlib: pip install 'textgen[plot]')")

    inspect = commands.add_parser(
        "inspect", parents=[common], help="see what each unit of a model does along a text",
        description="Show chosen units (--layer, --gate, --unit) along a text: the text coloured by each "
                    "unit's value after each token, the numbers with --json, or a page with --html where you "
                    "pick layer, gate and unit. --find FEATURE ranks every unit by its correlation with a "
                    "feature of a corpus split and shows the best one. Layers and units count from 0.")
    inspect.add_argument("--model", default="shakespeare",
                         help="language model or classifier: run folder (its best.pt), .pt checkpoint or bundled "
                              "model name (default: shakespeare)")
    inspect.add_argument("--text", help="the text to inspect")
    inspect.add_argument("--file", help="a text file to inspect (whole, as one text)")
    inspect.add_argument("--layer", type=int, help="layer, 0 next to the embedding (default: the top layer; "
                                                   "with --find, limits the search)")
    inspect.add_argument("--gate", help="lstm: input, forget, candidate, cell, output, hidden; gru: reset, update, "
                                        "candidate, hidden; rnn: hidden (default: cell, else hidden; with --find, "
                                        "limits the search)")
    inspect.add_argument("--unit", type=int, action="append",
                         help="unit to show, repeatable (default: the best found by --find, else the unit of --layer "
                              "and --gate that varies most along the text, or for a classifier moves most "
                              "with its prediction)")
    inspect.add_argument("--find", choices=("quote", "paren", "line-position", "line-start", "label"),
                         help="rank units by how they track a feature over --corpus: inside double quotes, inside "
                              "parentheses, characters since the line break, first character of a line, or the "
                              "label of a labelled corpus (each text's label against the unit after its last token)")
    inspect.add_argument("--corpus", help="corpus for --find: a name, Hub id or local path")
    inspect.add_argument("--split", default="validation", help="split for --find (default: validation)")
    inspect.add_argument("--max-chars", type=int, default=200_000,
                         help="characters of the split that --find reads (default: 200000)")
    inspect.add_argument("--top", type=int, default=10, help="units --find lists (default: 10)")
    inspect.add_argument("--data-dir", help="local data folder for named corpora")
    inspect.add_argument("--text-column", help="column holding the text (default: the corpus's own)")
    inspect.add_argument("--label-column", help="column holding the label for --find label (default: label)")
    inspect.add_argument("--encoding", default="utf-8", help="text encoding of --file and local corpora")
    inspect.add_argument("--json", action="store_true",
                         help="print one JSON object: tokens, each unit's values, predictions, the ranking")
    inspect.add_argument("--html", metavar="OUT.html",
                         help="write one self-contained page where you pick layer, gate and unit")

    plot = commands.add_parser(
        "plot", parents=[common], help="draw training curves of runs",
        description="Training and validation loss (bits per character, or per token) of one or more runs "
                    "against step and against wall time, on one chart. Needs matplotlib: "
                    "pip install 'textgen[plot]'.")
    plot.add_argument("runs", nargs="+", metavar="RUN", help="run folders (each with its metrics.jsonl)")
    plot.add_argument("--out", default="training.png", metavar="FILE.png", help="where to write the chart "
                                                                               "(default: training.png)")
    return parser


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


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
