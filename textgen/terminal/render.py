"""What the command line shows: training progress, prediction and metric tables, the models and
memory summaries, drawn with rich (black's output.py). Nothing here computes a result."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # imported where used, so that `textgen --help` loads no torch
    from textgen.lab.memory import MemoryConfig, Result, Summary, Verdict

log = logging.getLogger("textgen")


class RichReporter:
    """Draws a progress bar with the training loss (in bits per character for a language model),
    chars/s and ETA on stderr, logs each evaluation, and prints a summary table at the end."""

    def __init__(self, console: Console, chars_per_token: float | None):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        # None: a classifier, whose loss is per text, not per character
        self.console, self.per_char, self.chars_per_token = console, chars_per_token is not None, chars_per_token or 1.0
        loss = "{task.fields[loss]:.3f} bits/char" if self.per_char else "loss {task.fields[loss]:.3f}"
        self.progress = Progress(
            TextColumn("step {task.fields[step]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn(loss + "  {task.fields[chars_per_s]:,.0f} chars/s"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=False, disable=not console.is_terminal,
        )
        self.task_id = None

    def shown(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The evaluation figures a user reads: a language model's in bits per character only."""
        if self.per_char:
            return {"bits per char": metrics["bits_per_char"]} if "bits_per_char" in metrics else {}
        return {name: value for name, value in metrics.items() if isinstance(value, float)}

    def start(self, step, total_steps, time_budget):
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=1.0, step=step, loss=float("nan"), chars_per_s=0.0)

    def step(self, step, fraction_done, metrics):
        from textgen.metrics import bits_per_char

        loss = bits_per_char(metrics["loss"], self.chars_per_token) if self.per_char else metrics["loss"]
        self.progress.update(self.task_id, completed=fraction_done, step=step, loss=loss,
                             chars_per_s=metrics.get("tokens_per_s", 0.0) * self.chars_per_token)

    def evaluated(self, step, metrics):
        log.info("step %d validation: %s", step, ", ".join(f"{k} {_figure(k, v)}" for k, v in self.shown(metrics).items()))

    def finish(self, summary):
        self.progress.update(self.task_id, completed=1.0)
        self.progress.stop()
        table = Table(title="training summary", show_header=False)
        rows = {"run folder": str(summary["run_dir"]), "steps": str(summary["step"]),
                "stopped by": stopped_by(summary),
                "time": f"{summary['elapsed']:.1f} s",
                "chars/s": f"{summary['tokens_per_second'] * self.chars_per_token:,.0f}"}
        for when in ("final", "best"):
            for name, value in self.shown(summary["metrics" if when == "final" else "best_metrics"]).items():
                rows[f"{when} {name}"] = _figure(name, value)
        for name, value in rows.items():
            table.add_row(name, value)
        self.console.print(table)


def stopped_by(summary: dict) -> str:
    """Why a run stopped, in words; for early stopping, since which step validation was no better."""
    reason = summary["stop_reason"].replace("_", " ")
    best_step = summary["best_metrics"].get("step")
    if summary["stop_reason"] == "early_stopping" and best_step is not None:
        return f"{reason}: validation no better after step {best_step}"
    return reason


class LabellingProgress:
    """A progress bar of the texts labelled so far, with texts/s, on stderr (drawn on a terminal only),
    and the rate once done."""

    def __init__(self, console: Console):
        self.console, self.progress = console, None  # drawn once there is something to count
        self.done, self.started, self.task_id = 0.0, time.perf_counter(), None

    def __enter__(self) -> LabellingProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Take the bar off the screen (before a result is printed)."""
        if self.progress is not None:
            self.progress.stop()

    def counter(self, total: int | None = None) -> Callable[[float], None]:
        """What to call with each batch's count of texts labelled, out of `total` (None: unknown)."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("labelling"), BarColumn(), TextColumn("{task.completed:,.0f} texts"),
            TextColumn("{task.fields[rate]:,.0f} texts/s"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=self.console, transient=True, disable=not self.console.is_terminal)
        self.progress.start()
        self.task_id = self.progress.add_task("label", total=total, rate=0.0)
        self.done, self.started = 0.0, time.perf_counter()
        return self.advance

    def advance(self, count: float) -> None:
        self.done += count
        self.progress.update(self.task_id, advance=count, rate=self.texts_per_second)

    @property
    def texts_per_second(self) -> float:
        return self.done / max(time.perf_counter() - self.started, 1e-9)


