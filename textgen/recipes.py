"""Recipes: the training workflows, composed from corpus, tokenizer, batches, model and trainer.

`train_language_model` and `train_classifier` (ULMFiT: optional language-model fine-tuning on the
target texts, then gradual unfreezing with discriminative learning rates) read validated configs
and return the trainer's `RunResult`; the CLI parses flags into a `Setup` and reports the result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from textgen.batches import LabelledBatches, StreamBatches, encode_labelled, token_array
from textgen.checkpoint import bundled_models, load_checkpoint, load_classifier, load_language_model
from textgen.config import (LM_FINETUNE, ClassifierConfig, DataConfig, FinetuneConfig, ModelConfig, TrainConfig,
                            flag_of, from_dict, to_dict)
from textgen.corpus import Corpus, count_chars, language_model_split, load_corpus, split_texts
from textgen.errors import ConfigError
from textgen.model import Classifier, LanguageModel, count_parameters, grow_vocabulary
from textgen.tokenizer import CharTokenizer, Tokenizer, build_tokenizer, tokenizer_from_data
from textgen.trainer import (ClassificationTask, Distributed, LanguageModelTask, Reporter, RunResult,
                             check_resumable, fit)

log = logging.getLogger("textgen")

# Makes the progress reporter for a stage, given its characters per token (1.0 for classifiers).
ReporterFactory = Callable[[float], Reporter | None]


@dataclasses.dataclass
class Setup:
    """A training run's validated configs, the flags the user typed, and where it runs."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    classifier: ClassifierConfig
    finetune: FinetuneConfig
    typed: dict[str, dict[str, Any]]  # config name -> the fields typed on the command line
    device: torch.device
    precision: str
    dist: Distributed
    run_dir: Path


# the classifier settings that decide the head's weights' shapes
HEAD_SHAPE = ("head_hidden", "head_norm")


def _resumed(setup: Setup, saved: dict[str, Any], name: str, config_class: type) -> Any:
    """The run's saved config `name`, overlaid with what was typed now (a longer --max-steps, say)."""
    return from_dict(config_class, {**saved["configs"][name], **setup.typed.get(name, {})})


def _pretrained_shape(setup: Setup, pretrained: ModelConfig, defaults: dict[str, Any] | None = None) -> ModelConfig:
    """The pretrained model's config with the dropouts for fine-tuning: typed, else `defaults`, else its own.
    A typed flag that would change its shape is an error."""
    typed_model = setup.typed.get("model", {})
    shape = [f"{flag_of(ModelConfig, name)} {value}" for name, value in typed_model.items()
             if "dropout" not in name and getattr(pretrained, name) != value]
    if shape:
        raise ConfigError(f"{', '.join(shape)} would change the pretrained model from --init-from; "
                          f"drop them (only the dropouts can be set when fine-tuning)")
    return dataclasses.replace(pretrained, **{**(defaults or {}), **typed_model})


def _default_budget(train: TrainConfig) -> None:
    if train.max_steps is None and train.time_budget is None:
        train.time_budget = "10m"
        log.info("no --max-steps or --time-budget given: training for 10m")


