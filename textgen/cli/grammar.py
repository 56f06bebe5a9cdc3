"""The command line's grammar: every subcommand's flags, those of the config dataclasses built from
their fields, and the groups that several subcommands share (model, corpus, output) declared once."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
from pathlib import Path

from textgen import __version__
from textgen.config import (FEATURES, LONG_TEXT, NGRAM_BUCKETS_LIMIT, PRESETS, ClassifierConfig, DataConfig,
                            FinetuneConfig, ModelConfig, SampleConfig, TrainConfig, flag_of)
from textgen.errors import ConfigError


_LINE_BREAKS = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what str.splitlines splits at


def one_line(text: str) -> str:
    """`text` with its line breaks escaped (\\n), so that an error quoting what the user typed stays one line."""
    return _LINE_BREAKS.sub(lambda match: repr(match.group())[1:-1], text)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser (and its subcommands'), its usage error kept to one line."""

    def error(self, message: str):
        super().error(one_line(message))


def finite_float(text: str) -> float:
    """A float flag's value: a finite number (nan and inf would pass every range check unnoticed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give a value such as 0.5")
    return value


def whole_number(low: int, high: int):
    """An int flag's type: a whole number from `low` to `high`; the ceiling is far above any useful value
    and keeps a typo from asking for terabytes or running for days."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; give a whole number from {low:,} to {high:,}")
        return value
    return parse


SEED = whole_number(0, 2**32 - 1)
STEPS = whole_number(1, 10**9)
WIDTH = whole_number(1, 1 << 14)  # units or embedding width: textgen's largest preset has 1024
BATCH = whole_number(1, 1 << 16)
WINDOW = whole_number(1, 1_000_000)  # tokens per window, text or chunk
# int config fields by name: what each accepts (others: STEPS)
INT_RANGES = {"vocab_size": whole_number(1, 1 << 20), "num_proc": whole_number(1, 256), "split_seed": SEED,
              "num_layers": whole_number(1, 64), "hidden_size": WIDTH, "embed_size": WIDTH, "label_embed_size": WIDTH,
              "batch_size": BATCH,
              "seq_len": WINDOW, "warmup_steps": whole_number(0, 10**9), "eval_tokens": whole_number(1, 10**12),
              "seed": SEED, "length": whole_number(1, 10_000_000), "top_k": whole_number(1, 1 << 20),
              "repetition_window": WINDOW, "no_repeat_ngram": whole_number(0, 1000), "beams": whole_number(1, 64),
              "num_samples": whole_number(1, 1000), "head_hidden": WIDTH, "max_len": WINDOW,
              "lm_finetune_steps": whole_number(0, 10**9), "unfreeze_every": whole_number(0, 10**6),
              "patience": whole_number(1, 10**6), "ngram_buckets": whole_number(0, NGRAM_BUCKETS_LIMIT),
              "ngram_max": whole_number(1, 8), "char_ngrams": whole_number(0, 8)}
_TYPES = {"float": finite_float, "str": str}
HTML_FORMATS = ("html", "htm")