class FindProgress:
    """A progress bar of the tokens `inspect --find` has read; nothing without --find or a terminal."""

    def __init__(self, console: Console, feature: str | None):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn(f"--find {feature}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TextColumn("{task.completed:,.0f} of {task.total:,.0f} tokens"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
                                 disable=not (feature and console.is_terminal))
        self.task = None

    def __enter__(self) -> FindProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("find", total=total)
        self.progress.update(self.task, completed=done, total=total)


def log_memory_result(result: Result) -> None:
    """One log line per trained model of the memory benchmark."""
    log.info("%s %s lag %d seed %d: beat the baseline after %s, solved after %s; %s %.4f (chance %.4f), skill "
             "%.2f after %s sequences in %.1f s", result.task, result.cell, result.lag, result.seed,
             f"{result.beat_at:,}" if result.beat_at else "-", f"{result.solved_at:,}" if result.solved_at else "-",
             result.metric, result.score, result.chance, result.skill, f"{result.sequences:,}", result.seconds)


def print_predictions(output: Console, predictions: list, as_json: bool, header: bool = True,
                      label_width: int = 0) -> None:
    """`api.Prediction`s as JSON lines on stdout, or as a table (borderless, with columns at least
    `label_width` wide, when printed group by group)."""
    if as_json:
        for prediction in predictions:
            print(json.dumps({"text": prediction.text, "label": prediction.label,
                              "probability": prediction.probability, "probabilities": prediction.probabilities}),
                  flush=True)
        return
    grouped = label_width > 0
    table = Table(show_header=header, **({"box": None} if grouped else {}))
    table.add_column("label", **({"min_width": label_width} if grouped else {}))
    table.add_column("probability", justify="right", **({"min_width": len("probability")} if grouped else {}))
    table.add_column("text", overflow="fold")
    for prediction in predictions:
        shown = prediction.text
        if len(shown) > SHOWN_CHARS:  # laying out a whole book in a table takes minutes
            shown = f"{shown[:SHOWN_CHARS]}… ({len(shown):,} characters; --json prints each text whole)"
        label, text = (Text(prediction.label), Text(shown)) if grouped else (prediction.label, shown)
        table.add_row(label, f"{prediction.probability:.3f}", text)
    output.print(table)


SHOWN_CHARS = 2_000  # of a text in the table of labels


def print_completions(output: Console, prefix: str, completions: list, as_json: bool, per_char: bool = False) -> None:
    """`completion.Completion`s of `prefix` as one JSON object, or a numbered table as wide as the
    screen: the end of the prefix's last line (from a word's start), then each completion in bold,
    with its probability and, with `per_char` (lines), its probability per character."""
    if as_json:
        print(json.dumps({"prefix": prefix, "completions": [
            {"text": c.text, "probability": c.probability, "per_char": c.per_char} for c in completions]}), flush=True)
        return
    shown = [re.sub(r"\r?\n|\r", "\u21b5", c.text) for c in completions]
    numbers = [f"{c.probability:.1%}" if c.probability >= 0.001 else f"{c.probability:.0e}" for c in completions]
    columns = {"#": len(str(len(completions))), "probability": len("probability")}
    if per_char:
        columns["per char"] = len("per char")
    # each column is padded by a space on either side; the prefix's end gets what the completions leave
    room = output.width - sum(columns.values()) - 2 * (len(columns) + 1) - max(map(len, shown), default=0)
    tail = _line_end(prefix, min(room, 50))
    table = Table(box=None)
    table.add_column("#", justify="right")
    table.add_column("completion", overflow="fold")
    table.add_column("probability", justify="right")
    if per_char:
        table.add_column("per char", justify="right")
    for number, (completion, text, probability) in enumerate(zip(completions, shown, numbers), 1):
        row = [str(number), Text(tail, style="dim") + Text(text, style="bold"), probability]
        table.add_row(*row, *([f"{completion.per_char:.1%}"] if per_char else []))
    output.print(table)


def _line_end(text: str, room: int) -> str:
    """The end of `text`'s last line in at most `room` characters, from the start of a word, after
    an ellipsis where it is cut; nothing where too little room is left for a word."""
    line = re.split(r"\r?\n|\r", text)[-1]
    if len(line) <= room:
        return line
    if room < 6:
        return ""
    cut = line[len(line) - room + 1:]
    return "\u2026" + (cut[cut.index(" "):] if " " in cut else cut)