def validation_streams(tokens, train: TrainConfig, dist: Distributed) -> StreamBatches:
    """Evaluation streams over a validation split, narrowed to fit a small one."""
    seq_len = max(1, min(train.seq_len, (len(tokens) - 1) // dist.world_size))
    batch_size = max(1, min(train.batch_size, (len(tokens) - 1) // (seq_len * dist.world_size)))
    return StreamBatches(tokens, batch_size, seq_len, dist.rank, dist.world_size)


def train_language_model(setup: Setup, make_reporter: ReporterFactory) -> RunResult:
    """A language model trained on `setup.data`'s language-modelling splits, into `setup.run_dir`."""
    data, model_config, train, dist, run_dir = setup.data, setup.model, setup.train, setup.dist, setup.run_dir
    tokenizer_data = pretrained = pretrained_tokenizer = None
    if train.resume:
        # A typed model flag that contradicts the checkpoint is refused by check_resumable.
        saved = load_checkpoint(run_dir / "last.pt", kind="language_model")
        data = _resumed(setup, saved, "data", DataConfig)
        model_config = _resumed(setup, saved, "model", ModelConfig)
        train = _resumed(setup, saved, "train", TrainConfig)
        tokenizer_data = saved["tokenizer"]
        check_resumable(saved, {"model": to_dict(model_config)}, dist.world_size)
        started_from = saved["configs"].get("finetune", {}).get("init_from")
        if setup.finetune.init_from not in (None, started_from):
            raise ConfigError(f"--resume continues {run_dir}, which started from {started_from or 'scratch'}, not "
                              f"{setup.finetune.init_from}; drop --init-from, or choose a new --out")
    elif setup.finetune.init_from:
        pretrained, pretrained_tokenizer, data, model_config, train = _language_model_to_finetune(setup)
    _default_budget(train)
    corpus = load_corpus(data, task="lm")
    train_split = language_model_split(corpus, data.lm_splits)
    if pretrained is not None and dist.is_main:
        tokenizer_data = _finetuning_vocabulary(pretrained_tokenizer, corpus, train_split, setup.finetune.init_from)
    if dist.is_main and tokenizer_data is None:
        tokenizer_data = build_tokenizer(data, split_texts(corpus, train_split)).to_data()
        _suggest_finetuning(corpus, train_split, data)
    tokenizer = tokenizer_from_data(dist.gather(tokenizer_data)[0])
    # Rank 0 fills the token cache first so that other ranks only read it.
    if not dist.is_main:
        dist.gather(None)
    train_tokens = token_array(corpus, train_split, tokenizer, num_proc=data.num_proc)
    val_tokens = token_array(corpus, "validation", tokenizer, num_proc=data.num_proc)
    if dist.is_main:
        dist.gather(None)

    model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(train.seed)
    if pretrained is not None:
        model = grow_vocabulary(pretrained, model_config)
    else:
        model = LanguageModel(model_config)
    log.info("%s: %s training tokens, vocabulary %d, %s %dx%d with %s parameters, %s on %s",
             corpus.name, f"{len(train_tokens):,}", tokenizer.vocab_size, model_config.cell,
             model_config.num_layers, model_config.hidden_size, f"{count_parameters(model):,}",
             setup.precision, setup.device)
    chars_per_token = count_chars(corpus, "validation") / len(val_tokens)
    task = LanguageModelTask(
        StreamBatches(train_tokens, train.batch_size, train.seq_len, dist.rank, dist.world_size),
        validation_streams(val_tokens, train, dist), chars_per_token, train.eval_tokens)
    configs = {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(train),
               "finetune": to_dict(setup.finetune)}
    return fit(model, task, train, run_dir, configs,
               {"model_config": to_dict(model_config), "tokenizer": tokenizer.to_data()},
               setup.device, setup.precision, make_reporter(chars_per_token), dist)


# Below this many training characters, fine-tuning the bundled english model beat every from-scratch
# run of the same time in scripts/bench_transfer.py (see docs/own-text.md).
SMALL_TEXT_CHARS = 1_000_000
_COMMON_ENGLISH = frozenset("the and of to a in that is was he it for with as his i you her had not but at on be".split())


def _suggest_finetuning(corpus: Corpus, train_split: str, data: DataConfig) -> None:
    """One log line when a small English text trains from scratch: fine-tuning `english` usually does better."""
    if data.tokenizer != "char" or "english" not in bundled_models():
        return
    sample, length = [], 0
    for piece in split_texts(corpus, train_split):
        length += len(piece)
        if length > SMALL_TEXT_CHARS:
            return
        sample.append(piece[:100_000])
    words = " ".join(sample).lower().split()[:20_000]
    if words and sum(word in _COMMON_ENGLISH for word in words) / len(words) > 0.15:
        log.info("%s is a small English text (%s characters): --init-from english (fine-tuning a general "
                 "English model) usually predicts such text better than training from scratch",
                 corpus.name, f"{length:,}")


def _language_model_to_finetune(setup: Setup
                                ) -> tuple[LanguageModel, Tokenizer, DataConfig, ModelConfig, TrainConfig]:
    """The language model --init-from names (read only: nothing of it is written), and the configs
    for fine-tuning it: its shape and tokenizer kind, the fine-tuning defaults where nothing was typed."""
    init_from, typed = setup.finetune.init_from, setup.typed
    kind = load_checkpoint(init_from).get("kind")
    if kind != "language_model":
        raise ConfigError(f"--init-from {init_from} is a {str(kind).replace('_', ' ')}, and a language model "
                          f"fine-tunes from a language model; give one (a bundled name such as english, a run "
                          f"folder or a .pt), or add --task classify to fine-tune the classifier")
    pretrained, tokenizer, _ = load_language_model(init_from)
    typed_data = typed.get("data", {})
    if typed_data.get("tokenizer", tokenizer.kind) != tokenizer.kind:
        raise ConfigError(f"--tokenizer {typed_data['tokenizer']} differs from {init_from}, which reads "
                          f"{tokenizer.kind} tokens; drop --tokenizer (fine-tuning keeps the model's tokenizer)")
    if "vocab_size" in typed_data:
        raise ConfigError(f"--vocab-size would change the vocabulary of {init_from}; drop it (fine-tuning keeps "
                          f"the model's vocabulary and adds only characters it lacks)")
    data = dataclasses.replace(setup.data, tokenizer=tokenizer.kind)
    model_config = _pretrained_shape(setup, pretrained.config, LM_FINETUNE["model"])
    train = dataclasses.replace(setup.train, **{name: value for name, value in LM_FINETUNE["train"].items()
                                                if name not in typed.get("train", {})})
    return pretrained, tokenizer, data, model_config, train


def _finetuning_vocabulary(tokenizer: Tokenizer, corpus: Corpus, train_split: str, init_from: str) -> dict:
    """The tokenizer data for fine-tuning a model of `tokenizer` on `corpus`: a character vocabulary grows
    by the characters it lacks; a SentencePiece vocabulary stays as it is."""
    if tokenizer.kind != "char":
        log.info("%s keeps its SentencePiece vocabulary of %d pieces: its byte fallback covers characters "
                 "it has not seen", init_from, tokenizer.vocab_size)
        return tokenizer.to_data()
    seen = CharTokenizer.from_texts(split_texts(corpus, train_split)).chars
    grown = tokenizer.extended(seen)
    new = grown.chars[len(tokenizer.chars):]
    if all(char.isspace() for char in set(seen) - set(new)):
        raise ConfigError(f"{corpus.name} has no character in common with {init_from}'s vocabulary but "
                          f"whitespace; fine-tune a model of the same script, or train from scratch without "
                          f"--init-from")
    if new:
        log.info("fine-tuning %s: %d characters it has not seen get new rows (%s); its other %d keep theirs",
                 init_from, len(new), " ".join(map(repr, new[:10])) + (" ..." if len(new) > 10 else ""),
                 tokenizer.vocab_size - 2)
    else:
        log.info("fine-tuning %s: every character of %s is in its vocabulary", init_from, corpus.name)
    return grown.to_data()


def train_classifier(setup: Setup, make_reporter: ReporterFactory) -> RunResult:
    """A classifier from scratch, or ULMFiT-style from a language model (optional language-model
    fine-tuning on the target texts, then gradual unfreezing), into `setup.run_dir`."""
    data, model_config, train = setup.data, setup.model, setup.train
    classifier_config, finetune = setup.classifier, setup.finetune
    dist, device, run_dir = setup.dist, setup.device, setup.run_dir
    tokenizer = language_model = start_from = None
    if train.resume:
        saved = load_checkpoint(run_dir / "last.pt", kind="classifier")
        data = _resumed(setup, saved, "data", DataConfig)
        model_config = _resumed(setup, saved, "model", ModelConfig)
        classifier_config = _resumed(setup, saved, "classifier", ClassifierConfig)
        finetune = from_dict(FinetuneConfig, saved["configs"]["finetune"])
        train = _resumed(setup, saved, "train", TrainConfig)
        tokenizer = tokenizer_from_data(saved["tokenizer"])
        check_resumable(saved, {"model": to_dict(model_config)}, dist.world_size)
    elif finetune.init_from:
        if classifier_config.bidirectional:
            raise ConfigError("--bidirectional needs a classifier trained from scratch: a language model "
                              "from --init-from reads forwards only")
        if load_checkpoint(finetune.init_from)["kind"] == "classifier":
            # go on fine-tuning a classifier (the bundled sentiment, say) on new texts
            if finetune.lm_finetune_steps:
                raise ConfigError(f"--lm-finetune-steps fine-tunes a language model, and {finetune.init_from} is a "
                                  f"classifier; drop --lm-finetune-steps")
            start_from, tokenizer, _ = load_classifier(finetune.init_from)
            pretrained_config = start_from.model_config
            # its head's shape carries over unless typed otherwise
            typed_head = setup.typed.get("classifier", {})
            classifier_config = dataclasses.replace(classifier_config, **{
                name: getattr(start_from.config, name) for name in HEAD_SHAPE if name not in typed_head})
        else:
            language_model, tokenizer, _ = load_language_model(finetune.init_from)
            pretrained_config = language_model.config
        model_config = _pretrained_shape(setup, pretrained_config)
    _default_budget(train)

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
            checkpoint_interval=finetune.lm_finetune_steps,
            warmup_steps=min(train.warmup_steps, finetune.lm_finetune_steps))
        train_tokens, val_tokens = (token_array(corpus, split, tokenizer) for split in ("train", "validation"))
        chars_per_token = count_chars(corpus, "validation") / len(val_tokens)
        lm_task = LanguageModelTask(
            StreamBatches(train_tokens, train.batch_size, train.seq_len, dist.rank, dist.world_size),
            validation_streams(val_tokens, train, dist), chars_per_token)
        lm_configs = {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(lm_train)}
        fit(language_model.train(), lm_task, lm_train, run_dir / "lm", lm_configs,
            {"model_config": to_dict(model_config), "tokenizer": tokenizer.to_data()},
            device, setup.precision, make_reporter(chars_per_token), dist)

    encoded = {split: encode_labelled(corpus, split, tokenizer, data.num_proc) for split in ("train", "validation")}
    # whole texts are read in max_len chunks by the classifier; otherwise training truncates
    max_len = None if classifier_config.long_text == "whole" else classifier_config.max_len
    train_batches = LabelledBatches(*encoded["train"], train.batch_size, tokenizer.pad_id,
                                    max_len=max_len, seed=train.seed)
    val_batches = LabelledBatches(*encoded["validation"], train.batch_size, tokenizer.pad_id,
                                  max_len=max_len, shuffle=False)
    epoch_steps = max(1, len(train_batches) // dist.world_size)
    typed = setup.typed.get("train", {})
    # Unless typed: evaluate (and checkpoint) once an epoch, and warm up over half an epoch.
    train = dataclasses.replace(train, eval_interval=typed.get("eval_interval", epoch_steps),
                                checkpoint_interval=typed.get("checkpoint_interval", epoch_steps),
                                warmup_steps=typed.get("warmup_steps", max(1, epoch_steps // 2)))

    torch.manual_seed(train.seed)
    classifier = Classifier(model_config, classifier_config)
    if language_model is not None:
        encoder = {k: v for k, v in language_model.state_dict().items() if k.startswith(("embedding.", "rnn."))}
        classifier.load_state_dict(encoder, strict=False)
    elif start_from is not None:
        same_labels = tuple(start_from.config.label_names) == tuple(corpus.label_names)
        other_shape = [flag_of(ClassifierConfig, name) for name in HEAD_SHAPE
                       if getattr(start_from.config, name) != getattr(classifier_config, name)]
        # the head carries over when the labels and its shape are the same; otherwise only the encoder does
        kept = {k: v for k, v in start_from.state_dict().items()
                if (same_labels and not other_shape) or not k.startswith("head.")}
        classifier.load_state_dict(kept, strict=False)
        if not same_labels:
            log.info("%s has labels %s, not %s: its encoder carries over, its head starts afresh", finetune.init_from,
                     ", ".join(start_from.config.label_names), ", ".join(corpus.label_names))
        elif other_shape:
            log.info("%s changes the head of %s: its encoder carries over, its head starts afresh",
                     " and ".join(other_shape), finetune.init_from)
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
    return fit(classifier, task, train, run_dir, configs, extra, device, setup.precision, make_reporter(1.0), dist)
