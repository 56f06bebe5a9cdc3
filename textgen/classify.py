"""Labelling texts with a trained classifier, and scoring its labels against the truth."""

from __future__ import annotations

import numpy as np
import torch

from textgen.batches import LabelledBatches
from textgen.errors import TextgenError
from textgen.model import Classifier
from textgen.tokenizer import Tokenizer


def text_pieces(tokenizer: Tokenizer, texts: list[str], max_len: int, long_text: str
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Token ids of each piece to classify, and which text each piece belongs to: one piece per
    text when truncating, consecutive max_len chunks when chunking."""
    pieces, owners = [], []
    for index, text in enumerate(texts):
        if not text.strip():
            raise TextgenError(f"text {index + 1} is empty; give each text some characters to classify")
        ids = tokenizer.encode(text)
        chunks = [ids[:max_len]] if long_text == "truncate" else \
            [ids[start:start + max_len] for start in range(0, len(ids), max_len)]
        pieces.extend(chunks)
        owners.extend([index] * len(chunks))
    return pieces, np.asarray(owners, dtype=np.int64)


@torch.inference_mode()
def predict(model: Classifier, tokenizer: Tokenizer, texts: list[str], device: torch.device,
            batch_size: int = 64) -> np.ndarray:
    """Class probabilities (texts, classes); chunked texts average their chunks' probabilities."""
    model.eval()
    pieces, owners = text_pieces(tokenizer, texts, model.config.max_len, model.config.long_text)
    batches = LabelledBatches(pieces, np.zeros(len(pieces)), batch_size, tokenizer.pad_id, shuffle=False)
    piece_probabilities = [torch.softmax(model(ids.to(device), lengths).float(), dim=1).cpu().numpy()
                           for ids, lengths, _ in batches.epoch(0)]
    sums = np.zeros((len(texts), len(model.config.label_names)))
    np.add.at(sums, owners, np.concatenate(piece_probabilities))
    return sums / np.bincount(owners, minlength=len(texts))[:, None]


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
