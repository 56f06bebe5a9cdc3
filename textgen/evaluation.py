"""What a model scores on data, computed without changing anything.

Language models: bits per character (with bits per token and perplexity) over a split, or of one
text. Classifiers: validation loss and accuracy over batches, and accuracy, macro-F1 and the
confusion matrix over a labelled split. Every function here returns numbers and leaves the model
(its mode included), the data and any training state as it found them; training policy that
follows an evaluation (unfreezing, patience) belongs to the loop that calls it.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textgen.batches import StreamBatches, label_array, token_array
from textgen.checkpoint import load_classifier, load_language_model
from textgen.classify import Progress, predict
from textgen.config import DataConfig
from textgen.corpus import count_chars, load_corpus
from textgen.distributed import Distributed
from textgen.errors import ConfigError, TextgenError
from textgen.model import Classifier, LanguageModel, resolve_device
from textgen.precision import resolve_precision
from textgen.sampling import encode_text, start_token
from textgen.tokenizer import Tokenizer

log = logging.getLogger("textgen")

LN2 = math.log(2.0)


def bits_per_char(nats: float, chars: float) -> float:
    """Bits per character of a loss of `nats` over `chars` characters (or nats per token over
    characters per token): the one unit in which textgen reports a language model's loss."""
    return nats / LN2 / chars


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def language_model_metrics(model: nn.Module, streams: StreamBatches, chars_per_token: float, device: torch.device,
                           dist: Distributed | None = None, max_windows: int | None = None,
                           with_labels: bool = False) -> dict[str, float]:
    """Loss (nats per token), bits per token and character, and perplexity over `streams`'
    evaluation windows (at most `max_windows`; None: all), summed over the ranks of `dist`; a
    conditioned model reads the streams' labels `with_labels`, else none."""
    total_loss, total_tokens, state = 0.0, 0, None
    labels = streams.evaluation_labels() if with_labels else itertools.repeat(None)
    with _evaluating(model):
        windows = itertools.islice(streams.evaluation_windows(), max_windows)
        for (inputs, targets), window_labels in zip(windows, labels):
            inputs, targets = inputs.to(device), targets.to(device)
            window_labels = None if window_labels is None else window_labels.to(device)
            logits, state = model(inputs, state, window_labels)
            total_loss += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum").item()
            total_tokens += targets.numel()
    total_loss, total_tokens = (dist or Distributed()).sum([total_loss, float(total_tokens)], device)
    loss = total_loss / total_tokens
    return {"val_loss": loss, "bits_per_token": loss / LN2, "bits_per_char": bits_per_char(loss, chars_per_token),
            "perplexity": math.exp(min(loss, 50.0)), "val_tokens": total_tokens}


