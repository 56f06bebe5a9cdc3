"""A model's loss and accuracy on validation batches, computed without changing it: what training
evaluates between steps. Each function leaves the model (its mode included) as it found it;
policy that follows an evaluation (unfreezing, patience) belongs to the loop that calls it."""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from textgen.data.batches import StreamBatches
from textgen.metrics import LN2, bits_per_char
from textgen.nn.model import Classifier
from textgen.training.distributed import Distributed


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
