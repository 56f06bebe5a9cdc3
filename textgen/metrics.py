"""Pure metrics: bits per character, accuracy and macro-F1, calibration, and matching label names.

Numbers in, numbers out: training, classification and the workflows all import this module, and it
imports none of them (nor torch).
"""

from __future__ import annotations

import math

import numpy as np

from textgen.errors import TextgenError

LN2 = math.log(2.0)


def bits_per_char(nats: float, chars: float) -> float:
    """Bits per character of a loss of `nats` over `chars` characters (or nats per token over
    characters per token): the one unit in which textgen reports a language model's loss."""
    return nats / LN2 / chars


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
