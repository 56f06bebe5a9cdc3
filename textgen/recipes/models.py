"""Loaded models, ready for work: a language model to continue, complete and score texts, a classifier
to label them; `load` reads either from a bundled name, a run folder or a .pt file. The recipes and
the Python API hand these out; the server keeps them loaded."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textgen.classify.predict import Progress, predict, predict_stream
from textgen.config import DataConfig, SampleConfig, check_value
from textgen.data.corpus import read_texts
from textgen.data.tokenizer import Tokenizer
from textgen.generate.completion import Completion, complete
from textgen.generate.copying import CopyIndex
from textgen.generate.sampling import Chunk, generate, stream
from textgen.generate.scoring import score
from textgen.nn.checkpoint import bundled_models, describe_checkpoint, load_model
from textgen.nn.model import Classifier, resolve_device
from textgen.nn.precision import resolve_precision
from textgen.errors import ConfigError
from textgen.requests import ADAPT_DECAY, ADAPT_LR, ClassifyRequest, CompleteRequest, EvalRequest, SampleRequest

log = logging.getLogger("textgen")


class TextGenerator:
    """A language model with its tokenizer, ready to continue texts and to score them."""

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, device: torch.device, path: str,
                 trained_on: dict | None = None):
        self.model, self.tokenizer, self.device, self.path = model, tokenizer, device, path
        self.trained_on = trained_on  # the saved data config of the text it trained on, if known

    def copy_index(self, corpus: str = "", data_dir: str | None = None) -> CopyIndex:
        """An index for checking samples against `corpus`'s training text (default: the text this
        model trained on): `.check(sample)` gives the longest span copied verbatim and the share of
        characters in copied spans."""
        return CopyIndex.of_training_text(corpus, self.trained_on, data_dir, self.path)

    def adapted(self, text: str, lr: float = ADAPT_LR, decay: float = ADAPT_DECAY) -> TextGenerator:
        """This generator's model adapted to `text` (a document, a prompt) by reading it once in order
        with `eval --adapt`'s steps: seconds for a few pages, no training run; this one is unchanged."""
        check_value(SampleRequest, "prompt", text)
        if not text.strip():
            raise ConfigError("the text to adapt to is empty; give a document with some text in it")
        check_value(EvalRequest, "adapt_lr", lr)
        check_value(EvalRequest, "adapt_decay", decay)
        from textgen.training.adapt import Adaptation, adapted_to, read_from_the_start

        model, tokenizer, tokens = read_from_the_start(self.model, self.tokenizer, text, self.device)
        return TextGenerator(adapted_to(model, tokens, self.device, Adaptation(lr, decay)), tokenizer, self.device,
                             self.path, self.trained_on)

    def score_adapting(self, text: str, lr: float = ADAPT_LR, decay: float = ADAPT_DECAY) -> dict:
        """Bits per character of `text` read in order by the model adapting as it goes (`eval --adapt`),
        beside the model unchanged (`bits_per_char_static`) and the adapting model alone, unmixed
        (`bits_per_char_adapting`); this generator's model is unchanged."""
        check_value(EvalRequest, "text", text)
        check_value(EvalRequest, "adapt_lr", lr)
        check_value(EvalRequest, "adapt_decay", decay)
        from textgen.training.adapt import Adaptation, dynamic_evaluation, read_from_the_start

        model, _, tokens = read_from_the_start(self.model, self.tokenizer, text, self.device)
        return dynamic_evaluation(model, tokens, len(text), self.device, Adaptation(lr, decay))

    def chunks(self, prompt: str = "", config: SampleConfig | None = None, keep_text: bool = True,
               **settings: Any) -> Iterator[Chunk]:
        """Chunks of new text as they are generated, for each of `config.num_samples` continuations
        of `prompt`; a sample's last chunk carries the finished `Sample`. `settings` are fields of
        `SampleConfig` (length, temperature, top_k, ...), used when `config` is None."""
        config = config or sample_config(settings)
        check_value(SampleRequest, "prompt", prompt)
        return stream(self.model, self.tokenizer, prompt, config, self.device, keep_text=keep_text)

    def stream(self, prompt: str = "", **settings: Any) -> Iterator[str]:
        """The continuation of `prompt` (not included) in pieces, each as soon as it is generated;
        `settings` are fields of `SampleConfig` (length, temperature, top_k, seed, ...)."""
        config = one_sample(sample_config(settings), "stream", "chunks() streams several, each chunk naming its sample")
        for chunk in self.chunks(prompt, config, keep_text=False):
            yield chunk.text

    def generate(self, prompt: str = "", **settings: Any) -> str:
        """The continuation of `prompt` (not included); `settings` are fields of `SampleConfig`
        (length, temperature, top_k, top_p, stop, seed, beams, ...)."""
        config = one_sample(sample_config(settings), "generate", "samples() gives them all")
        check_value(SampleRequest, "prompt", prompt)
        return generate(self.model, self.tokenizer, prompt, config, self.device)[0].text

    def samples(self, prompt: str = "", **settings: Any) -> list[str]:
        """Every continuation of `prompt`, in order: `num_samples` of them (sample i drawn with seed + i),
        or one per label of `label`; `settings` as for `generate`."""
        config = sample_config(settings)
        check_value(SampleRequest, "prompt", prompt)
        return [sample.text for sample in generate(self.model, self.tokenizer, prompt, config, self.device)]

    def complete(self, prefix: str, top: int = 5, until: str = "word", label: str | None = None
                 ) -> list[Completion]:
        """The `top` most likely continuations of `prefix` up to the end of the next word (or, with
        `until="line"`, the line), most likely first, each with its probability; `label` steers
        a model trained with --condition."""
        CompleteRequest(prefix=prefix, top=top, until=until, label=label)  # checked as the command's flags are
        return complete(self.model, self.tokenizer, prefix, top, until, label=label, device=self.device)

    def score(self, text: str) -> dict:
        """Log-probability (nats) and bits per character of `text`, with its token and character counts."""
        check_value(EvalRequest, "text", text)
        return score(self.model, self.tokenizer, text, self.device)

    def evaluate(self, corpus: str | DataConfig, split: str = "test", batch_size: int = 16, seq_len: int = 256) -> dict:
        """Bits per character, perplexity and loss (nats per token) on `split` of `corpus` (a name,
        Hub id or path, or a `DataConfig`)."""
        from textgen.recipes.evaluate import evaluate_language_model

        for name, value in (("split", split), ("batch_size", batch_size), ("seq_len", seq_len)):
            check_value(EvalRequest, name, value)  # as `textgen eval` checks its flags
        data = corpus if isinstance(corpus, DataConfig) else DataConfig(corpus=corpus)
        return evaluate_language_model(self.model, data, split, self.device, batch_size, seq_len, self.tokenizer)


