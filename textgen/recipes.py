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
from textgen.checkpoint import load_checkpoint, load_classifier, load_language_model
from textgen.config import (ClassifierConfig, DataConfig, FinetuneConfig, ModelConfig, TrainConfig, flag_of,
                            from_dict, to_dict)
from textgen.corpus import count_chars, language_model_split, load_corpus, split_texts
from textgen.errors import ConfigError
from textgen.model import Classifier, LanguageModel, count_parameters
from textgen.tokenizer import build_tokenizer, tokenizer_from_data
from textgen.distributed import Distributed
from textgen.tasks import ClassificationTask, LanguageModelTask
from textgen.trainer import Reporter, RunResult, check_resumable, fit

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
    tokenizer_data = None
    if train.resume:
        # A typed model flag that contradicts the checkpoint is refused by check_resumable.
        saved = load_checkpoint(run_dir / "last.pt", kind="language_model")
        data = _resumed(setup, saved, "data", DataConfig)
        model_config = _resumed(setup, saved, "model", ModelConfig)
        train = _resumed(setup, saved, "train", TrainConfig)
        tokenizer_data = saved["tokenizer"]
        check_resumable(saved, {"model": to_dict(model_config)}, dist.world_size)
    _default_budget(train)
    corpus = load_corpus(data, task="lm")
    train_split = language_model_split(corpus, data.lm_splits)
    if dist.is_main and tokenizer_data is None:
        tokenizer_data = build_tokenizer(data, split_texts(corpus, train_split)).to_data()
    tokenizer = tokenizer_from_data(dist.gather(tokenizer_data)[0])
    # Rank 0 fills the token cache first so that other ranks only read it.
    if not dist.is_main:
        dist.barrier()
    train_tokens = token_array(corpus, train_split, tokenizer, num_proc=data.num_proc)
    val_tokens = token_array(corpus, "validation", tokenizer, num_proc=data.num_proc)
    if dist.is_main:
        dist.barrier()

    model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(train.seed)
    model = LanguageModel(model_config)
    log.info("%s: %s training tokens, vocabulary %d, %s %dx%d with %s parameters, %s on %s",
             corpus.name, f"{len(train_tokens):,}", tokenizer.vocab_size, model_config.cell,
             model_config.num_layers, model_config.hidden_size, f"{count_parameters(model):,}",
             setup.precision, setup.device)
    chars_per_token = count_chars(corpus, "validation") / len(val_tokens)
    task = LanguageModelTask(
        StreamBatches(train_tokens, train.batch_size, train.seq_len, dist.rank, dist.world_size),
        validation_streams(val_tokens, train, dist), chars_per_token, train.eval_tokens)
    configs = {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(train)}
    return fit(model, task, train, run_dir, configs,
               {"model_config": to_dict(model_config), "tokenizer": tokenizer.to_data()},
               setup.device, setup.precision, make_reporter(chars_per_token), dist)


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
        # The encoder's shape comes from the pretrained model; its dropouts can be set for fine-tuning.
        typed_model = setup.typed.get("model", {})
        shape = [f"{flag_of(ModelConfig, name)} {value}" for name, value in typed_model.items()
                 if "dropout" not in name and getattr(pretrained_config, name) != value]
        if shape:
            raise ConfigError(f"{', '.join(shape)} would change the pretrained encoder from --init-from; "
                              f"drop them (only the dropouts can be set when fine-tuning)")
        model_config = dataclasses.replace(pretrained_config, **typed_model)
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
