"""Recipes: the training workflows, composed from corpus, tokenizer, batches, model and trainer.

`train_language_model` and `train_classifier` (ULMFiT: optional language-model fine-tuning on the
target texts, then gradual unfreezing with discriminative learning rates) read a `Setup`, whose
settings `prepare` merged once (preset, saved run or pretrained model, typed flags), and return the
trainer's `RunResult`; `train` runs the one the setup's task names, and `run` does it all from the
settings as typed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from textgen.data.batches import LabelledBatches, StreamBatches, encode_labelled, label_array, token_array
from textgen.nn.checkpoint import bundled_models, load_checkpoint, load_model, resolve_checkpoint_path
from textgen.config import (AUTO_COMPACT_BELOW, LM_FINETUNE, PRESETS, ClassifierConfig, DataConfig, FinetuneConfig,
                            ModelConfig, TrainConfig, flag_of, from_dict, to_dict)
from textgen.data.files import check_not_input
from textgen.data.corpus import (Corpus, count_chars, language_model_split, load_corpus, local_text_bytes,
                                 local_text_sample, split_texts)
from textgen.training.distributed import Distributed
from textgen.errors import ConfigError, TextgenError
from textgen.requests import TRAIN_CONFIGS, TrainRequest
from textgen.nn.model import (Classifier, LanguageModel, check_memory, count_parameters, grow_vocabulary,
                           resolve_device, training_bytes)
from textgen.nn.precision import resolve_precision
from textgen.data.tokenizer import CharTokenizer, Tokenizer, build_tokenizer, tokenizer_from_data
from textgen.classify.stacking import stack_ngrams
from textgen.training.tasks import ClassificationTask, LanguageModelTask
from textgen.training.trainer import Reporter, RunResult, check_resumable, check_run_folder, fit, resume_checkpoint

log = logging.getLogger("textgen")

# Makes the progress reporter for a stage, given its characters per token (None for a classifier).
ReporterFactory = Callable[[float | None], Reporter | None]


@dataclasses.dataclass
class Setup:
    """A training run's settings, merged and validated, where it runs, and what it starts from."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    classifier: ClassifierConfig
    finetune: FinetuneConfig
    device: torch.device
    precision: str
    dist: Distributed
    run_dir: Path
    per_epoch: tuple[str, ...] = ()  # train settings a classifier sets to once an epoch (those not typed)
    fit_window: bool = False  # neither --batch-size nor --seq-len typed: a small text may narrow them
    tokenizer: Tokenizer | None = None  # the resumed run's or the pretrained model's; None: built from the corpus
    pretrained: LanguageModel | Classifier | None = None  # --init-from, loaded


# the classifier settings that decide the head's weights' shapes
HEAD_SHAPE = ("head_hidden", "head_norm")
# a classifier's train settings that default to once an epoch (half an epoch for the warm-up)
PER_EPOCH = ("eval_interval", "checkpoint_interval", "warmup_steps")
CONFIGS = TRAIN_CONFIGS