def image_formats() -> tuple[str, ...]:
    """The file extensions matplotlib can write (none when it is not installed: the command says so)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return ()
    return tuple(Figure().canvas.get_supported_filetypes())


def check_output(flag: str, path: str, inputs: list[Path], formats: tuple[str, ...]) -> None:
    """Refuse, before any work, an output file that would replace one of the command's `inputs`, that
    is a folder or in a folder that cannot be written, or whose extension is not among `formats`."""
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    if formats and suffix not in formats:
        raise ConfigError(f"{flag} {path}: cannot write a {'.' + suffix if suffix else 'file without an extension'}"
                          f" file; name it with one of .{', .'.join(formats)}")
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name such as {target / ('out.' + formats[0])}")
    folder = target.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the folder {folder} does not exist or cannot be written; create it or "
                          f"choose another path")
    for given in inputs:
        if target.exists() and given.exists() and os.path.samefile(target, given):
            raise ConfigError(f"{flag} {path} is also an input of this command ({given}); writing it would "
                              f"replace that file; choose another output path")


def read_text_file(flag: str, path: str, encoding: str = "utf-8") -> str:
    """The text of the file `flag` names; `-` is standard input."""
    try:
        if path == "-":  # as bytes, so that --encoding applies (a stand-in stdin may have text only)
            stdin = sys.stdin
            return stdin.buffer.read().decode(encoding) if hasattr(stdin, "buffer") else stdin.read()
        return Path(path).read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError, LookupError) as error:
        raise ConfigError(f"{flag} {path} cannot be read ({error}); give a text file in {encoding}") from error


# the arguments that name files or folders, by dest (a corpus or model may also be a name)
PATH_ARGUMENTS = ("model", "corpus", "data_dir", "file", "prompt_file", "html", "out", "init_from", "check_copy",
                  "runs", "plot")


def check_path_text(flag: str, path: str) -> None:
    """Refuse a path that no file system takes (a null byte, a name too long, text with no bytes)."""
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError:
        encoded = None
    if encoded is None or b"\0" in encoded:
        raise ConfigError(f"{flag} {path!r} is not a usable path (it holds a null byte or unencodable text); "
                          f"give a file or folder name")
    if len(encoded) > 4096 or any(len(part) > 255 for part in encoded.split(b"/")):
        raise ConfigError(f"{flag} {path[:60]}... is too long a path ({len(encoded):,} bytes; names stop at 255, "
                          f"paths at 4,096); give a shorter one")


def check_arguments(args: argparse.Namespace) -> None:
    """Checks across flags that argparse cannot make alone, run before any work: paths and encodings
    that no system takes, output files; and `-` for standard input where a text or file is expected."""
    for dest in PATH_ARGUMENTS:
        values = getattr(args, dest, None)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str):
                check_path_text("RUN" if dest == "runs" else "--" + dest.replace("_", "-"), value)
    encoding = getattr(args, "encoding", None)
    if encoding is not None and not (encoding.isascii() and encoding.isprintable()):
        raise ConfigError(f"--encoding {encoding!r} is not an encoding name; give one such as utf-8 or latin-1")
    if args.command == "classify" and (args.texts == ["-"] or args.file == "-"):
        args.texts, args.file = [], None  # what classify reads when given no text
    if args.command == "inspect" and args.html:
        model = Path(args.model)
        inputs = [model, model / "best.pt", model / "last.pt", *([Path(args.file)] if args.file else [])]
        check_output("--html", args.html, inputs, HTML_FORMATS)
    elif args.command == "plot":
        inputs = [Path(run) / name for run in args.runs for name in ("metrics.jsonl", "config.json")]
        check_output("--out", args.out, inputs + [Path(run) for run in args.runs], image_formats())
    elif args.command == "memory" and args.plot:
        check_output("--plot", args.plot, [], image_formats())


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
        kind = INT_RANGES.get(spec.name, STEPS) if type_name == "int" else _TYPES[type_name]
        group.add_argument(flag, dest=spec.name, type=kind, default=None,
                           choices=meta.get("choices"), help=help_text,
                           metavar=None if meta.get("choices") else spec.name.upper())


def add_model_argument(parser: argparse.ArgumentParser, default: str, what: str = "") -> None:
    """--model: the checkpoint a subcommand reads."""
    parser.add_argument("--model", default=default, help=f"{what}run folder (its best.pt), .pt checkpoint or bundled "
                                                         f"model name (default: {default}; see textgen models)")


def add_corpus_arguments(parser: argparse.ArgumentParser, purpose: str, split: str, split_help: str,
                         labels: bool = False, files: str = "local corpora") -> None:
    """--corpus, --split and the flags of `DataConfig` that say how to read it; `corpus_config` reads them."""
    group = parser.add_argument_group("corpus")
    group.add_argument("--corpus", help=f"{purpose}: a name, Hub id or local path")
    group.add_argument("--split", default=split, help=f"{split_help} (default: {split})")
    names = ("data_dir", "text_column", "label_column") if labels else ("data_dir", "text_column")
    for name in names:
        group.add_argument(flag_of(DataConfig, name), help=DataConfig.__dataclass_fields__[name].metadata["help"])
    group.add_argument("--encoding", default="utf-8", help=f"text encoding of {files}")


def corpus_config(args: argparse.Namespace) -> DataConfig:
    """The corpus that `add_corpus_arguments`' flags name."""
    return DataConfig(corpus=args.corpus, data_dir=args.data_dir, text_column=args.text_column,
                      label_column=getattr(args, "label_column", None), encoding=args.encoding)