def evaluate_language_model(model: str | LanguageModel, data: DataConfig, split: str = "test",
                            device: str | torch.device = "auto", batch_size: int = 16, seq_len: int = 256,
                            tokenizer: Tokenizer | None = None) -> dict:
    """Bits per character, perplexity and loss (nats per token) of language model `model` (run
    folder, .pt or bundled name; or a loaded model with its `tokenizer`) on `split` of the corpus
    `data` names, with its token count."""
    torch_device = _device(device)
    language_model = model
    if tokenizer is None:
        language_model, tokenizer, _ = load_language_model(model, torch_device)
    config = language_model.config
    corpus = load_corpus(data, task="lm", condition=config.condition if config.label_names else None)
    if split not in corpus.splits:
        raise TextgenError(f"--split {split} is not in {corpus.name}; it has: {', '.join(corpus.splits)}")
    tokens = token_array(corpus, split, tokenizer)
    labels = None
    if config.label_names:
        if list(corpus.label_names) != list(config.label_names):
            raise TextgenError(f"{corpus.name}'s labels ({', '.join(corpus.label_names)}) are not the model's "
                               f"({', '.join(config.label_names)}); score it on a corpus with the same labels")
        labels = label_array(corpus, split, tokenizer)
    seq_len = max(1, min(seq_len, len(tokens) - 1))
    streams = StreamBatches(tokens, max(1, min(batch_size, (len(tokens) - 1) // seq_len)), seq_len, labels=labels)
    chars_per_token = count_chars(corpus, split) / len(tokens)
    metrics = language_model_metrics(language_model, streams, chars_per_token, torch_device)
    result = {"corpus": corpus.name, "split": split, "loss": metrics["val_loss"],
              "bits_per_char": metrics["bits_per_char"], "perplexity": metrics["perplexity"],
              "tokens": int(metrics["val_tokens"])}
    if labels is not None:
        # what the label tells the model: the same text scored with each row's true label
        labelled = language_model_metrics(language_model, streams, chars_per_token, torch_device, with_labels=True)
        result["bits_per_char_with_label"] = labelled["bits_per_char"]
    return result


@torch.inference_mode()
def score(model: LanguageModel, tokenizer: Tokenizer, text: str, device: str | torch.device = "cpu") -> dict:
    """Log-probability (nats) of `text` under the model from its start, with bits per character,
    token and character counts. The first token is predicted from the same priming as generation."""
    if not text:
        raise TextgenError("the text to score is empty; give at least one character")
    ids = encode_text(tokenizer, text, what="text")
    inputs = torch.tensor([[start_token(tokenizer), *ids[:-1]]], device=device)
    logits, _ = model(inputs)
    targets = torch.tensor(ids, device=device)
    log_prob = logits[0].float().log_softmax(-1).gather(-1, targets[:, None]).sum().item()
    return {"log_prob": log_prob, "bits_per_char": bits_per_char(-log_prob, len(text)),
            "tokens": len(ids), "chars": len(text)}


def score_text(model: str, text: str, device: str | torch.device = "auto") -> dict:
    """`score` of `text` under language model `model` (run folder, .pt or bundled name)."""
    torch_device = _device(device)
    language_model, tokenizer, _ = load_language_model(model, torch_device)
    return score(language_model, tokenizer, text, torch_device)


@torch.no_grad()
def classifier_metrics(model: Classifier, batches: list, device: torch.device,
                       dist: Distributed | None = None) -> dict[str, float]:
    """Validation loss (nats per text), accuracy and example count over padded `batches`
    (ids, lengths, labels), summed over the ranks of `dist`."""
    total_loss, correct, count = 0.0, 0, 0
    with _evaluating(model):
        for ids, lengths, labels in batches:
            logits = model(ids.to(device), lengths).float()
            labels = labels.to(device)
            total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += len(labels)
    total_loss, correct, count = (dist or Distributed()).sum([total_loss, float(correct), float(count)], device)
    return {"val_loss": total_loss / count, "accuracy": correct / count, "val_examples": count}


def match_labels(corpus_names: list[str], classifier_names: list[str]) -> tuple[np.ndarray, str | None]:
    """For each label id of a corpus, the classifier's label id, and a note when the match is by
    position: string labels match by name; integer labels 0..n-1 match the classifier's names in order."""
    if all(name in classifier_names for name in corpus_names):
        return np.array([classifier_names.index(name) for name in corpus_names], dtype=np.int64), None
    if all(name.isdigit() and int(name) < len(classifier_names) for name in corpus_names):
        ids = [int(name) for name in corpus_names]
        pairs = ", ".join(f"{label} = {classifier_names[label]}" for label in sorted(ids))
        return np.array(ids, dtype=np.int64), f"integer labels taken by position as the classifier's: {pairs}"
    raise TextgenError(f"labels ({', '.join(corpus_names)}) are not the classifier's ({', '.join(classifier_names)}); "
                       f"name them as the classifier does, or use integer labels 0..{len(classifier_names) - 1} "
                       f"in that order")


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: how far confidence is from accuracy, averaged over `bins` equal-width confidence bins
    weighted by how many texts fall in each (Guo et al. 2017); 0 is perfectly calibrated."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    where = np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True)  # bin (lower, upper]
    gaps = [abs(correct[where == b].mean() - confidence[where == b].mean()) * np.count_nonzero(where == b)
            for b in range(bins) if np.any(where == b)]
    return float(sum(gaps) / max(len(labels), 1))


def classification_metrics(labels: np.ndarray, predicted: np.ndarray, label_names: list[str]) -> dict:
    """Accuracy, macro-F1 and the confusion matrix (rows: true label, columns: predicted)."""
    classes = len(label_names)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_positives = np.diag(confusion).astype(float)
    precision = true_positives / np.maximum(confusion.sum(axis=0), 1)
    recall = true_positives / np.maximum(confusion.sum(axis=1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"accuracy": float(true_positives.sum() / max(len(labels), 1)), "macro_f1": float(f1.mean()),
            "examples": int(len(labels)), "labels": list(label_names), "confusion": confusion.tolist()}


def evaluate_classifier(model: str | Classifier, data: DataConfig, split: str = "validation",
                        device: str | torch.device = "auto", batch_size: int = 64, tokenizer: Tokenizer | None = None,
                        max_len: int | None = None, long_text: str | None = None, features: str | None = None,
                        precision: str = "fp32", progress: Callable[[int], Progress] | None = None) -> dict:
    """Accuracy, macro-F1, the confusion matrix and the expected calibration error (15 bins) of
    classifier `model` (run folder, .pt or bundled name, read with `max_len`, `long_text` and
    `features` as `checkpoint.load_model` says; or a loaded classifier with its `tokenizer`) on
    labelled `split` of the corpus `data` names, and how many texts it labelled per second.
    `precision` (fp32, bf16, auto) is the encoder's arithmetic.
    `progress`, given the number of texts, returns what to tell as they are labelled."""
    torch_device = _device(device)
    if tokenizer is None:
        model, tokenizer, _ = load_classifier(model, torch_device, max_len, long_text, features)
    names = list(model.config.label_names)
    corpus = load_corpus(data, task="classify", evaluate=split)
    if split not in corpus.splits:
        raise ConfigError(f"--split {split} is not in {corpus.name}, or has no labels; it has: "
                          f"{', '.join(corpus.splits)}")
    to_classifier, note = match_labels(list(corpus.label_names), names)
    if note:
        log.info("%s", note)
    rows = corpus.splits[split]
    texts = list(rows[corpus.text_column])
    started = time.perf_counter()
    probabilities = predict(model, tokenizer, texts, torch_device, batch_size,
                            precision=resolve_precision(precision, torch_device),
                            progress=progress(len(texts)) if progress else None)
    seconds = time.perf_counter() - started
    labels = to_classifier[np.asarray(rows[corpus.label_column])]
    return {"corpus": corpus.name, "split": split, "features": model.config.features,
            **classification_metrics(labels, probabilities.argmax(1), names),
            "ece": expected_calibration_error(probabilities, labels), "seconds": round(seconds, 3),
            "texts_per_second": round(len(texts) / max(seconds, 1e-9), 1)}