@dataclass
class Prediction:
    """A text's label: the most probable class, its probability, and every class's."""

    text: str
    label: str
    probability: float
    probabilities: dict[str, float]


class TextClassifier:
    """A classifier with its tokenizer, ready to label texts and to be scored on a labelled corpus;
    its encoder runs in `precision` (fp32, or bf16 where the hardware has it)."""

    def __init__(self, model: Classifier, tokenizer: Tokenizer, device: torch.device, path: str,
                 precision: str = "fp32"):
        self.model, self.tokenizer, self.device, self.path = model, tokenizer, device, path
        self.precision = precision

    @property
    def label_names(self) -> list[str]:
        """The class names, index = label id."""
        return list(self.model.config.label_names)

    def probabilities(self, texts: list[str], batch_size: int = 64, progress: Progress | None = None) -> np.ndarray:
        """Class probabilities (texts, classes), calibrated; `progress` is told the texts done batch by batch."""
        texts = checked_texts(texts)
        check_value(ClassifyRequest, "batch_size", batch_size)
        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return predict(self.model, self.tokenizer, texts, self.device, batch_size, precision=self.precision,
                       progress=progress)

    def probabilities_stream(self, texts: Iterable[str], batch_size: int = 64, progress: Progress | None = None
                             ) -> Iterator[tuple[list[str], np.ndarray]]:
        """(texts, probabilities) for consecutive groups of `texts`, each as soon as it is labelled:
        memory stays bounded however many texts the iterable yields."""
        check_value(ClassifyRequest, "batch_size", batch_size)
        return predict_stream(self.model, self.tokenizer, texts, self.device, batch_size, precision=self.precision,
                              progress=progress)

    def file_probabilities(self, path: str | Path, text_column: str | None = None, encoding: str = "utf-8",
                           batch_size: int = 64, progress: Progress | None = None
                           ) -> Iterator[tuple[list[str], np.ndarray]]:
        """`probabilities_stream` of the texts of a file: one per line, or a csv/jsonl/parquet column."""
        return self.probabilities_stream(read_texts(path, text_column, encoding), batch_size, progress)

    def predictions(self, texts: list[str], probabilities: np.ndarray) -> list[Prediction]:
        """`Prediction`s of `texts` from their `probabilities` (texts, classes)."""
        names = self.label_names
        return [Prediction(text, names[int(row.argmax())], float(row.max()), dict(zip(names, map(float, row))))
                for text, row in zip(texts, probabilities)]

    def classify(self, texts: str | list[str], batch_size: int = 64) -> list[Prediction]:
        """The label of each text (one text may be given alone), with its probability and every class's."""
        texts = checked_texts(texts)
        return self.predictions(texts, self.probabilities(texts, batch_size))

    def evaluate(self, corpus: str | DataConfig, split: str = "validation", batch_size: int = 64) -> dict:
        """Accuracy, macro-F1 and the confusion matrix on labelled `split` of `corpus` (a name, Hub
        id or path, or a `DataConfig`)."""
        from textgen.recipes.evaluate import evaluate_classifier

        for name, value in (("split", split), ("batch_size", batch_size)):
            check_value(ClassifyRequest, name, value)
        data = corpus if isinstance(corpus, DataConfig) else DataConfig(corpus=corpus)
        return evaluate_classifier(self.model, data, split, self.device, batch_size, self.tokenizer,
                                   precision=self.precision)


