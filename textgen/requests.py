"""One request type per job: what a caller asks of textgen, whichever way it comes in.

The command line builds its flags from these fields (`cli/grammar.py`), the Python API from keyword
arguments and the server from JSON fields; each request is checked once, when it is built, by the
same `check_fields` as the configs, so one bad value gets one message whichever way it came. A
request names models and files; the recipe that runs it (`textgen.recipes`) opens them. This module
imports no torch, so that `--help` and validation stay instant.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from textgen.config import (FEATURES, LONG_TEXT, SEED_MAX, WINDOW_MAX, BATCH_MAX, ClassifierConfig, DataConfig,
                            FinetuneConfig, ModelConfig, SampleConfig, TrainConfig, check_fields, check_value,
                            option)
from textgen.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
ADAPT_LR, ADAPT_DECAY = 2e-4, 1e-4  # chosen on gutenberg's validation books (docs/own-text.md)
FEATURES_TO_FIND = ("quote", "paren", "line-position", "line-start", "label")
MEMORY_TASKS = ("adding", "recall", "reber")
MEMORY_CELLS = ("rnn", "gru", "lstm", "article-lstm", "article-gru")
MEMORY_INITS = ("chrono", "chrono-forget", "forget-1")
# the memory benchmark's settings a user may type (MemoryConfig's fields of the same names)
MEMORY_SETTINGS = ("tasks", "cells", "lags", "budget", "check_every", "hidden_size", "lr", "init", "seeds", "threads")


def path_option(default: Any, help: str, **kwargs: Any) -> Any:
    """A field naming a file or folder (or a bundled name): checked for text no file system takes."""
    return option(default, help, path=True, **kwargs)


def model_option(default: str, what: str = "") -> Any:
    return path_option(default, f"{what}run folder (its best.pt), .pt checkpoint or bundled model name "
                                f"(see textgen models)")


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


def check_encoding_name(encoding: str) -> None:
    """Refuse text that cannot name an encoding (the codec itself is looked up when a file is read)."""
    if not (encoding.isascii() and encoding.isprintable()):
        raise ConfigError(f"--encoding {encoding!r} is not an encoding name; give one such as utf-8 or latin-1")


def check_request(request: Any) -> None:
    """`check_fields`, and every path field's text checked as a path."""
    check_fields(request)
    for spec in dataclasses.fields(request):
        value = getattr(request, spec.name)
        if spec.metadata.get("path") and value:
            for path in value if isinstance(value, tuple) else (value,):
                check_path_text(spec.metadata.get("flag") or "--" + spec.name.replace("_", "-"), path)


def fields_of(request_class: type, values: dict[str, Any]) -> Any:
    """`request_class` built from those `values` that name its fields and are not None (unset)."""
    names = {spec.name for spec in dataclasses.fields(request_class)}
    return request_class(**{name: value for name, value in values.items() if name in names and value is not None})


@dataclass
class ModelsRequest:
    """List the bundled models.

    The models that ship with textgen, usable by name as --model NAME; each has a model card beside
    its weights."""


@dataclass
class CorpusFields:
    """The corpus a job reads, and how (a labelled corpus for classify --eval and inspect --find)."""

    corpus: str | None = path_option(None, "corpus: a name, Hub id or local path")
    split: str = option("validation", "split to read")
    data_dir: str | None = path_option(None, DataConfig.__dataclass_fields__["data_dir"].metadata["help"])
    text_column: str | None = option(None, DataConfig.__dataclass_fields__["text_column"].metadata["help"])
    label_column: str | None = option(None, DataConfig.__dataclass_fields__["label_column"].metadata["help"])
    encoding: str = option("utf-8", "text encoding of local files")

    def data_config(self) -> DataConfig:
        """The corpus these fields name."""
        return DataConfig(corpus=self.corpus, data_dir=self.data_dir, text_column=self.text_column,
                          label_column=self.label_column, encoding=self.encoding)

    def check_encoding(self) -> None:
        check_encoding_name(self.encoding)


