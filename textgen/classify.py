"""Labelling texts with a trained classifier, and scoring its labels against the truth."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from textgen.batches import LabelledBatches
from textgen.errors import ConfigError, TextgenError
from textgen.model import Classifier
from textgen.tokenizer import Tokenizer


def text_pieces(tokenizer: Tokenizer, texts: list[str], max_len: int, long_text: str, offset: int = 0
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Token ids of each piece to classify, and which text each piece belongs to: one piece per
    text (whole or truncated), or consecutive max_len chunks whose probabilities are averaged."""
    pieces, owners = [], []
    for index, text in enumerate(texts):
        if not text.strip():
            # `offset`: texts before these (earlier groups of a stream), so the number is the user's
            raise TextgenError(f"text {offset + index + 1} is empty; give each text some characters to classify")
        ids = tokenizer.encode(text)
        if long_text == "chunk":
            chunks = [ids[start:start + max_len] for start in range(0, len(ids), max_len)]
        else:  # whole texts are read in chunks by the model itself
            chunks = [ids[:max_len] if long_text == "truncate" else ids]
        pieces.extend(chunks)
        owners.extend([index] * len(chunks))
    return pieces, np.asarray(owners, dtype=np.int64)


@torch.inference_mode()
def predict(model: Classifier, tokenizer: Tokenizer, texts: list[str], device: torch.device,
            batch_size: int = 64, offset: int = 0) -> np.ndarray:
    """Class probabilities (texts, classes); chunked texts average their chunks' probabilities."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    model.eval()
    pieces, owners = text_pieces(tokenizer, texts, model.config.max_len, model.config.long_text, offset)
    batches = LabelledBatches(pieces, np.zeros(len(pieces)), batch_size, tokenizer.pad_id, shuffle=False)
    sums = np.zeros((len(texts), len(model.config.label_names)))
    for rows, (ids, lengths, _) in zip(batches.batch_rows(0), batches.epoch(0)):
        np.add.at(sums, owners[rows], torch.softmax(model(ids.to(device), lengths).float(), dim=1).cpu().numpy())
    return sums / np.bincount(owners, minlength=len(texts))[:, None]


def predict_stream(model: Classifier, tokenizer: Tokenizer, texts: Iterable[str], device: torch.device,
                   batch_size: int = 64, group_batches: int = 16) -> Iterator[tuple[list[str], np.ndarray]]:
    """(texts, probabilities) for consecutive groups of `group_batches` batches of `texts`, each as
    soon as it is classified: memory stays bounded however many texts the iterable yields."""
    texts = iter(texts)
    done = 0
    while group := list(itertools.islice(texts, max(1, batch_size) * group_batches)):
        yield group, predict(model, tokenizer, group, device, batch_size, offset=done)
        done += len(group)


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
