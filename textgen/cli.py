"""The `textgen` command: a table from subcommand to function, and the one place that turns errors
into messages. stdout carries only what the user asked for; logs and progress go to stderr."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.logging import RichHandler

from textgen import __version__
from textgen.config import (PRESETS, ClassifierConfig, DataConfig, FinetuneConfig, ModelConfig, SampleConfig,
                            TrainConfig, flag_of, to_dict)
from textgen.errors import ConfigError, TextgenError

log = logging.getLogger("textgen")


class ExitStatus(IntEnum):
    """Process exit codes."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


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


def validation_streams(tokens, train: TrainConfig, dist) -> Any:
    """Evaluation streams over a validation split, narrowed to fit a small one."""
    from textgen.batches import StreamBatches

    seq_len = max(1, min(train.seq_len, (len(tokens) - 1) // dist.world_size))
    batch_size = max(1, min(train.batch_size, (len(tokens) - 1) // (seq_len * dist.world_size)))
    return StreamBatches(tokens, batch_size, seq_len, dist.rank, dist.world_size)


def train_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen train`: a language model (or classifier) from a corpus, into a run folder."""
    import torch

    from textgen.batches import StreamBatches, token_array
    from textgen.checkpoint import load_checkpoint
    from textgen.config import from_dict
    from textgen.corpus import count_chars, load_corpus, split_texts
    from textgen.model import LanguageModel, count_parameters
    from textgen.tokenizer import build_tokenizer, tokenizer_from_data
    from textgen.trainer import (Distributed, LanguageModelTask, check_resumable, fit, resolve_device,
                                 resolve_precision)

    data, model_config, train = train_configs(args)
    classifier_config = ClassifierConfig(**typed_values(args, ClassifierConfig))
    finetune = FinetuneConfig(**typed_values(args, FinetuneConfig))
    device = resolve_device(train.device)
    precision = resolve_precision(train.precision, device)
    dist = Distributed.from_environment(device.type)
    kind = model_config.cell if train.task == "lm" else "classifier"
    run_dir = Path(train.out or f"runs/{Path(data.corpus).name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(dist.gather(str(run_dir))[0])  # every rank writes into rank 0's folder name
    if train.task == "classify":
        return train_classifier(args, console, Setup(data, model_config, train, classifier_config, finetune,
                                                     device, precision, dist, run_dir))
    tokenizer_data = None
    if train.resume:
        # The run's own configs, overlaid with what was typed now (a longer --max-steps, say);
        # a typed model flag that contradicts the checkpoint is refused by the trainer.
        saved = load_checkpoint(run_dir / "last.pt", kind="language_model")
        data = from_dict(DataConfig, {**saved["configs"]["data"], **typed_values(args, DataConfig)})
        model_config = from_dict(ModelConfig, {**saved["configs"]["model"], **typed_values(args, ModelConfig)})
        train = from_dict(TrainConfig, {**saved["configs"]["train"], **typed_values(args, TrainConfig)})
        tokenizer_data = saved["tokenizer"]
        check_resumable(saved, {"model": to_dict(model_config)}, dist.world_size)
    if train.max_steps is None and train.time_budget is None:
        train.time_budget = "10m"
        log.info("no --max-steps or --time-budget given: training for 10m")
    corpus = load_corpus(data, task="lm")
    if dist.is_main and tokenizer_data is None:
        tokenizer_data = build_tokenizer(data, split_texts(corpus, "train")).to_data()
    tokenizer = tokenizer_from_data(dist.gather(tokenizer_data)[0])
    # Rank 0 fills the token cache first so that other ranks only read it.
    if not dist.is_main:
        dist.gather(None)
    train_tokens = token_array(corpus, "train", tokenizer, num_proc=data.num_proc)
    val_tokens = token_array(corpus, "validation", tokenizer, num_proc=data.num_proc)
    if dist.is_main:
        dist.gather(None)

    model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(train.seed)
    model = LanguageModel(model_config)
    log.info("%s: %s training tokens, vocabulary %d, %s %dx%d with %s parameters, %s on %s",
             corpus.name, f"{len(train_tokens):,}", tokenizer.vocab_size, model_config.cell,
             model_config.num_layers, model_config.hidden_size, f"{count_parameters(model):,}",
             precision, device)
    chars_per_token = count_chars(corpus, "validation") / len(val_tokens)
    task = LanguageModelTask(
        StreamBatches(train_tokens, train.batch_size, train.seq_len, dist.rank, dist.world_size),
        validation_streams(val_tokens, train, dist), chars_per_token, train.eval_tokens)
    configs = {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(train)}
    reporter = RichReporter(console, chars_per_token) if dist.is_main else None
    result = fit(model, task, train, run_dir, configs,
                 {"model_config": to_dict(model_config), "tokenizer": tokenizer.to_data()},
                 device, precision, reporter, dist)
    if result.stop_reason == "interrupted":
        log.warning("interrupted at step %d; saved %s; continue with: textgen train --resume --out %s",
                    result.step, run_dir / "last.pt", run_dir)
        return ExitStatus.INTERRUPTED
    return ExitStatus.SUCCESS


@dataclasses.dataclass
class Setup:
    """A training run's validated configs and where it runs."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    classifier: ClassifierConfig
    finetune: FinetuneConfig
    device: Any
    precision: str
    dist: Any
    run_dir: Path


def train_classifier(args: argparse.Namespace, console: Console, setup: Setup) -> ExitStatus:
    """`textgen train --task classify`: a classifier from scratch, or ULMFiT-style from a language
    model (optional LM fine-tuning on the target texts, then gradual unfreezing)."""
    import torch

    from textgen.batches import LabelledBatches, StreamBatches, encode_labelled, token_array
    from textgen.checkpoint import load_checkpoint, load_language_model
    from textgen.config import from_dict
    from textgen.corpus import count_chars, load_corpus, split_texts
    from textgen.model import Classifier, count_parameters
    from textgen.tokenizer import build_tokenizer, tokenizer_from_data
    from textgen.trainer import ClassificationTask, LanguageModelTask, check_resumable, fit

    data, model_config, train, classifier_config, finetune = (
        setup.data, setup.model, setup.train, setup.classifier, setup.finetune)
    dist, device, run_dir = setup.dist, setup.device, setup.run_dir
    tokenizer = language_model = None
    if train.resume:
        saved = load_checkpoint(run_dir / "last.pt", kind="classifier")
        configs = saved["configs"]
        data = from_dict(DataConfig, {**configs["data"], **typed_values(args, DataConfig)})
        model_config = from_dict(ModelConfig, {**configs["model"], **typed_values(args, ModelConfig)})
        classifier_config = from_dict(ClassifierConfig, {**configs["classifier"], **typed_values(args, ClassifierConfig)})
        finetune = from_dict(FinetuneConfig, configs["finetune"])
        train = from_dict(TrainConfig, {**configs["train"], **typed_values(args, TrainConfig)})
        tokenizer = tokenizer_from_data(saved["tokenizer"])
        check_resumable(saved, {"model": to_dict(model_config)}, dist.world_size)
    elif finetune.init_from:
        if classifier_config.bidirectional:
            raise ConfigError("--bidirectional needs a classifier trained from scratch: a language model "
                              "from --init-from reads forwards only")
        language_model, tokenizer, _ = load_language_model(finetune.init_from)
        # The encoder's shape comes from the language model; its dropouts can be set for fine-tuning.
        typed_model = typed_values(args, ModelConfig)
        shape = [f"{flag_of(ModelConfig, name)} {value}" for name, value in typed_model.items()
                 if "dropout" not in name and getattr(language_model.config, name) != value]
        if shape:
            raise ConfigError(f"{', '.join(shape)} would change the pretrained encoder from --init-from; "
                              f"drop them (only the dropouts can be set when fine-tuning)")
        model_config = dataclasses.replace(language_model.config, **typed_model)
    if train.max_steps is None and train.time_budget is None:
        train.time_budget = "10m"
        log.info("no --max-steps or --time-budget given: training for 10m")

    corpus = load_corpus(data, task="classify")
    if tokenizer is None:
        tokenizer_data = build_tokenizer(data, split_texts(corpus, "train")).to_data() if dist.is_main else None
        tokenizer = tokenizer_from_data(dist.gather(tokenizer_data)[0])
        model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
    classifier_config = dataclasses.replace(classifier_config, label_names=tuple(corpus.label_names))

    if language_model is not None and finetune.lm_finetune_steps:
        # ULMFiT stage 2: the language model learns the target texts' style before classifying.
        log.info("fine-tuning the language model on %s for %d steps", corpus.name, finetune.lm_finetune_steps)
        lm_train = dataclasses.replace(
            train, task="lm", out=str(run_dir / "lm"), resume=False, max_steps=finetune.lm_finetune_steps,
            time_budget=None, eval_interval=finetune.lm_finetune_steps,
            checkpoint_interval=finetune.lm_finetune_steps, warmup_steps=min(train.warmup_steps, finetune.lm_finetune_steps))
        train_tokens, val_tokens = (token_array(corpus, split, tokenizer) for split in ("train", "validation"))
        chars_per_token = count_chars(corpus, "validation") / len(val_tokens)
        lm_task = LanguageModelTask(
            StreamBatches(train_tokens, train.batch_size, train.seq_len, dist.rank, dist.world_size),
            validation_streams(val_tokens, train, dist), chars_per_token)
        lm_configs = {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(lm_train)}
        reporter = RichReporter(console, chars_per_token) if dist.is_main else None
        fit(language_model.train(), lm_task, lm_train, run_dir / "lm", lm_configs,
            {"model_config": to_dict(model_config), "tokenizer": tokenizer.to_data()},
            device, setup.precision, reporter, dist)

    encoded = {split: encode_labelled(corpus, split, tokenizer, data.num_proc) for split in ("train", "validation")}
    train_batches = LabelledBatches(*encoded["train"], train.batch_size, tokenizer.pad_id,
                                    max_len=classifier_config.max_len, seed=train.seed)
    val_batches = LabelledBatches(*encoded["validation"], train.batch_size, tokenizer.pad_id,
                                  max_len=classifier_config.max_len, shuffle=False)
    epoch_steps = max(1, len(train_batches) // dist.world_size)
    typed = typed_values(args, TrainConfig)
    # Unless typed: evaluate (and checkpoint) once an epoch, and warm up over half an epoch.
    train = dataclasses.replace(train, eval_interval=typed.get("eval_interval", epoch_steps),
                                checkpoint_interval=typed.get("checkpoint_interval", epoch_steps),
                                warmup_steps=typed.get("warmup_steps", max(1, epoch_steps // 2)))

    torch.manual_seed(train.seed)
    classifier = Classifier(model_config, classifier_config)
    if language_model is not None:
        encoder = {k: v for k, v in language_model.state_dict().items() if k.startswith(("embedding.", "rnn."))}
        classifier.load_state_dict(encoder, strict=False)
    log.info("%s: %s training texts, %d classes (%s), %s %dx%d%s with %s parameters, %s",
             corpus.name, f"{len(train_batches.ids):,}", len(corpus.label_names), ", ".join(corpus.label_names),
             model_config.cell, model_config.num_layers, model_config.hidden_size,
             " bidirectional" if classifier_config.bidirectional else "",
             f"{count_parameters(classifier):,}", f"from {finetune.init_from}" if finetune.init_from else "from scratch")
    task = ClassificationTask(train_batches, val_batches, finetune, len(classifier.layer_groups()),
                              pretrained=finetune.init_from is not None, dist=dist)
    configs = {"data": to_dict(data), "model": to_dict(model_config), "classifier": to_dict(classifier_config),
               "finetune": to_dict(finetune), "train": to_dict(train)}
    extra = {"model_config": to_dict(model_config), "classifier_config": to_dict(classifier_config),
             "tokenizer": tokenizer.to_data()}
    reporter = RichReporter(console, 1.0) if dist.is_main else None
    result = fit(classifier, task, train, run_dir, configs, extra, device, setup.precision, reporter, dist)
    if result.stop_reason == "interrupted":
        log.warning("interrupted at step %d; saved %s; continue with: textgen train --task classify --resume "
                    "--out %s", result.step, run_dir / "last.pt", run_dir)
        return ExitStatus.INTERRUPTED
    return ExitStatus.SUCCESS


def classify_command(args: argparse.Namespace, console: Console) -> ExitStatus:
    """`textgen classify`: label texts, or score the classifier on a labelled corpus split."""
    import numpy as np
    from rich.table import Table

    from textgen.checkpoint import load_classifier
    from textgen.classify import classification_metrics, predict
    from textgen.corpus import load_corpus, read_texts
    from textgen.trainer import resolve_device

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
        data = DataConfig(corpus=args.corpus, data_dir=args.data_dir, text_column=args.text_column,
                          label_column=args.label_column, encoding=args.encoding)
        corpus = load_corpus(data, task="classify")
        if args.split not in corpus.splits:
            raise ConfigError(f"--split {args.split} is not in {corpus.name}, or has no labels; it has: "
                              f"{', '.join(corpus.splits)}")
        if list(corpus.label_names) != names:
            raise ConfigError(f"{corpus.name} labels ({', '.join(corpus.label_names)}) are not the "
                              f"classifier's ({', '.join(names)}); evaluate on a corpus with the same labels")
        rows = corpus.splits[args.split]
        probabilities = predict(model, tokenizer, list(rows[corpus.text_column]), device, args.batch_size)
        metrics = {"corpus": corpus.name, "split": args.split,
                   **classification_metrics(np.asarray(rows[corpus.label_column]), probabilities.argmax(1), names)}
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
    texts = args.texts or (read_texts(args.file, args.text_column, args.encoding) if args.file else
                           [line.rstrip("\n") for line in sys.stdin if line.strip()])
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
    from textgen.trainer import Distributed, LanguageModelTask, resolve_device

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
    from textgen.trainer import resolve_device

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
    from textgen.trainer import resolve_device

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
        chunks = stream(model, tokenizer, text, config, device)
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


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], ExitStatus]] = {
    "train": train_command,
    "sample": sample_command,
    "classify": classify_command,
    "eval": eval_command,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    parser = argparse.ArgumentParser(
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
    sample.add_argument("--model", required=True, help="run folder (its best.pt) or .pt checkpoint")
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
                    "(IMDb reviews, say) are cut to their first max-len tokens (--long-text truncate) or "
                    "split into max-len chunks whose probabilities are averaged (--long-text chunk).")
    classify.add_argument("texts", nargs="*", help="texts to label (else --file, else standard input)")
    classify.add_argument("--model", required=True, help="classifier run folder (its best.pt) or .pt file")
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
    classify.add_argument("--long-text", choices=("truncate", "chunk"),
                          help="texts over --max-len: truncate, or average over chunks (default: the classifier's)")
    classify.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    classify.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    classify.add_argument("--json", action="store_true", help="one JSON object per text (or the metrics)")

    evaluate = commands.add_parser("eval", parents=[common], help="score a checkpoint on a corpus split",
                                   description="Bits per character and perplexity of a language "
                                               "model on a corpus split.")
    evaluate.add_argument("--model", required=True, help="run folder (its best.pt) or .pt checkpoint")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the textgen command line; returns the exit status instead of exiting."""
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
        console.print(f"textgen: error: {error}", markup=False, highlight=False)
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        if args.traceback:
            raise
        console.print("textgen: interrupted", markup=False, highlight=False)
        return ExitStatus.INTERRUPTED


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