@dataclass
class SampleRequest(SampleConfig):
    """Generate text from a language model.

    Streamed as it is written; --json gives one object per sample."""

    model: str = model_option("shakespeare")
    prompt: str = option("", "text to continue (default: none, start afresh)")
    prompt_file: str | None = path_option(None, "UTF-8 file whose text to continue")
    interactive: bool = option(False, "read a prompt, print its continuation, repeat until EOF or 'quit'")
    choices: int | None = option(None, "with --interactive: show the N likeliest next words with their "
                                       "probabilities; pick one by number, type your own text, or press Enter to "
                                       "let the model go on", low=1, high=20)
    check_copy: str | None = path_option(None, "report on each sample against CORPUS (default: the text the model "
                                                "trained on): the longest span found there, the share of characters "
                                                "in copied spans of 50 or more, the longest span the sample repeats "
                                                "itself, and its distinct 4-grams beside the training text's")
    data_dir: str | None = path_option(None, "local data folder for a named --check-copy corpus")
    adapt_on: str | None = path_option(None, "first adapt the model to this document (and the prompt) by reading it "
                                             "once as eval --adapt does: seconds for a few pages, no training run; "
                                             "the model file is never written")

    def __post_init__(self) -> None:
        check_request(self)
        super().__post_init__()
        if self.prompt and self.prompt_file is not None:
            raise ConfigError("--prompt and --prompt-file both give a prompt; choose one")
        if self.interactive and (self.prompt or self.prompt_file is not None):
            raise ConfigError("--interactive reads each prompt from the terminal; drop --prompt/--prompt-file")
        if self.choices and not self.interactive:
            raise ConfigError(f"--choices {self.choices} lists next words to pick from in a terminal; add --interactive")
        if self.choices and (self.num_samples > 1 or self.beams > 1):
            raise ConfigError("--choices builds one text with you; drop --num-samples and --beams")

    def sampling(self) -> SampleConfig:
        """The sampling settings alone."""
        return SampleConfig(**{spec.name: getattr(self, spec.name) for spec in dataclasses.fields(SampleConfig)})


@dataclass
class CompleteRequest:
    """List the likeliest completions of a text.

    Autocomplete: the N most likely continuations of PREFIX up to the end of its next word (or line),
    found by a beam search scored by total log-probability, with their probabilities."""

    prefix: str = option("", "the text typed so far", positional=True)
    model: str = model_option("english")
    top: int = option(5, "completions to list", low=1, high=100)
    until: str = option("word", "complete to the end of the next word or of the line", choices=("word", "line"))
    label: str | None = option(None, "steer a model trained with --condition by this label")
    device: str = option("auto", "where to run", choices=DEVICES)

    def __post_init__(self) -> None:
        check_request(self)
        if not self.prefix:
            raise ConfigError('the prefix to complete is empty; give the text typed so far, e.g. "The quick bro"')
        if self.label is not None and not self.label.strip():
            raise ConfigError("--label '' names no label; give one the model knows, or drop --label")


@dataclass
class ClassifyRequest(CorpusFields):
    """Label texts with a sentiment classifier.

    Label texts with a classifier from `textgen train --task classify`, or score it on a labelled
    corpus split with --eval. Texts longer than the classifier's --max-len tokens are read whole in
    max-len chunks carrying the state (--long-text whole), cut to their first or last max-len tokens
    (truncate, tail), or split into chunks whose probabilities are averaged (chunk)."""

    texts: tuple[str, ...] = option((), "texts to label (else --file, else standard input)", positional=True)
    model: str = model_option("sentiment", "classifier ")
    file: str | None = path_option(None, "one text per line, or a csv/jsonl/parquet file with --text-column")
    eval: bool = option(False, "score on --corpus --split: accuracy, macro-F1, confusion matrix")
    split: str = option("validation", "split to score with --eval")
    max_len: int | None = option(None, "tokens per text or chunk (default: the classifier's)", low=1, high=WINDOW_MAX)
    long_text: str | None = option(None, "texts over --max-len: read whole in chunks, keep the first or last max-len "
                                         "tokens, or average over chunks (default: the classifier's)",
                                   choices=LONG_TEXT)
    features: str | None = option(None, "what the label comes from: the recurrent encoder, the hashed word "
                                        "n-grams, or both (default: the classifier's)", choices=FEATURES)
    batch_size: int = option(64, "texts per forward pass", low=1, high=BATCH_MAX)
    precision: str = option("auto", "the encoder's compute precision (auto: bf16 where the CPU or GPU runs it "
                                    "natively, about twice as fast; else fp32)", choices=("auto", "fp32", "bf16"))
    device: str = option("auto", "where to run", choices=DEVICES)

    def __post_init__(self) -> None:
        check_request(self)
        self.check_encoding()
        if self.texts == ("-",) or self.file == "-":
            self.texts, self.file = (), None  # what classify reads when given no text: standard input
        if self.eval and not self.corpus:
            raise ConfigError("--eval needs --corpus NAME (and --split) with labels to score against")
        if self.texts and self.file:
            raise ConfigError("give texts as arguments or --file, not both")
        if "" in self.texts:
            raise ConfigError(f"text {self.texts.index('') + 1} is empty; give each text some characters to classify")