def print_classifier_metrics(output: Console, metrics: dict[str, Any]) -> None:
    """Accuracy, macro-F1, calibration error and speed on a line, then the confusion matrix."""
    output.print(f"{metrics['corpus']} {metrics['split']}: accuracy {metrics['accuracy']:.4f}, macro-F1 "
                 f"{metrics['macro_f1']:.4f}, calibration error (ECE, 15 bins) {metrics['ece']:.4f} over "
                 f"{metrics['examples']:,} texts ({metrics['features']} features, {metrics['texts_per_second']:,.1f} "
                 f"texts/s)", markup=False, highlight=False)
    table = Table(title="confusion (rows: true, columns: predicted)")
    table.add_column("")
    for name in metrics["labels"]:
        table.add_column(name, justify="right")
    for name, row in zip(metrics["labels"], metrics["confusion"]):
        table.add_row(name, *map(str, row))
    output.print(table)


def print_models(models: dict[str, dict[str, Any]]) -> None:
    """The bundled models' table on stdout, each row on one line when piped."""
    table = Table(title="bundled models (use as --model NAME; cards in textgen/pretrained/NAME.md)")
    for column in ("name", "kind", "tokenizer", "parameters", "size", "trained on", "validation"):
        table.add_column(column, justify="right" if column in ("parameters", "size") else "left")
    for name, info in models.items():
        table.add_row(name, info["kind"], info["tokenizer"], f"{info['parameters'] / 1e6:.1f}M",
                      f"{info['bytes'] / 1e6:.1f} MB", Path(info["corpus"]).name, info["validation"])
    output = Console(soft_wrap=True)
    if not output.is_terminal:  # piped: no terminal width to fit, so keep every row on one line
        output = Console(soft_wrap=True, width=160)
    output.print(table)


def print_memory(config: MemoryConfig, summaries: list[Summary], results: list[Result]) -> None:
    """The sequences each cell needed at each lag to beat the baseline and to solve the task
    (median, range over the seeds that did), its final skill, the settings behind them, and each
    cell's verdict with the budget beside it."""
    from textgen.lab.memory import ADDING_TOLERANCE, BEATS_BASELINE, DECISIVE_BUDGET, PROFILES, skipped, verdicts

    def thousands(count: int) -> str:
        return f"{count / 1000:g}k"

    def needed(met: int, median: int | None, low: int | None, high: int | None) -> str:
        if median is None:
            return f"not within {thousands(config.budget)}" + (f" ({met}/{config_seeds} did)" if met else "")
        spread = f" ({thousands(low)}-{thousands(high)})" if config_seeds > 1 else ""
        return thousands(median) + spread + (f", {met}/{config_seeds} did" if met < config_seeds else "")

    config_seeds = len(config.seeds)
    seeds = f"median (range) over {config_seeds} seeds" if config_seeds > 1 else f"seed {config.seeds[0]}"
    table = Table(title=f"training sequences needed (k: thousands), {seeds}")
    for column in ("task", "cell", "T", "beats baseline after", "solved after", "final skill"):
        table.add_column(column, justify="left" if column in ("task", "cell") else "right")
    for summary in summaries:
        skill = f"{summary.skill:.2f}" + (f" ({summary.skill_min:.2f}-{summary.skill_max:.2f})" if config_seeds > 1 else "")
        table.add_row(summary.task, summary.cell, str(summary.lag),
                      needed(summary.beat, summary.beat_median, summary.beat_min, summary.beat_max),
                      needed(summary.solved, summary.solved_median, summary.solved_min, summary.solved_max), skill)
    output = Console(soft_wrap=True)
    if not output.is_terminal:  # piped: no terminal width to fit, so keep every row on one line
        output = Console(soft_wrap=True, width=160)
    output.print(table)
    budget = "the quick budget" if config.budget == PROFILES["quick"]["budget"] else f"a budget of {thousands(config.budget)}"

    def verdict(found: Verdict) -> str:
        parts = [] if found.solved_to is None else [f"solved to T={found.solved_to}"]
        if found.stopped_at is not None:
            parts.append(f"T={found.stopped_at} undecided within {budget}" if found.undecided
                         else f"not T={found.stopped_at} within {thousands(config.budget)}")
        return f"{found.cell} " + ", ".join(parts)

    cells: dict[str, list[str]] = {}
    for found in verdicts(config, summaries):
        cells.setdefault(found.task, []).append(verdict(found))
    small = (f": too few sequences to call a failure (the default profile gives {DECISIVE_BUDGET:,})"
             if config.budget < DECISIVE_BUDGET else "")
    for line in (f"beats baseline: skill (0 at chance, 1 perfect) at least {BEATS_BASELINE} on {config.eval_size:,} held-out "
                 f"sequences; solved: every one of them right (adding: off by under {ADDING_TOLERANCE}); checked "
                 f"every {config.check_every:,} training sequences",
                 f"settings: {config.hidden_size} units, Adam lr {config.lr:g}, batch {config.batch_size}, init "
                 f"{config.init}, budget {config.budget:,} sequences per model",
                 f"verdicts, solved by most seeds from the shortest T up, with a budget of {config.budget:,} sequences "
                 f"per model{small}:",
                 *(f"  {task}: " + "; ".join(phrases) for task, phrases in cells.items())):
        output.print(line, markup=False, highlight=False)
    not_run = skipped(config, results)
    if not_run:
        output.print("not trained, as no seed beat the baseline at a shorter lag: "
                     + ", ".join(f"{task} {cell} T={lag}" for task, cell, lag in not_run), markup=False, highlight=False)


