"""What the loop trains: a task owns its batches, its loss, its evaluation and the training policy
that follows an evaluation, for language modelling (TBPTT streams, state carried between windows)
and classification (ULMFiT's gradual unfreezing, discriminative learning rates, early stopping)."""

from __future__ import annotations

import math

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from textgen.data.batches import LabelledBatches, StreamBatches
from textgen.config import FinetuneConfig, TrainConfig
from textgen.metrics import bits_per_char
from textgen.training.distributed import Distributed
from textgen.training.validation import classifier_metrics, language_model_metrics
from textgen.nn.model import State, detach_state
from textgen.nn.precision import autocast


class LanguageModelTask:
    """Next-token prediction over TBPTT streams, with the hidden state carried between windows."""

    kind = "language_model"
    loss_unit = "nats per token"  # metrics.jsonl's losses; screens show bits per character

    def __init__(self, train: StreamBatches, validation: StreamBatches, chars_per_token: float,
                 eval_tokens: int | None = None, label_dropout: float = 0.0, patience: int = 0):
        self.train, self.validation = train, validation
        # early stopping: evaluations in a row without a lower validation loss (0: never stop)
        self.patience, self.stale_evaluations, self.best_loss = patience, 0, math.inf
        self.chars_per_token = chars_per_token
        self.label_dropout = label_dropout  # the share of rows of each window that read "no label"
        # None: the whole split; else at most this many full windows
        self.eval_windows = None if eval_tokens is None else max(1, eval_tokens // validation.tokens_per_window)
        self.window = 0
        self.state: State | None = None
        self.lr_scales = [1.0, 1.0]  # one per parameter group

    def loss_record(self, loss: float) -> dict[str, Any]:
        """A training loss as metrics.jsonl records it: in its unit, and in bits per character."""
        return {"loss": loss, "loss_unit": self.loss_unit, "bits_per_char": bits_per_char(loss, self.chars_per_token)}

    def train_loss(self, model: nn.Module, device: torch.device, precision: str
                   ) -> tuple[torch.Tensor, int]:
        """Mean loss on the next window (and its token count); moves the data position on."""
        index = self.window % self.train.windows_per_epoch
        if index == 0:
            self.state = None  # a new epoch starts the streams again from their beginnings
        inputs, targets = (t.to(device, non_blocking=True) for t in self.train.window(index))
        labels = None
        if self.train.labels is not None:
            labels = self.train.window_labels(index)
            withheld = torch.rand(len(labels)) < self.label_dropout  # whole rows of the window
            labels = labels.masked_fill(withheld[:, None], 0).to(device, non_blocking=True)
        with autocast(precision, device):
            logits, state = model(inputs, self.state, labels)
        self.state = detach_state(state)
        self.window += 1
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        return loss, targets.numel()

    def evaluate(self, model: nn.Module, device: torch.device, dist: Distributed) -> dict[str, float]:
        """Validation loss (nats per token), bits per token and character, and perplexity; for a
        model conditioned on labels, with the true labels, and bits per character without them."""
        metrics = language_model_metrics(model, self.validation, self.chars_per_token, device, dist,
                                         self.eval_windows, with_labels=self.validation.labels is not None)
        if self.validation.labels is not None:
            withheld = language_model_metrics(model, self.validation, self.chars_per_token, device, dist,
                                              self.eval_windows)
            metrics["bits_per_char_no_label"] = withheld["bits_per_char"]
        return metrics

    def after_evaluation(self, metrics: dict[str, float]) -> dict[str, float]:
        """Counts the evaluations since the validation loss last improved, for early stopping."""
        if metrics["val_loss"] < self.best_loss:
            self.best_loss, self.stale_evaluations = metrics["val_loss"], 0
        else:
            self.stale_evaluations += 1
        return {"stale_evaluations": self.stale_evaluations} if self.patience else {}

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.stale_evaluations >= self.patience

    @staticmethod
    def objective(metrics: dict[str, float]) -> float:
        """Lower is better: the validation loss."""
        return metrics["val_loss"]

    def parameter_groups(self, model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        """AdamW groups: weight decay on matrices only, not on biases."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]

    def state_dict(self) -> dict[str, Any]:
        """The data position and carried hidden state, so a resumed run continues exactly."""
        state = self.state
        return {"window": self.window, "stale_evaluations": self.stale_evaluations, "best_loss": self.best_loss,
                "hidden": None if state is None else [s.cpu() for s in (state if isinstance(state, tuple) else (state,))]}

    def load_state_dict(self, data: dict[str, Any], device: torch.device) -> None:
        self.window = data["window"]
        # runs saved before early stopping for language models hold no counters
        self.stale_evaluations, self.best_loss = data.get("stale_evaluations", 0), data.get("best_loss", math.inf)
        hidden = data["hidden"]
        if hidden is None:
            self.state = None
        else:
            hidden = [h.to(device) for h in hidden]
            self.state = tuple(hidden) if len(hidden) == 2 else hidden[0]


class ClassificationTask:
    """Labelled texts through a classifier; ULMFiT's gradual unfreezing and discriminative
    learning rates when the encoder comes from a language model; early stopping on accuracy."""

    kind = "classifier"
    loss_unit = "nats per text"

    def __init__(self, train: LabelledBatches, validation: LabelledBatches, finetune: FinetuneConfig,
                 group_count: int, pretrained: bool, dist: Distributed):
        self.train, self.validation, self.finetune = train, validation, finetune
        self.group_count, self.pretrained, self.dist = group_count, pretrained, dist
        self.epoch, self.batch_index, self._epoch_batches = 0, 0, None
        self.evaluations, self.stale_evaluations, self.best_accuracy = 0, 0, -1.0
        # A pretrained encoder starts frozen but for the head, then thaws one group per interval.
        gradual = pretrained and finetune.unfreeze_every > 0
        self.unfrozen = 1 if gradual else group_count

    def loss_record(self, loss: float) -> dict[str, Any]:
        """A training loss as metrics.jsonl records it, with its unit."""
        return {"loss": loss, "loss_unit": self.loss_unit}

    @property
    def lr_scales(self) -> list[float]:
        """Per group, bottom up: lr / decay ** depth from the top (pretrained only); 0 while frozen."""
        decay = self.finetune.layer_lr_decay if self.pretrained else 1.0
        return [0.0 if depth >= self.unfrozen else decay ** -depth
                for depth in reversed(range(self.group_count))]

    @property
    def should_stop(self) -> bool:
        return bool(self.finetune.patience) and self.stale_evaluations >= self.finetune.patience

    def parameter_groups(self, model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        """One AdamW group per layer group of the classifier, bottom up."""
        return [{"params": params, "weight_decay": config.weight_decay} for params in model.layer_groups()]

    def _batches(self, batches: LabelledBatches, epoch: int) -> list:
        return batches.epoch(epoch)[self.dist.rank::self.dist.world_size]

    def train_loss(self, model: nn.Module, device: torch.device, precision: str) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy on the next batch (and its token count)."""
        if self._epoch_batches is None or self.batch_index >= len(self._epoch_batches):
            if self._epoch_batches is not None:
                self.epoch, self.batch_index = self.epoch + 1, 0
            self._epoch_batches = self._batches(self.train, self.epoch)
        ids, lengths, labels = self._epoch_batches[self.batch_index]
        self.batch_index += 1
        with autocast(precision, device):
            logits = model(ids.to(device), lengths)
        return F.cross_entropy(logits.float(), labels.to(device)), int(lengths.sum())

    def evaluate(self, model: nn.Module, device: torch.device, dist: Distributed) -> dict[str, float]:
        """Validation loss and accuracy; changes nothing (the loop then calls `after_evaluation`)."""
        return classifier_metrics(model, self._batches(self.validation, 0), device, dist)

    def after_evaluation(self, metrics: dict[str, float]) -> dict[str, float]:
        """Counts the evaluation for early stopping and unfreezing; returns the groups now unfrozen."""
        self.evaluations += 1
        if metrics["accuracy"] > self.best_accuracy:
            self.best_accuracy, self.stale_evaluations = metrics["accuracy"], 0
        else:
            self.stale_evaluations += 1
        if self.finetune.unfreeze_every and self.evaluations % self.finetune.unfreeze_every == 0:
            self.unfrozen = min(self.group_count, self.unfrozen + 1)
        return {"unfrozen_groups": self.unfrozen}

    @staticmethod
    def objective(metrics: dict[str, float]) -> float:
        """Lower is better: minus the validation accuracy."""
        return -metrics["accuracy"]

    def state_dict(self) -> dict[str, Any]:
        """Data position, unfreezing and early-stopping counters."""
        return {"epoch": self.epoch, "batch_index": self.batch_index, "evaluations": self.evaluations,
                "stale_evaluations": self.stale_evaluations, "best_accuracy": self.best_accuracy,
                "unfrozen": self.unfrozen, "started": self._epoch_batches is not None}

    def load_state_dict(self, data: dict[str, Any], device: torch.device) -> None:
        self.epoch, self.batch_index = data["epoch"], data["batch_index"]
        self.evaluations, self.stale_evaluations = data["evaluations"], data["stale_evaluations"]
        self.best_accuracy, self.unfrozen = data["best_accuracy"], data["unfrozen"]
        self._epoch_batches = self._batches(self.train, self.epoch) if data["started"] else None