def prepare(typed: dict[str, dict[str, Any]]) -> Setup:
    """A run's settings, merged once: a preset's, overlaid when resuming by the run's saved ones
    (with the tokenizer), or when fine-tuning by the pretrained model's shape; then by `typed`
    (config name -> the fields the user set), and validated before any data loads. Every
    checkpoint the run starts from is read here, once."""
    typed = {name: dict(typed.get(name, {})) for name in CONFIGS}
    _default_start(typed)
    preset = PRESETS[_preset_name(typed)]
    data = DataConfig(**typed["data"])
    if Path(data.corpus).expanduser().exists():  # saved whole, so the copy check finds it from any folder
        data = dataclasses.replace(data, corpus=str(Path(data.corpus).expanduser().resolve()))
    model_config = ModelConfig(**{**preset["model"], **typed["model"]})
    train = TrainConfig(**{**preset["train"], **typed["train"]})
    classifier_config = ClassifierConfig(**typed["classifier"])
    if classifier_config.char_ngrams and not classifier_config.ngram_buckets:
        raise ConfigError(f"--char-ngrams {classifier_config.char_ngrams} hashes into the n-gram table, and there is "
                          f"none; add --ngram-buckets N (e.g. 262144), or drop --char-ngrams")
    if classifier_config.ngram_buckets and classifier_config.features == "recurrent":
        raise ConfigError(f"--ngram-buckets {classifier_config.ngram_buckets} adds an n-gram table that --features "
                          f"recurrent never trains (it would answer 0.5 for every text); add --features ngram or "
                          f"both, or drop --ngram-buckets")
    finetune = FinetuneConfig(**typed["finetune"])
    device = resolve_device(train.device)
    precision = resolve_precision(train.precision, device)
    dist = Distributed.from_environment(device.type)
    kind = model_config.cell if train.task == "lm" else "classifier"
    run_dir = Path(train.out or f"runs/{Path(data.corpus).name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(dist.gather(str(run_dir))[0])  # every rank writes into rank 0's folder name
    check_not_input("--out", run_dir, _inputs(data, finetune, train), folder=True)
    check_run_folder(run_dir, train)
    tokenizer = pretrained = None
    if train.resume:
        # A typed model flag that contradicts the checkpoint is refused by check_resumable.
        saved = resume_checkpoint(run_dir, "language_model" if train.task == "lm" else "classifier", dist)

        def resumed(name: str) -> Any:  # the saved config overlaid with what was typed now (a longer --max-steps, say)
            return from_dict(CONFIGS[name], {**saved["configs"][name], **typed[name]})

        # the run's text is what it resumes on: another corpus would mix two runs in one (its best.pt
        # picked across both); where the data folder lies may change
        for name, value in {**typed["data"], "corpus": data.corpus}.items():
            was = saved["configs"]["data"].get(name)
            if name != "data_dir" and name in typed["data"] and not _same_setting(name, value, was):
                raise ConfigError(f"--resume continues {run_dir} on its own text ({flag_of(DataConfig, name)} "
                                  f"{was}), not {value}; drop {flag_of(DataConfig, name)}, or train on it into a new "
                                  f"--out (--init-from {run_dir} to start from this run)")

        data, model_config = resumed("data"), resumed("model")
        if train.task == "classify":
            classifier_config = resumed("classifier")
        saved["configs"]["train"].pop("overwrite", None)  # what the starting command did to --out, not a setting
        train = resumed("train")
        tokenizer = tokenizer_from_data(saved["tokenizer"])
        check_resumable(saved, {"model": to_dict(model_config)}, dist.world_size)
        started_from = saved["configs"].get("finetune", {}).get("init_from")
        if finetune.init_from not in (None, started_from):
            raise ConfigError(f"--resume continues {run_dir}, which started from {started_from or 'scratch'}, not "
                              f"{finetune.init_from}; drop --init-from, or choose a new --out")
        finetune = from_dict(FinetuneConfig, saved["configs"].get("finetune", {}))
    elif train.task == "lm" and finetune.init_from:
        pretrained, tokenizer, data, model_config, train = _language_model_to_finetune(typed, data, train, finetune)
        finetune = dataclasses.replace(finetune, **{name: value for name, value in LM_FINETUNE["finetune"].items()
                                                    if name not in typed["finetune"]})
    elif train.task == "classify" and finetune.init_from:
        if classifier_config.bidirectional:
            raise ConfigError("--bidirectional needs a classifier trained from scratch: a language model "
                              "from --init-from reads forwards only")
        pretrained, tokenizer, payload = load_model(finetune.init_from)
        if payload["kind"] == "classifier":
            # go on fine-tuning a classifier (the bundled sentiment, say) on new texts
            if finetune.lm_finetune_steps:
                raise ConfigError(f"--lm-finetune-steps fine-tunes a language model, and {finetune.init_from} is a "
                                  f"classifier; drop --lm-finetune-steps")
            pretrained_config = pretrained.model_config
            # its head's shape and how it reads long texts carry over unless typed otherwise
            classifier_config = dataclasses.replace(classifier_config, **{
                name: getattr(pretrained.config, name) for name in (*HEAD_SHAPE, "max_len", "long_text")
                if name not in typed["classifier"]})
        else:
            pretrained_config = pretrained.config
            if pretrained_config.label_names:
                raise ConfigError(f"--init-from {finetune.init_from} reads labels as context (--condition), which a "
                                  f"classifier's encoder cannot; start from an unconditioned language model such "
                                  f"as reviews")
        model_config = _pretrained_shape(pretrained_config, typed["model"], "encoder")
    if train.max_steps is None and train.time_budget is None and classifier_config.features == "recurrent":
        train.time_budget = "10m"
        log.info("no --max-steps or --time-budget given: training for 10m")
    per_epoch = tuple(name for name in PER_EPOCH if name not in typed["train"])
    fit_window = not train.resume and not {"batch_size", "seq_len"} & typed["train"].keys()
    return Setup(data, model_config, train, classifier_config, finetune, device, precision, dist, run_dir,
                 per_epoch, fit_window, tokenizer, pretrained)


def _pretrained_shape(pretrained: ModelConfig, typed_model: dict[str, Any], what: str = "model",
                      defaults: dict[str, Any] | None = None) -> ModelConfig:
    """The pretrained model's config with the dropouts for fine-tuning: typed, else `defaults`, else
    its own. A typed flag that would change its shape is an error."""
    # an unconditioned language model can learn labels as context: its start is unchanged (grow_vocabulary)
    conditioning = ("condition", "label_embed_size") if what == "model" and not pretrained.label_names else ()
    shape = [f"{flag_of(ModelConfig, name)} {value}" for name, value in typed_model.items()
             if "dropout" not in name and name not in conditioning and getattr(pretrained, name) != value]
    if shape:
        raise ConfigError(f"{', '.join(shape)} would change the pretrained {what} from --init-from; "
                          f"drop them (only the dropouts can be set when fine-tuning)")
    return dataclasses.replace(pretrained, **{**(defaults or {}), **typed_model})


def _language_model_to_finetune(typed: dict[str, dict[str, Any]], data: DataConfig, train: TrainConfig,
                                finetune: FinetuneConfig
                                ) -> tuple[LanguageModel, Tokenizer, DataConfig, ModelConfig, TrainConfig]:
    """The language model --init-from names (read only: nothing of it is written), its tokenizer, and
    the configs for fine-tuning it: its shape and tokenizer kind, the fine-tuning defaults where
    nothing was typed."""
    pretrained, tokenizer, payload = load_model(finetune.init_from)
    if payload["kind"] != "language_model":
        raise ConfigError(f"--init-from {finetune.init_from} is a {payload['kind'].replace('_', ' ')}, and a language "
                          f"model fine-tunes from a language model; give one (a bundled name such as english, a "
                          f"run folder or a .pt), or add --task classify to fine-tune the classifier")
    if typed["data"].get("tokenizer", tokenizer.kind) != tokenizer.kind:
        raise ConfigError(f"--tokenizer {typed['data']['tokenizer']} differs from {finetune.init_from}, which reads "
                          f"{tokenizer.kind} tokens; drop --tokenizer (fine-tuning keeps the model's tokenizer)")
    if "vocab_size" in typed["data"]:
        raise ConfigError(f"--vocab-size would change the vocabulary of {finetune.init_from}; drop it (fine-tuning "
                          f"keeps the model's vocabulary and adds only characters it lacks)")
    model_config = _pretrained_shape(pretrained.config, typed["model"], "model", LM_FINETUNE["model"])
    train = dataclasses.replace(train, **{name: value for name, value in LM_FINETUNE["train"].items()
                                          if name not in typed["train"]})
    return pretrained, tokenizer, dataclasses.replace(data, tokenizer=tokenizer.kind), model_config, train


def _same_setting(name: str, value: Any, was: Any) -> bool:
    """Whether a data setting typed now is the saved one (a corpus: the same file, however named)."""
    if value == was:
        return True
    try:
        return name == "corpus" and os.path.samefile(Path(value).expanduser(), Path(was).expanduser())
    except (OSError, TypeError, ValueError):
        return False


def _inputs(data: DataConfig, finetune: FinetuneConfig, train: TrainConfig) -> list[Path]:
    """What the run reads that its folder must not be or hold: a local corpus, and the model it
    starts from (nothing of --init-from is ever written to)."""
    inputs = [Path(data.corpus).expanduser()] if Path(data.corpus).expanduser().exists() else []
    if finetune.init_from and not train.resume:
        try:
            inputs.append(resolve_checkpoint_path(finetune.init_from))
        except TextgenError:  # no model there: loading it says so, after the other settings are checked
            pass
    return inputs


def _finetuning_vocabulary(tokenizer: Tokenizer, corpus: Corpus, train_split: str, init_from: str) -> Tokenizer:
    """The tokenizer for fine-tuning a model of `tokenizer` on `corpus`: a character vocabulary grows
    by the characters it lacks; a SentencePiece vocabulary stays as it is."""
    if tokenizer.kind != "char":
        log.info("%s keeps its SentencePiece vocabulary of %d pieces: its byte fallback covers characters "
                 "it has not seen", init_from, tokenizer.vocab_size)
        return tokenizer
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
    return grown


# A language model of a small local text starts from the bundled `english` unless told otherwise:
# fine-tuning it beat training from scratch on every such text measured, prose by 0.7 bits/char and
# Python source, verse and short lines by 0.7-1.4 (scripts/bench_transfer.py, bench_repetition.py;
# docs/own-text.md). Not on a text of another script, whose characters english mostly lacks.
KNOWN_CHARACTERS = 0.95  # the share of a text's characters (but spaces) that english must know


def _default_start(typed: dict[str, dict[str, Any]]) -> None:
    """--init-from english, set in `typed`, for a language model of a local text under
    AUTO_COMPACT_BELOW bytes whose characters english knows, where nothing else was asked for (no
    --init-from, model shape, tokenizer or preset; not resuming). --init-from none: from scratch."""
    finetune, train, data = typed["finetune"], typed["train"], typed["data"]
    if finetune.get("init_from") == "none":
        del finetune["init_from"]
        return
    shape = [name for name in typed["model"] if "dropout" not in name and name not in ("condition", "label_embed_size")]
    if (finetune.get("init_from") or shape or {"tokenizer", "vocab_size"} & data.keys() or train.get("resume")
            or train.get("task", "lm") != "lm" or train.get("preset", "auto") != "auto"
            or "english" not in bundled_models()):
        return
    config = DataConfig(**data)
    size = local_text_bytes(config)
    if size is None or size >= AUTO_COMPACT_BELOW:
        return
    text = [char for char in local_text_sample(config) or "" if not char.isspace()]
    known = set(tokenizer_from_data(load_checkpoint(bundled_models()["english"])["tokenizer"]).chars)
    if not text or sum(char in known for char in text) < KNOWN_CHARACTERS * len(text):
        return
    finetune["init_from"] = "english"
    log.info("a small text (%s KB): fine-tuning english, the bundled general English model, which predicts "
             "such text better than a model trained from scratch; --init-from none to train from scratch",
             f"{size / 1000:,.0f}")


def _preset_name(typed: dict[str, dict[str, Any]]) -> str:
    """The preset typed, or for auto: compact for a language model trained from scratch on a small
    local text (where the small preset learns the text by heart before it generalises), else small."""
    name = typed["train"].get("preset") or TrainConfig.preset
    if name != "auto":
        return name
    train, finetune = typed["train"], typed["finetune"]
    if train.get("task", "lm") != "lm" or train.get("resume") or finetune.get("init_from"):
        return "small"
    size = local_text_bytes(DataConfig(**typed["data"]))
    if size is None or size >= AUTO_COMPACT_BELOW:
        return "small"
    log.info("a small text (%s KB): the compact preset (2x256, dropout 0.3), which fits texts under %d KB "
             "better than the larger small preset; --preset small to override", f"{size / 1000:,.0f}",
             AUTO_COMPACT_BELOW // 1000)
    return "compact"


def fitted_window(tokens: int, train: TrainConfig, world_size: int) -> tuple[int, int]:
    """The batch size and sequence length, at most `train`'s, of a window that `tokens` fill on each
    of `world_size` processes: narrower batches first, then shorter sequences."""
    seq_len = max(1, min(train.seq_len, (tokens - 1) // world_size))
    return max(1, min(train.batch_size, (tokens - 1) // (seq_len * world_size))), seq_len


def validation_streams(tokens, train: TrainConfig, dist: Distributed, labels=None) -> StreamBatches:
    """Evaluation streams over a validation split (with its tokens' `labels`), narrowed to fit a small one."""
    batch_size, seq_len = fitted_window(len(tokens), train, dist.world_size)
    return StreamBatches(tokens, batch_size, seq_len, dist.rank, dist.world_size, labels)


def language_model_task(corpus: Corpus, train_split: str, tokenizer: Tokenizer, data: DataConfig, train: TrainConfig,
                        dist: Distributed, eval_tokens: int | None = None,
                        label_dropout: float | None = None, patience: int = 0, fit_window: bool = False
                        ) -> LanguageModelTask:
    """Next-token prediction on `train_split` of `corpus`, evaluated on its validation split; for a
    model conditioned on the corpus's labels (given its `label_dropout`), with each token's label.
    With `fit_window`, a training split too small for `train`'s batches gets narrower ones."""
    # Rank 0 fills the token cache first so that other ranks only read it.
    if not dist.is_main:
        dist.barrier()
    train_tokens = token_array(corpus, train_split, tokenizer, num_proc=data.num_proc)
    val_tokens = token_array(corpus, "validation", tokenizer, num_proc=data.num_proc)
    train_labels = val_labels = None
    if label_dropout is not None:
        train_labels = label_array(corpus, train_split, tokenizer, num_proc=data.num_proc)
        val_labels = label_array(corpus, "validation", tokenizer, num_proc=data.num_proc)
    if dist.is_main:
        dist.barrier()
    batch_size, seq_len = (fitted_window(len(train_tokens), train, dist.world_size) if fit_window
                           else (train.batch_size, train.seq_len))
    return LanguageModelTask(StreamBatches(train_tokens, batch_size, seq_len, dist.rank, dist.world_size, train_labels),
                             validation_streams(val_tokens, train, dist, val_labels),
                             count_chars(corpus, "validation") / len(val_tokens), eval_tokens, label_dropout or 0.0,
                             patience)


def train_language_model(setup: Setup, make_reporter: ReporterFactory) -> RunResult:
    """A language model trained on `setup.data`'s language-modelling splits, into `setup.run_dir`."""
    data, model_config, train, dist, run_dir = setup.data, setup.model, setup.train, setup.dist, setup.run_dir
    corpus = load_corpus(data, task="lm", condition=model_config.condition)
    train_split = language_model_split(corpus, data.lm_splits)
    tokenizer, pretrained = setup.tokenizer, setup.pretrained
    if pretrained is not None:
        tokenizer = _finetuning_vocabulary(tokenizer, corpus, train_split, setup.finetune.init_from)
    if tokenizer is None:
        tokenizer_data = None
        if dist.is_main:
            tokenizer_data = build_tokenizer(data, split_texts(corpus, train_split)).to_data()
        tokenizer = tokenizer_from_data(dist.gather(tokenizer_data)[0])
    task = language_model_task(corpus, train_split, tokenizer, data, train, dist, train.eval_tokens,
                               model_config.label_dropout if model_config.condition else None,
                               setup.finetune.patience, setup.fit_window)
    if (task.train.batch_size, task.train.seq_len) != (train.batch_size, train.seq_len):
        log.info("a small text (%s training tokens): batches of %d x %d, the most it fills, instead of %d x %d",
                 f"{len(task.train.tokens):,}", task.train.batch_size, task.train.seq_len, train.batch_size,
                 train.seq_len)
        train = dataclasses.replace(train, batch_size=task.train.batch_size, seq_len=task.train.seq_len)
    if model_config.condition:
        if model_config.label_names and tuple(model_config.label_names) != tuple(corpus.label_names):
            raise ConfigError(f"{setup.finetune.init_from or run_dir} was conditioned on the labels "
                              f"{', '.join(model_config.label_names)}, and {corpus.name}'s are "
                              f"{', '.join(corpus.label_names)}; fine-tune on a corpus with the same labels")
        model_config = dataclasses.replace(model_config, label_names=tuple(corpus.label_names))
        log.info("conditioned on column %r: labels %s (id 0: no label, for %.0f%% of windows)",
                 model_config.condition, ", ".join(corpus.label_names), 100 * model_config.label_dropout)

    model_config = dataclasses.replace(model_config, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(train.seed)
    model = grow_vocabulary(pretrained, model_config) if pretrained is not None else LanguageModel(model_config)
    log.info("%s: %s training tokens, vocabulary %d, %s %dx%d with %s parameters, %s on %s",
             corpus.name, f"{len(task.train.tokens):,}", tokenizer.vocab_size, model_config.cell,
             model_config.num_layers, model_config.hidden_size, f"{count_parameters(model):,}",
             setup.precision, setup.device)
    configs = {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(train),
               "finetune": to_dict(setup.finetune)}
    return fit(model, task, train, run_dir, configs,
               {"model_config": to_dict(model_config), "tokenizer": tokenizer.to_data()},
               setup.device, setup.precision, make_reporter(task.chars_per_token), dist)


def train_classifier(setup: Setup, make_reporter: ReporterFactory) -> RunResult:
    """A classifier from scratch, or ULMFiT-style from a language model (optional language-model
    fine-tuning on the target texts, then gradual unfreezing), into `setup.run_dir`."""
    data, model_config, train = setup.data, setup.model, setup.train
    classifier_config, finetune = setup.classifier, setup.finetune
    dist, device, run_dir, tokenizer = setup.dist, setup.device, setup.run_dir, setup.tokenizer
    language_model = setup.pretrained if isinstance(setup.pretrained, LanguageModel) else None
    start_from = setup.pretrained if isinstance(setup.pretrained, Classifier) else None

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
        lm_task = language_model_task(corpus, "train", tokenizer, data, lm_train, dist)
        lm_configs = {"data": to_dict(data), "model": to_dict(model_config), "train": to_dict(lm_train)}
        fit(language_model.train(), lm_task, lm_train, run_dir / "lm", lm_configs,
            {"model_config": to_dict(model_config), "tokenizer": tokenizer.to_data()},
            device, setup.precision, make_reporter(lm_task.chars_per_token), dist)
    encoded = {split: encode_labelled(corpus, split, tokenizer, data.num_proc) for split in ("train", "validation")}
    # whole texts are read in max_len chunks by the classifier; otherwise training cuts them as it reads them
    reading = {"max_len": classifier_config.max_len, "long_text": classifier_config.long_text}
    train_batches = LabelledBatches(*encoded["train"], train.batch_size, tokenizer.pad_id, seed=train.seed, **reading)
    val_batches = LabelledBatches(*encoded["validation"], train.batch_size, tokenizer.pad_id, shuffle=False, **reading)
    epoch_steps = max(1, len(train_batches) // dist.world_size)
    # Unless typed: evaluate (and checkpoint) once an epoch, and warm up over half an epoch.
    per_epoch = {"eval_interval": epoch_steps, "checkpoint_interval": epoch_steps,
                 "warmup_steps": max(1, epoch_steps // 2)}
    train = dataclasses.replace(train, **{name: per_epoch[name] for name in setup.per_epoch})

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
        if start_from.config.ngram_buckets:
            log.info("%s's hashed n-grams stay behind: this trains its recurrent part; stack new n-grams on the "
                     "result with --init-from RUN --features both --ngram-buckets N", finetune.init_from)
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
    return fit(classifier, task, train, run_dir, configs, extra, device, setup.precision, make_reporter(None), dist)


def train(setup: Setup, make_reporter: ReporterFactory) -> RunResult:
    """The recipe for `setup.train.task`: a language model (lm) or a classifier (classify)."""
    model, train_config = setup.model, setup.train
    vocab_size = setup.data.vocab_size if setup.data.tokenizer == "sentencepiece" else 256  # before the data says
    check_memory(training_bytes(model, vocab_size, train_config.batch_size, train_config.seq_len),
                 f"training a {model.num_layers}x{model.hidden_size} {model.cell} (--embed {model.embed_size}) on "
                 f"batches of --batch-size {train_config.batch_size} x --seq-len {train_config.seq_len}",
                 "lower them", setup.device)
    if setup.train.task == "classify" and setup.classifier.features != "recurrent":
        return train_stacked(setup)
    recipe = train_language_model if setup.train.task == "lm" else train_classifier
    return recipe(setup, make_reporter)


def train_stacked(setup: Setup) -> RunResult:
    """Hashed word n-grams stacked on the classifier --init-from names (its recurrent part kept as it
    is), the mix and temperatures fitted on validation (`stacking`), into `setup.run_dir`."""
    features = setup.classifier.features
    if not isinstance(setup.pretrained, Classifier):
        raise ConfigError(f"--features {features} stacks hashed n-grams on a trained classifier: give --init-from "
                          f"a classifier (e.g. sentiment, or a run of textgen train --task classify); training the "
                          f"encoder and the n-grams together is not supported")
    if setup.train.resume:
        raise ConfigError(f"--features {features} fits in minutes and keeps no state to resume; drop --resume")
    if setup.dist.world_size > 1:
        raise ConfigError(f"--features {features} fits on one process; run it without torchrun")
    configs = {name: to_dict(getattr(setup, name)) for name in CONFIGS}
    metrics = stack_ngrams(setup.pretrained, setup.tokenizer, setup.data, setup.classifier, setup.train.seed, configs,
                           setup.run_dir, setup.device, setup.precision)
    return RunResult(setup.run_dir, int(metrics["ngram_epoch"]), "max_steps", metrics, metrics, 0.0, 0.0)


def run(request: TrainRequest, make_reporter: ReporterFactory) -> tuple[Setup, RunResult]:
    """The run `request` asks for: `prepare`, then `train`; `make_reporter` is asked on the main
    process only. What `textgen train` and `textgen.train` do."""
    setup = prepare(request.typed())
    return setup, train(setup, lambda chars_per_token: make_reporter(chars_per_token) if setup.dist.is_main else None)