def load(model: str | Path = "shakespeare", device: str = "auto", kind: str | None = None,
         max_len: int | None = None, long_text: str | None = None, features: str | None = None,
         precision: str = "fp32") -> TextGenerator | TextClassifier:
    """A `TextGenerator` for a language model or a `TextClassifier` for a classifier: `model` is a
    bundled name (shakespeare, sentiment, reviews), a run folder (its best.pt) or a .pt file.
    `kind` ("language_model" or "classifier") refuses the other; `max_len` and `long_text`
    change how a classifier reads long texts, `features` (recurrent, ngram, both) what it labels
    with (default: as it was trained), `precision` (fp32, bf16, auto) its encoder's arithmetic."""
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(f"model must be a bundled name, a run folder or a .pt file, got {model!r}")
    for name, value in (("device", device), ("max_len", max_len), ("long_text", long_text),
                        ("features", features), ("precision", precision)):
        check_value(ClassifyRequest, name, value)  # the checks of `textgen classify`'s flags
    if kind not in (None, "language_model", "classifier"):
        raise ConfigError(f"kind {kind!r} is not one of: language_model, classifier (or None: either)")
    torch_device = resolve_device(device)
    loaded, tokenizer, payload = load_model(os.fspath(model), torch_device, kind, max_len, long_text, features)
    if isinstance(loaded, Classifier):
        return TextClassifier(loaded, tokenizer, torch_device, payload["path"],
                              resolve_precision(precision, torch_device))
    return TextGenerator(loaded, tokenizer, torch_device, payload["path"], payload.get("configs", {}).get("data"))


