"""Adapting as you read (dynamic evaluation, Krause et al. 2018): a text is read in order, one
segment at a time; each segment is scored first, then the model takes one gradient step on it,
pulled back a little toward its trained weights each time, so that what it learns of the names,
words and typing of this text helps on the rest, and nothing it knew is lost. Scoring before
learning keeps the figures honest: each token is predicted from what came before it only.

The step divides each gradient by the root of its running mean square (RMSprop, as the paper's
best rule), so one rate suits every layer; the running squares start from the first segment's.

Scoring, the prediction is a mixture of the adapting model's and the trained model's, with shares
that are learnt as it reads too: where a step led the adapting model astray, the trained model
still predicts, and the shares move toward whichever served the segments just scored. On
gutenberg's validation books this gained 0.002-0.009 bits per character over adapting alone
(docs/own-text.md).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from textgen.data.tokenizer import CharTokenizer, Tokenizer, encode_long, start_token
from textgen.metrics import bits_per_char
from textgen.nn.model import LanguageModel, detach_state, grow_vocabulary

log = logging.getLogger("textgen")


@dataclass
class Adaptation:
    """How a model adapts as it reads: tokens per step, the step size, the pull back to the trained
    weights per step, and how slowly the gradients' mean squares move."""

    lr: float
    decay: float
    segment: int = 64
    square_momentum: float = 0.99
    # the shares of the adapting and the trained model's predictions start at softmax(2, 0) = 0.88
    # and 0.12 and move this fast toward those that would have served each segment best
    mixing_rate: float = 3.0


def dynamic_evaluation(model: LanguageModel, tokens: np.ndarray, chars: int, device: torch.device,
                       adaptation: Adaptation) -> dict:
    """Bits per character of `tokens` (one stream, `chars` characters) read in order by `model`
    adapting as it goes, beside the same reading by the trained model unchanged (`static`). The
    model ends as it began: its trained weights are put back."""
    trained, was_training = [p.detach().clone() for p in model.parameters()], model.training
    try:
        nats = _read(model, tokens, device, adaptation, copy.deepcopy(model).eval())
    finally:
        with torch.no_grad():
            for parameter, weights in zip(model.parameters(), trained):
                parameter.copy_(weights)
        model.train(was_training)
    scored = len(tokens) - 1
    return {"bits_per_char": bits_per_char(nats.mixed / scored, chars / scored),
            "bits_per_char_static": bits_per_char(nats.static / scored, chars / scored),
            "bits_per_char_adapting": bits_per_char(nats.adapting / scored, chars / scored),
            "trained_share": round(float(nats.shares.softmax(0)[1]), 4),
            "tokens": scored, "segment": adaptation.segment, "lr": adaptation.lr, "decay": adaptation.decay}


def adapted_to(model: LanguageModel, tokens: np.ndarray, device: torch.device, adaptation: Adaptation
               ) -> LanguageModel:
    """A copy of `model` that has read `tokens` once, in order, adapting as `dynamic_evaluation`
    does: a model fitted to one document in seconds, with no training run (`model` is unchanged)."""
    adapted = copy.deepcopy(model)
    _read(adapted, tokens, device, adaptation)
    return adapted.eval()


def with_characters_of(model: LanguageModel, tokenizer: Tokenizer, texts: Iterable[str], device: torch.device
                       ) -> tuple[LanguageModel, Tokenizer]:
    """`model` and `tokenizer` with a row for each character of `texts` a character model has never
    seen, started as in fine-tuning (an average character), so that reading can teach it them."""
    if tokenizer.kind != "char":
        return model, tokenizer
    grown = tokenizer.extended(CharTokenizer.from_texts(texts).chars)
    if grown.vocab_size == tokenizer.vocab_size:
        return model, tokenizer
    log.info("%d characters the model has never seen get rows of an average character (%s)",
             grown.vocab_size - tokenizer.vocab_size, ", ".join(map(repr, grown.chars[len(tokenizer.chars):][:5])))
    config = dataclasses.replace(model.config, vocab_size=grown.vocab_size)
    return grow_vocabulary(model, config).to(device), grown