def show_labelling(labelling, request, as_json: bool, progress: LabellingProgress) -> None:
    """A classify request's answer: its metrics, or its predictions group by group as they come (a
    borderless table per group of a --file, columns as wide in each)."""
    output, count = Console(soft_wrap=True), 0
    if labelling.metrics is not None:
        progress.stop()
        print(json.dumps(labelling.metrics)) if as_json else print_classifier_metrics(output, labelling.metrics)
        return
    width = max(map(len, [*labelling.label_names, "label"])) if request.file else 0
    for predictions in labelling.groups:
        print_predictions(output, predictions, as_json, count == 0, width)
        count += len(predictions)
    if request.file:
        log.info("labelled %s texts at %s texts/s", f"{count:,}", f"{progress.texts_per_second:,.1f}")


def print_evaluation(request, result: dict, as_json: bool) -> None:
    """Bits per character of one text, a whole file or a corpus split, on a line (or as JSON)."""
    if as_json:
        print(json.dumps(result))
        return
    where = result.get("corpus", "text") + (f" {result['split']}" if result.get("split") else "")
    per_byte = f", {result['bits_per_byte']:.4f} per byte of the file" if "bits_per_byte" in result else ""
    if request.adapt:
        print(f"{where}: {result['bits_per_char']:.4f} bits per character adapting as it read{per_byte}; "
              f"{result['bits_per_char_static']:.4f} unchanged (a gain of {result['gain']:.4f}; "
              f"{result['tokens']:,} tokens); the adapting model alone {result['bits_per_char_adapting']:.4f}, "
              f"the trained model's share at the end {result['trained_share']:.0%}")
    elif request.text is not None:
        print(f"{result['bits_per_char']:.4f} bits per character, log-probability {result['log_prob']:.4f} nats "
              f"({result['chars']:,} characters, {result['tokens']:,} tokens)")
    elif "perplexity" not in result:  # a whole file, read in order
        print(f"{where}: {result['bits_per_char']:.4f} bits per character{per_byte} ({result['tokens']:,} tokens)")
    else:
        print(f"{where}: {result['bits_per_char']:.4f} bits per character, perplexity "
              f"{result['perplexity']:.3f} per token ({result['tokens']:,} tokens)")


def show_benchmark(benchmark, as_json: bool) -> None:
    """The memory benchmark's plan (a dry run), or its results as a table or JSON."""
    from textgen.recipes.memory import as_dict, to_json

    if not benchmark.results and not benchmark.summaries:
        print(json.dumps(as_dict(benchmark)) if as_json else f"would train {benchmark.plan}")
    elif as_json:
        print(json.dumps(to_json(benchmark.config, benchmark.results)))
    else:
        print_memory(benchmark.config, benchmark.summaries, benchmark.results)


def _figure(name: str, value: float) -> str:
    """A figure as a user reads it: a count as a whole number (5 texts, not 5.0000), a rate to 4 places."""
    return f"{value:,.0f}" if name.endswith(("examples", "tokens", "texts")) else f"{value:.4f}"