@dataclass
class EvalRequest(CorpusFields):
    """Score a checkpoint on a corpus split, a whole file or a text.

    Bits per character and perplexity of a language model on a corpus split, of one --text, or of a
    whole local file (bits per byte too); --adapt reads in order, adapting as it goes."""

    model: str = model_option("shakespeare")
    text: str | None = option(None, "score this text instead of a corpus split")
    split: str | None = option(None, "split to score (default: test; for one local file: the whole file as its "
                                     "bytes are, line ends included, with bits per byte)")
    batch_size: int = option(16, "streams scored at once", low=1, high=BATCH_MAX)
    seq_len: int = option(256, "tokens per forward call", low=1, high=WINDOW_MAX)
    device: str = option("auto", "where to run", choices=DEVICES)
    adapt: bool = option(False, "adapt as you read (dynamic evaluation): the text is read in order, 64 tokens at a "
                                "time, each scored and then learnt from by one step pulled back toward the trained "
                                "weights, its prediction mixed with the trained model's at shares learnt as it reads; "
                                "reports the gain over the model unchanged (the model file is never written)")
    adapt_lr: float = option(ADAPT_LR, "with --adapt: the size of each step (scaled by the gradients' running RMS)",
                             above=0.0, high=1.0)
    adapt_decay: float = option(ADAPT_DECAY, "with --adapt: the share of the way back to the trained weights "
                                             "taken each step", low=0.0, high=1.0)

    def __post_init__(self) -> None:
        check_request(self)
        self.check_encoding()
        if self.adapt and (self.batch_size != 16 or self.seq_len != 256):
            raise ConfigError("--adapt reads the text as one stream in order, 64 tokens at a time; drop --batch-size "
                              "and --seq-len")
        if self.text is not None and self.corpus:
            raise ConfigError("--text and --corpus both give what to score; choose one")
        if self.text is None and not self.corpus:
            raise ConfigError("textgen eval needs --corpus NAME (and --split), or --text TEXT, to score a checkpoint on")
        if self.text == "":
            raise ConfigError("the text to score is empty; give at least one character")


@dataclass
class InspectRequest(CorpusFields):
    """See what each unit of a model does along a text.

    Show chosen units (--layer, --gate, --unit) along a text: coloured by each unit's value after each
    token (numbers where colour cannot show), the numbers with --json, or a page with --html: every gate
    of a unit at each character with the cell's equations filled in, and many units along the text. --find
    FEATURE ranks every unit by its correlation with a feature of a corpus split and shows the best
    one. Layers and units count from 0."""

    model: str = model_option("shakespeare", "language model or classifier: ")
    text: str | None = option(None, "the text to inspect")
    file: str | None = path_option(None, "a text file to inspect (whole, as one text)")
    layer: int | None = option(None, "layer, 0 next to the embedding (default: the top layer; with --find, limits "
                                     "the search)", low=0, high=63)
    gate: str | None = option(None, "lstm: input, forget, candidate, cell, output, hidden; gru: reset, update, "
                                    "candidate, hidden; rnn: hidden (default: cell, else hidden; with --find, limits "
                                    "the search)")
    unit: tuple[int, ...] = option((), "unit to show, repeatable (default: the best found by --find, else the unit "
                                       "of --layer and --gate that varies most along the text, or for a classifier "
                                       "moves most with its prediction)", low=0, high=(1 << 14) - 1)
    find: str | None = option(None, "rank units by how they track a feature over --corpus: inside double quotes, "
                                    "inside parentheses, characters since the line break, first character of a "
                                    "line, or the label of a labelled corpus", choices=FEATURES_TO_FIND)
    split: str = option("validation", "split for --find")
    max_chars: int = option(200_000, "characters of the split that --find reads", low=1, high=100_000_000)
    top: int = option(10, "units --find lists", low=1, high=100_000)
    html: str | None = path_option(None, "write one self-contained page: pick layer, gate and unit; every gate of "
                                         "the unit at a character with the cell's equations in numbers; many units "
                                         "along the text, ranked by --find or a pattern",
                                   flag="--html")

    def __post_init__(self) -> None:
        check_request(self)
        self.check_encoding()
        if self.text is not None and self.file is not None:
            raise ConfigError("--text and --file both give the text to inspect; choose one")
        if self.corpus and not self.find:
            raise ConfigError("--corpus is where --find measures a feature; add --find FEATURE, or drop --corpus")
        if self.find and not self.corpus:
            raise ConfigError(f"--find {self.find} measures units over a corpus split; add --corpus NAME (and --split)")
        if self.text is None and self.file is None and not self.find:
            raise ConfigError("give the text to inspect with --text or --file (or --find FEATURE --corpus NAME)")