def read_from_the_start(model: LanguageModel, tokenizer: Tokenizer, text: str, device: torch.device
                        ) -> tuple[LanguageModel, Tokenizer, np.ndarray]:
    """`with_characters_of(text)`, and the ids that read `text` from the start token, so that its
    first character is predicted too, as `score` predicts it."""
    model, tokenizer = with_characters_of(model, tokenizer, [text], device)
    return model, tokenizer, np.asarray([start_token(tokenizer), *encode_long(tokenizer, text)])


@dataclass
class _Nats:
    """What a reading paid: the adapting model alone, the trained model unchanged, and their mixture
    (with the share logits it ended with)."""

    adapting: float = 0.0
    static: float = 0.0
    mixed: float = 0.0
    shares: torch.Tensor = dataclasses.field(default_factory=lambda: torch.tensor([2.0, 0.0]))


def _read(model: LanguageModel, tokens: np.ndarray, device: torch.device, adaptation: Adaptation,
          static: LanguageModel | None = None) -> _Nats:
    """Read `tokens` in order with `model`, one step after each segment (the model changes in
    place); the nats it paid, scored before each step, and, given `static` (the trained model
    unchanged), those it paid and those of the two mixed."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    parameters = list(model.parameters())
    trained = [p.detach().clone() for p in parameters]
    squares: list[torch.Tensor] | None = None
    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device)
    nats = _Nats()
    state = static_state = None
    model.eval()  # no dropout: adapting is learning from the text, not regularised training
    for start in range(0, len(ids) - 1, adaptation.segment):
        targets = ids[start + 1:start + adaptation.segment + 1]
        inputs = ids[start:start + len(targets)][None]
        with torch.enable_grad():
            logits, state = model(inputs, state)
            losses = F.cross_entropy(logits[0].float(), targets, reduction="none")
        nats.adapting += losses.sum().item()  # scored before the step it leads to
        if static is not None:
            with torch.no_grad():  # the trained weights' reading of the same segment
                static_logits, static_state = static(inputs, static_state)
                static_losses = F.cross_entropy(static_logits[0].float(), targets, reduction="none")
            nats.static += static_losses.sum().item()
            _mix(nats, -torch.stack([losses.detach(), static_losses]), adaptation.mixing_rate)
        gradients = torch.autograd.grad(losses.mean(), parameters, allow_unused=True)
        squares = _step(parameters, trained, gradients, squares, adaptation)
        state = detach_state(state)
    return nats


def _mix(nats: _Nats, log_probs: torch.Tensor, rate: float) -> None:
    """Score one segment by the mixture of the models whose log-probabilities of each target are
    the rows of `log_probs`, at the shares learnt so far; then move the shares toward each model's
    mean posterior over the segment (the gradient of its mean log-likelihood in the share logits)."""
    log_shares = nats.shares.to(log_probs.device).log_softmax(0)
    joint = log_probs + log_shares[:, None]
    mixed = joint.logsumexp(0)
    nats.mixed -= mixed.sum().item()
    nats.shares = nats.shares + rate * ((joint - mixed).exp().mean(1) - log_shares.exp())


@torch.no_grad()
def _step(parameters: list[torch.Tensor], trained: list[torch.Tensor], gradients: tuple,
          squares: list[torch.Tensor] | None, adaptation: Adaptation) -> list[torch.Tensor]:
    """One RMS-scaled step down `gradients`, then a pull of `decay` back toward `trained`; the
    running mean squares after it."""
    gradients = [torch.zeros_like(p) if g is None else g.float() for p, g in zip(parameters, gradients)]
    if squares is None:
        squares = [g * g for g in gradients]
    else:
        beta = adaptation.square_momentum
        squares = [beta * s + (1 - beta) * g * g for s, g in zip(squares, gradients)]
    for parameter, gradient, square, weights in zip(parameters, gradients, squares, trained):
        step = adaptation.lr * gradient / (square.sqrt() + 1e-8)
        parameter.sub_(step.to(parameter.dtype))
        parameter.add_(adaptation.decay * (weights - parameter))
    return squares