def add_output_arguments(parser: argparse.ArgumentParser, json_help: str) -> None:
    """--device and --json: where a subcommand runs and how it prints."""
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--json", action="store_true", help=json_help)


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
    add_config_arguments(train, ModelConfig, exclude=("vocab_size", "label_names"), preset_fields=preset_model)
    add_config_arguments(train, TrainConfig, preset_fields=preset_train)
    add_config_arguments(train, ClassifierConfig,
                         exclude=("label_names", "ngram_weight", "temperatures", "decisive_margin"))
    add_config_arguments(train, FinetuneConfig)

    sample = commands.add_parser("sample", parents=[common], help="generate text from a language model",
                                 description="Generate text from a language model, streamed as it is "
                                             "written; --json gives one object per sample.")
    add_model_argument(sample, "shakespeare")
    sample.add_argument("--prompt", help="text to continue (default: none, start afresh)")
    sample.add_argument("--prompt-file", help="UTF-8 file whose text to continue")
    sample.add_argument("--interactive", action="store_true",
                        help="read a prompt, print its continuation, repeat until EOF or 'quit'")
    sample.add_argument("--choices", type=whole_number(1, 20), metavar="N",
                        help="with --interactive: show the N likeliest next words with their probabilities; "
                             "pick one by number, type your own text, or press Enter to let the model go on")
    sample.add_argument("--json", action="store_true",
                        help="print one JSON object per sample: text, mean_log_prob, stop_reason")
    sample.add_argument("--check-copy", nargs="?", const="", metavar="CORPUS",
                        help="report how much of each sample is copied verbatim from CORPUS (default: the text the "
                             "model trained on): the longest span found there, and the share of characters in "
                             "copied spans of 50 or more")
    sample.add_argument("--data-dir", help="local data folder for a named --check-copy corpus")
    add_config_arguments(sample, SampleConfig, exclude=("stop", "label"))
    sample.add_argument("--stop", action="append", metavar="TEXT",
                        help=SampleConfig.__dataclass_fields__["stop"].metadata["help"])
    sample.add_argument("--label", action="append", metavar="LABEL",
                        help=SampleConfig.__dataclass_fields__["label"].metadata["help"])
    complete = commands.add_parser(
        "complete", parents=[common], help="list the likeliest completions of a text",
        description="Autocomplete: the N most likely continuations of PREFIX up to the end of its next word "
                    "(or line), found by a beam search scored by total log-probability, with their probabilities.")
    complete.add_argument("prefix", metavar="PREFIX", help="the text typed so far")
    add_model_argument(complete, "english")
    complete.add_argument("--top", type=whole_number(1, 100), default=5, help="completions to list (default: 5)")
    complete.add_argument("--until", choices=("word", "line"), default="word",
                          help="complete to the end of the next word or of the line (default: word)")
    complete.add_argument("--label", help="steer a model trained with --condition by this label")
    add_output_arguments(complete, "print one JSON object: the prefix and its completions")

    classify = commands.add_parser(
        "classify", parents=[common], help="label texts with a sentiment classifier",
        description="Label texts with a classifier from `textgen train --task classify`, or score it on a "
                    "labelled corpus split with --eval. Texts longer than the classifier's --max-len tokens "
                    "(IMDb reviews, say) are read whole in max-len chunks carrying the state (--long-text "
                    "whole), cut to their first max-len tokens (truncate) or their last (tail), or split into "
                    "max-len chunks whose probabilities are averaged (chunk).")
    classify.add_argument("texts", nargs="*", help="texts to label (else --file, else standard input)")
    add_model_argument(classify, "sentiment", "classifier ")
    classify.add_argument("--file", help="one text per line, or a csv/jsonl/parquet file with --text-column")
    classify.add_argument("--eval", action="store_true", help="score on --corpus --split: accuracy, macro-F1, "
                                                             "confusion matrix")
    add_corpus_arguments(classify, "labelled corpus for --eval", "validation", "split to score with --eval",
                         labels=True, files="--file or local corpora")
    classify.add_argument("--max-len", type=WINDOW, help="tokens per text or chunk (default: the classifier's)")
    classify.add_argument("--long-text", choices=LONG_TEXT,
                          help="texts over --max-len: read whole in chunks, keep the first or last max-len tokens, or "
                               "average over chunks (default: the classifier's)")
    classify.add_argument("--features", choices=FEATURES,
                          help="what the label comes from: the recurrent encoder, the hashed word n-grams, or "
                               "both (default: the classifier's)")
    classify.add_argument("--batch-size", type=BATCH, default=64, help="texts per forward pass")
    classify.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                          help="the encoder's compute precision (auto: bf16 where the CPU or GPU runs it natively, "
                               "about twice as fast; else fp32)")
    add_output_arguments(classify, "one JSON object per text (or the metrics)")

    evaluate = commands.add_parser("eval", parents=[common], help="score a checkpoint on a corpus split",
                                   description="Bits per character and perplexity of a language "
                                               "model on a corpus split.")
    add_model_argument(evaluate, "shakespeare")
    evaluate.add_argument("--text", help="score this text instead of a corpus split")
    add_corpus_arguments(evaluate, "corpus to score", "test", "split to score")
    evaluate.add_argument("--batch-size", type=BATCH, default=16, help="streams scored at once")
    evaluate.add_argument("--seq-len", type=WINDOW, default=256, help="tokens per forward call")
    add_output_arguments(evaluate, "print one JSON object")
    commands.add_parser("models", parents=[common], help="list the bundled models",
                        description="The models that ship with textgen, usable by name as --model NAME; "
                                    "each has a model card beside its weights.")
    memory = commands.add_parser(
        "memory", parents=[common], help="measure the training sequences each recurrent cell needs to bridge a lag",
        description="Train small rnn, gru and lstm models on synthetic tasks whose answer lies T steps back "
                    "(the adding problem, delayed recall, the embedded Reber grammar) until each solves its task "
                    "on held-out sequences or spends its budget, and report the sequences each needed, median "
                    "and range over seeds. The default profile trains up to 81 models (under 20 minutes on one "
                    "core); --quick the short lags with one seed; --profile paper the literature's budgets (hours).")
    memory.add_argument("--profile", choices=("quick", "default", "paper"), default="default",
                        help="lags, budget and seeds at once; the flags below override it (default: default)")
    memory.add_argument("--quick", action="store_true", help="the same as --profile quick: one seed and 12,800 "
                                                             "sequences per model (about half a minute of CPU)")
    memory.add_argument("--tasks", nargs="+", choices=("adding", "recall", "reber"),
                        help="tasks to run (default: all three)")
    memory.add_argument("--cells", nargs="+", choices=("rnn", "gru", "lstm", "article-lstm", "article-gru"),
                        help="cells to compare: torch's, or the article's variants from cells.py (default: rnn gru lstm)")
    memory.add_argument("--lags", nargs="+", type=whole_number(1, 100_000), metavar="T",
                        help="lags to measure (default: 10 30 100; paper: 100 500 1000)")
    memory.add_argument("--budget", type=whole_number(1, 10**9), metavar="SEQUENCES",
                        help="training sequences per model at most (default: 200000; quick: 12800; paper: 1000000)")
    memory.add_argument("--check-every", type=whole_number(1, 10**9), metavar="SEQUENCES",
                        help="sequences between checks on the held-out set (default: 1600; paper: 10000)")
    memory.add_argument("--hidden", dest="hidden_size", type=whole_number(1, 4096), help="units per model (default: 16)")
    memory.add_argument("--lr", type=finite_float, help="Adam learning rate (default: 0.01)")
    memory.add_argument("--init", choices=("chrono", "chrono-forget", "forget-1"),
                        help="gate biases at the start: chrono (forget bias log U(1, T), LSTM input bias its "
                             "negative), chrono-forget (input bias 0), forget-1 as the language models (default: chrono)")
    memory.add_argument("--seeds", nargs="+", type=SEED, metavar="SEED",
                        help="one run per seed (default: 0 1 2; quick: 0)")
    memory.add_argument("--threads", type=whole_number(1, 64),
                        help="torch threads (default: 1; these models are too small for more to help)")
    memory.add_argument("--dry-run", action="store_true", help="print what would be trained and stop")
    memory.add_argument("--json", action="store_true", help="print one JSON object: every run and the summary")
    memory.add_argument("--plot", metavar="FILE.png", help="also draw skill against lag, one line per cell "
                                                         "(needs matplotlib: pip install 'textgen[plot]')")

    inspect = commands.add_parser(
        "inspect", parents=[common], help="see what each unit of a model does along a text",
        description="Show chosen units (--layer, --gate, --unit) along a text: the text coloured by each "
                    "unit's value after each token, the numbers with --json, or a page with --html where you "
                    "pick layer, gate and unit. --find FEATURE ranks every unit by its correlation with a "
                    "feature of a corpus split and shows the best one. Layers and units count from 0.")
    add_model_argument(inspect, "shakespeare", "language model or classifier: ")
    inspect.add_argument("--text", help="the text to inspect")
    inspect.add_argument("--file", help="a text file to inspect (whole, as one text)")
    inspect.add_argument("--layer", type=whole_number(0, 63), help="layer, 0 next to the embedding (default: the top layer; "
                                                   "with --find, limits the search)")
    inspect.add_argument("--gate", help="lstm: input, forget, candidate, cell, output, hidden; gru: reset, update, "
                                        "candidate, hidden; rnn: hidden (default: cell, else hidden; with --find, "
                                        "limits the search)")
    inspect.add_argument("--unit", type=whole_number(0, (1 << 14) - 1), action="append",
                         help="unit to show, repeatable (default: the best found by --find, else the unit of --layer "
                              "and --gate that varies most along the text, or for a classifier moves most "
                              "with its prediction)")
    inspect.add_argument("--find", choices=("quote", "paren", "line-position", "line-start", "label"),
                         help="rank units by how they track a feature over --corpus: inside double quotes, inside "
                              "parentheses, characters since the line break, first character of a line, or the "
                              "label of a labelled corpus (each text's label against the unit after its last token)")
    add_corpus_arguments(inspect, "corpus for --find", "validation", "split for --find", labels=True,
                         files="--file and local corpora")
    inspect.add_argument("--max-chars", type=whole_number(1, 100_000_000), default=200_000,
                         help="characters of the split that --find reads (default: 200000)")
    inspect.add_argument("--top", type=whole_number(1, 100_000), default=10, help="units --find lists (default: 10)")
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