@dataclass
class MemoryRequest:
    """Measure the training sequences each recurrent cell needs to bridge a lag.

    Train small rnn, gru and lstm models on synthetic tasks whose answer lies T steps back (the adding
    problem, delayed recall, the embedded Reber grammar) until each solves its task on held-out
    sequences or spends its budget, and report the sequences each needed, median and range over
    seeds. The default profile trains up to 81 models (under 20 minutes on one core); --quick the
    short lags with one seed; --profile paper the literature's budgets (hours). A flag not given (a
    field left unset in Python) takes the profile's value."""

    profile: str = option("default", "lags, budget and seeds at once; the flags below override it",
                          choices=("quick", "default", "paper"))
    quick: bool = option(False, "the same as --profile quick: one seed and 12,800 sequences per model (about half "
                                "a minute of CPU)")
    tasks: tuple[str, ...] | None = option(None, "tasks to run (default: all three)", choices=MEMORY_TASKS)
    cells: tuple[str, ...] | None = option(None, "cells to compare: torch's, or the article's variants from "
                                                 "cells.py (default: rnn gru lstm)", choices=MEMORY_CELLS)
    lags: tuple[int, ...] | None = option(None, "lags to measure (default: 10 30 100; paper: 100 500 1000)",
                                          low=1, high=100_000)
    budget: int | None = option(None, "training sequences per model at most (default: 200000; quick: 12800; "
                                      "paper: 1000000)", low=1, high=10**9)
    check_every: int | None = option(None, "sequences between checks on the held-out set (default: 1600; paper: "
                                           "10000)", low=1, high=10**9)
    hidden_size: int | None = option(None, "units per model (default: 16)", flag="--hidden", low=1, high=4096)
    lr: float | None = option(None, "Adam learning rate (default: 0.01)", above=0.0)
    init: str | None = option(None, "gate biases at the start: chrono (forget bias log U(1, T), LSTM input bias its "
                                    "negative), chrono-forget (input bias 0), forget-1 as the language models "
                                    "(default: chrono)", choices=MEMORY_INITS)
    seeds: tuple[int, ...] | None = option(None, "one run per seed (default: 0 1 2; quick: 0)", low=0, high=SEED_MAX)
    threads: int | None = option(None, "torch threads (default: 1; these models are too small for more to help)",
                                 low=1, high=64)
    dry_run: bool = option(False, "print what would be trained and stop")
    plot: str | None = path_option(None, "also draw skill against lag, one line per cell (needs matplotlib: "
                                         "pip install 'textgen[plot]')")

    def __post_init__(self) -> None:
        check_request(self)
        if self.quick and self.profile not in ("default", "quick"):
            raise ConfigError(f"--quick is --profile quick; drop one of --quick and --profile {self.profile}")
        for name in ("tasks", "cells", "lags", "seeds"):
            given = getattr(self, name)
            if given == ():
                raise ConfigError(f"--{name} names nothing; give at least one or drop the flag")
            if given and len(set(given)) < len(given):  # three runs of seed 0 are one run, not a spread
                raise ConfigError(f"--{name} {' '.join(map(str, given))} repeats an item; give each once")

    def overrides(self) -> dict[str, Any]:
        """The benchmark settings given, by MemoryConfig field name: the profile's, then the typed ones."""
        return {name: getattr(self, name) for name in MEMORY_SETTINGS if getattr(self, name) is not None}


