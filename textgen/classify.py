"""Labelling texts with a trained classifier (scoring the labels against the truth is `evaluation`'s)."""

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
