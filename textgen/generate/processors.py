"""Decoding controls: each is a small callable `(ids, scores) -> scores` over the token history
`ids` (batch, seq) and next-token `scores` (batch, vocab); a list of them composes (as in Hugging
Face's `logits_process`), and each is tested alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from textgen.config import SampleConfig

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NEG_INF = float("-inf")


def _exclusive_cumsum(values: torch.Tensor) -> torch.Tensor:
    """Along the last dim, the sum of the entries before each one (no subtraction, so no rounding)."""
    return F.pad(values.cumsum(-1)[..., :-1], (1, 0))


def _drop_sorted(scores: torch.Tensor, order: torch.Tensor, drop_sorted: torch.Tensor) -> torch.Tensor:
    """`scores` with -inf where `drop_sorted` (given in the order `order`) is true; the first in that
    order always survives (a p of 1e-50 is 0 in float32, and would otherwise drop every token)."""
    drop_sorted[..., 0] = False
    return scores.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


@dataclass(frozen=True)
class Temperature:
    """Scores divided by the temperature: below 1 sharpens the distribution, above 1 flattens it."""

    temperature: float

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


@dataclass(frozen=True)
class TopK:
    """Only the k highest scores survive (exactly k, ties broken by position)."""

    k: int

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.k >= scores.size(-1):
            return scores
        kept = scores.topk(self.k, dim=-1).indices
        return torch.full_like(scores, NEG_INF).scatter(-1, kept, scores.gather(-1, kept))


@dataclass(frozen=True)
class TopP:
    """Nucleus: the smallest set of most likely tokens whose probability reaches p survives."""

    p: float

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_scores, order = scores.sort(-1, descending=True)
        # a token is dropped when the more likely tokens before it already hold p
        return _drop_sorted(scores, order, _exclusive_cumsum(sorted_scores.softmax(-1)) >= self.p)


@dataclass(frozen=True)
class MinP:
    """Tokens less likely than min_p times the most likely token are dropped."""

    min_p: float

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(-1)
        return scores.masked_fill(probs < self.min_p * probs.amax(-1, keepdim=True), NEG_INF)


@dataclass(frozen=True)
class TypicalP:
    """Locally typical sampling: the tokens whose surprise is closest to the entropy, up to mass p."""

    p: float

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        log_probs = scores.log_softmax(-1)
        probs = log_probs.exp()
        entropy = -(log_probs * probs).nansum(-1, keepdim=True)
        _, order = (-log_probs - entropy).abs().sort(-1)
        return _drop_sorted(scores, order, _exclusive_cumsum(probs.gather(-1, order)) >= self.p)


@dataclass(frozen=True)
class RepetitionPenalty:
    """Tokens among the last `window` of the history: positive scores divided, negative multiplied."""

    penalty: float
    window: int

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        recent = ids[:, -self.window:]
        chosen = scores.gather(-1, recent)
        chosen = torch.where(chosen > 0, chosen / self.penalty, chosen * self.penalty)
        return scores.scatter(-1, recent, chosen)


@dataclass(frozen=True)
class NoRepeatNGram:
    """Tokens that would complete an n-gram already in the history are banned (a vectorised scan of
    the whole history each step: the one control whose cost grows with the text)."""

    n: int

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if ids.size(1) < self.n:
            return scores
        ngrams = ids.unfold(1, self.n, 1)  # (batch, count, n)
        prefix = ids[:, ids.size(1) - self.n + 1:]  # (batch, n - 1): the n-gram being started now
        matches = (ngrams[:, :, :-1] == prefix[:, None, :]).all(-1)
        hits = torch.zeros_like(scores).scatter_add_(-1, ngrams[:, :, -1], matches.to(scores.dtype))
        return scores.masked_fill(hits > 0, NEG_INF)


def extends_repeat(ids: torch.Tensor, tokens: torch.Tensor, span: int, window: int) -> torch.Tensor:
    """(batch,) bool: whether each row's next token `tokens` (batch,) would end a span of `span` (2 or
    more) tokens, itself and those before it, that occurs already, ending at one of the last `window`
    tokens of `ids` (batch, seq). Only the places where that token stands are compared."""
    context = span - 1
    recent = ids[:, -(window + context):]
    if recent.size(1) <= context:  # no token before the last `context` to follow them
        return torch.zeros(ids.size(0), dtype=torch.bool, device=ids.device)
    rows, places = (recent[:, context:] == tokens[:, None]).nonzero(as_tuple=True)  # where the token stood
    earlier = recent[:, :-1].unfold(1, context, 1)[rows, places]  # (hits, context): the span before each
    matched = (earlier == recent[rows, -context:]).all(-1)
    return torch.zeros(ids.size(0), dtype=torch.bool, device=ids.device).index_fill_(0, rows[matched], True)


# the guard's reach, in tokens: a real text repeats a line of code or a refrain, a loop goes on; on
# held-out code, verse and short lines these cost at most 0.01 bits per character (docs/sampling.md)
GUARD_SPAN, GUARD_WINDOW = 24, 2048


@dataclass(frozen=True)
class RepeatGuard:
    """A token that would extend a span of `span` tokens or more already among the last `window`
    keeps at most 1 - `strength` of the probability (`strength` up to 0.5, so at most one token is
    capped), the rest going to the others in proportion: a text may repeat itself, but a loop ends
    within a few dozen tokens. Placed after the temperature, it caps what is sampled from."""

    strength: float
    span: int = GUARD_SPAN
    window: int = GUARD_WINDOW

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        best, token = scores.max(-1)  # only the likeliest token can hold more than half
        confident = best - scores.logsumexp(-1) > math.log1p(-self.strength)  # (batch,)
        if ids.size(1) < self.span or not confident.any():  # most steps end here, at a few operations
            return scores
        capped = confident & extends_repeat(ids, token, self.span, self.window)
        if not capped.any():
            return scores
        rest = scores.scatter(-1, token[:, None], NEG_INF).logsumexp(-1)  # the others' total
        # the score that gives the token exactly 1 - strength of the probability
        limit = rest + math.log((1 - self.strength) / self.strength)
        return scores.scatter(-1, token[:, None], torch.where(capped & rest.isfinite(), limit, best)[:, None])


@dataclass(frozen=True)
class SuppressTokens:
    """The given token ids are never chosen."""

    token_ids: tuple[int, ...]
    _index: dict = field(default_factory=dict, compare=False, repr=False)  # device -> ids, made once

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        index = self._index.get(scores.device)
        if index is None:
            index = self._index[scores.device] = torch.tensor(self.token_ids, device=scores.device)
        return scores.index_fill(-1, index, NEG_INF)


def build_processors(config: SampleConfig) -> list[Processor]:
    """The processors `config` asks for, in the order they apply: penalties first, then the warpers
    (the repeat guard first among them)."""
    processors: list[Processor] = []
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(config.repetition_penalty, config.repetition_window))
    if config.no_repeat_ngram:
        processors.append(NoRepeatNGram(config.no_repeat_ngram))
    if config.temperature > 0 and config.temperature != 1.0 and config.beams == 1:  # beams take the likeliest
        processors.append(Temperature(config.temperature))
    if config.repeat_guard and not config.greedy and config.beams == 1:  # it caps what is sampled from
        processors.append(RepeatGuard(config.repeat_guard))
    if config.top_k is not None:
        processors.append(TopK(config.top_k))
    if config.top_p < 1.0:
        processors.append(TopP(config.top_p))
    if config.min_p > 0.0:
        processors.append(MinP(config.min_p))
    if config.typical_p < 1.0:
        processors.append(TypicalP(config.typical_p))
    return processors


def apply_processors(processors: list[Processor], ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """`scores` after each processor in turn."""
    for processor in processors:
        scores = processor(ids, scores)
    return scores