@dataclass
class PlotRequest:
    """Draw training curves of runs.

    Training and validation loss of one or more runs against step and against wall time, on one
    chart. Needs matplotlib: pip install 'textgen[plot]'."""

    runs: tuple[str, ...] = path_option((), "run folders (each with its metrics.jsonl)", positional=True)
    out: str = path_option("training.png", "where to write the chart")

    def __post_init__(self) -> None:
        check_request(self)
        if not self.runs:
            raise ConfigError("give at least one run folder to plot")


# the configs a training run is set with, in the order a setting's name is looked up
TRAIN_CONFIGS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "classifier": ClassifierConfig,
                 "finetune": FinetuneConfig}
# fields the data sets, never a caller
NEVER_TYPED = {"model": ("vocab_size", "label_names"),
               "classifier": ("label_names", "ngram_weight", "temperatures", "decisive_margin")}


@dataclass
class TrainRequest:
    """Train a language model or classifier.

    Train a language model (or, with --task classify, a classifier) on a corpus; writes a run folder.
    Any setting of the five configs by field name; what is not given comes from the preset, the
    resumed run or the pretrained model (`recipes.train.prepare`)."""

    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        known = {spec.name: config for config in reversed(TRAIN_CONFIGS.values())
                 for spec in dataclasses.fields(config)}  # reversed: the first config that has a name wins
        unknown = sorted(set(self.settings) - set(known))
        if unknown:
            raise ConfigError(f"train() has no setting {', '.join(unknown)}; see the fields of DataConfig, ModelConfig, "
                              f"TrainConfig, ClassifierConfig and FinetuneConfig")
        checked = {}
        for name, value in self.settings.items():
            if value is None:
                continue
            value = str(value) if isinstance(value, os.PathLike) else value
            checked[name] = check_value(known[name], name, value)
            if name in ("corpus", "out", "init_from", "data_dir") and isinstance(value, str):
                check_path_text("--" + name.replace("_", "-"), value)
            if name == "encoding":
                check_encoding_name(value)
        self.settings = checked

    def typed(self) -> dict[str, dict[str, Any]]:
        """Per config name, the settings given for it."""
        return {name: {spec.name: self.settings[spec.name] for spec in dataclasses.fields(config)
                       if spec.name in self.settings} for name, config in TRAIN_CONFIGS.items()}


@dataclass
class ServeRequest:
    """Serve models over HTTP to apps, editors and a playground page.

    Keep models loaded behind an OpenAI-compatible HTTP API (/v1/completions, streamed as server-sent
    events), textgen's own classify, complete and score endpoints, metrics, and a playground page at /."""

    model: tuple[str, ...] = path_option(("shakespeare", "english", "sentiment"), "a model to serve, repeatable: "
                                         "bundled name, run folder or .pt (default: shakespeare, english, sentiment)")
    host: str = option("127.0.0.1", "address to listen on (anything but loopback needs --api-key)")
    port: int = option(8000, "port to listen on (0: any free port)", low=0, high=65535)
    api_key: str | None = option(None, "require this Bearer token on every request")
    max_streams: int = option(64, "streams a model generates at once; more wait in the queue", low=1, high=4096)
    max_queue: int = option(256, "requests waiting for a stream slot; beyond it, 429 with Retry-After", low=0,
                            high=100_000)
    cors: tuple[str, ...] = option((), "allow browser pages from this origin, repeatable (default: none)")
    max_tokens: int = option(4096, "the most characters (tokens) one request may ask for", low=1, high=1_000_000)
    max_prompt: int = option(100_000, "the longest prompt in characters", low=1, high=10_000_000)
    max_n: int = option(16, "the most samples one request may ask for", low=1, high=1000)
    # an event (its JSON, its socket write) per step would cost as much as the step itself
    stream_interval: float = option(0.04, "seconds between a stream's events, each carrying the text since the "
                                    "last: longer costs less per character", low=0.0, high=1.0)
    device: str = option("auto", "where to run", choices=DEVICES)

    def __post_init__(self) -> None:
        check_request(self)
        if not self.model:
            raise ConfigError("--model names no model to serve; give at least one")


# the request of each job, by its command's name; a request's docstring gives the command's help
# (its first line) and description (the rest)
JOBS: dict[str, type] = {"train": TrainRequest, "sample": SampleRequest, "complete": CompleteRequest,
                         "classify": ClassifyRequest, "eval": EvalRequest, "models": ModelsRequest,
                         "memory": MemoryRequest, "inspect": InspectRequest, "plot": PlotRequest, "serve": ServeRequest}