def sample_config(settings: dict[str, Any]) -> SampleConfig:
    """The sampling settings given by keyword, checked; an unknown name is one line that lists the known."""
    known = [spec.name for spec in dataclasses.fields(SampleConfig)]
    unknown = [name for name in settings if name not in known]
    if unknown:
        raise ConfigError(f"no sampling setting {unknown[0]!r}; the settings are: {', '.join(known)}")
    return SampleConfig(**settings)


def one_sample(config: SampleConfig, method: str, instead: str) -> SampleConfig:
    """`config`, when it asks for one sample: a method that gives one text never drops the others silently."""
    if config.num_samples > 1:
        raise ConfigError(f"{method}() gives one text, and these settings ask for {config.num_samples} samples "
                          f"(num_samples, or one per label); {instead}")
    return config


def checked_texts(texts: Any) -> list[str]:
    """Texts to classify as a list: one text alone, or any iterable of non-empty texts."""
    if isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, Iterable) or isinstance(texts, (bytes, dict)):
        raise ConfigError(f"texts must be a text or a list of texts, got {texts!r:.80}")
    texts = list(check_value(ClassifyRequest, "texts", list(texts)))
    if "" in texts:
        raise ConfigError(f"text {texts.index('') + 1} is empty; give each text some characters to classify")
    return texts


def models() -> dict[str, dict[str, Any]]:
    """The bundled models by name: kind, tokenizer, parameters, bytes on disk, corpus, and validation: the
    figures its card gives on each validation split for the weights as shipped."""
    found = {}
    for name, path in bundled_models().items():
        found[name] = {**describe_checkpoint(path), "bytes": path.stat().st_size}
        unit, figures = card_figures(path.with_suffix(".md"))
        validation = {split: value for split, value in figures.items() if split.endswith(" validation")}
        if validation:  # else the checkpoint's own figure, which describe_checkpoint gave
            found[name]["validation"] = shown_figures(unit, validation)
    return found


# The card's headline table, written by tools/build_models.py: "## Figures (UNIT)", then one row per split
# with the float32 run's figure and the shipped float16 weights' figure.
CARD_FIGURES = re.compile(r"^## Figures \((?P<unit>[^)]+)\)\n(?P<body>.*?)(?=^## |\Z)", re.S | re.M)


def card_figures(card: Path) -> tuple[str, dict[str, float]]:
    """The unit ("bits per character", "accuracy") and the shipped weights' figure on each split that a
    model card's Figures table gives ("tiny_shakespeare validation": 1.9628); no card: no figures."""
    match = CARD_FIGURES.search(card.read_text(encoding="utf-8")) if card.is_file() else None
    if match is None:
        return "", {}
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in match.group("body").splitlines() if line.startswith("|")]
    shipped = next(index for index, title in enumerate(rows[0]) if "shipped" in title)
    return match.group("unit"), {row[0]: float(row[shipped]) for row in rows[2:]}


def shown_figures(unit: str, figures: dict[str, float]) -> str:
    """`figures` by split as `textgen models` shows them: "83.8% rotten_tomatoes, 93.0% imdb (accuracy)"."""
    corpus = [split.removesuffix(" validation") for split in figures]
    if unit == "accuracy":
        return ", ".join(f"{value:.1%} {name}" for name, value in zip(corpus, figures.values())) + " (accuracy)"
    return ", ".join(f"{value:.3f} {name}" for name, value in zip(corpus, figures.values())) + " (bits/char)"


def logged_copy_checks(chunks, copies: CopyIndex):
    """`chunks` passed on unchanged; each finished sample's report (copies, repeats) is logged."""
    for chunk in chunks:
        yield chunk
        if chunk.sample is not None:
            log.info("sample report, sample %d: %s", chunk.index + 1, copies.check(chunk.sample.text).summary())
