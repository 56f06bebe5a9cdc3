"""Text generation from a recurrent language model: sampling and beam search, one step at a time.

The decoding controls (temperature, top-k, ...) come from `processors`. One loop carries the
recurrent state, so each generated token costs one step of the network, however long the text grows.

Every text starts from the model's zero state primed with one token: a newline when "\\n" is in the
vocabulary (a text starts like a fresh line), else the padding id. An empty prompt is just that
priming. Padding and unknown tokens are never generated: they stand for no text. Stop strings are
looked for in the generated text only, and the text is cut where one begins.

A model trained with --condition writes each sample under its --label; with --guidance each row
also runs unlabelled, and sampling moves away from that prediction (classifier-free guidance).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from textgen.config import SampleConfig
from textgen.errors import TextgenError
from textgen.nn.model import LanguageModel, State, check_memory, select_state
from textgen.generate.processors import (GUARD_SPAN, GUARD_WINDOW, NEG_INF, Processor, SuppressTokens,
                                         apply_processors, build_processors)
from textgen.generate.stepper import Stepper
from textgen.data.tokenizer import Tokenizer, start_token  # noqa: F401 -- re-exported

log = logging.getLogger(__name__)

@dataclass
class Sample:
    """One generated continuation (the prompt not included)."""

    text: str | None
    """the whole text; None from `stream(..., keep_text=False)`, whose chunks alone carry it"""
    mean_log_prob: float
    """mean log-probability (nats) of the generated tokens under the model, before any processor"""
    stop_reason: str
    """"length" (reached --length) or "stop_string" (a --stop text appeared; it is cut off)"""


class Chunk(NamedTuple):
    """New text of sample `index`; `sample` is the finished sample on its last chunk, else None."""

    index: int
    text: str
    sample: Sample | None


def encode_text(tokenizer: Tokenizer, text: str, what: str = "prompt") -> list[int]:
    """The ids of `text`; characters outside the vocabulary become the unknown id, with a warning."""
    ids = [int(i) for i in tokenizer.encode_batch([text])[0]]  # encode_batch does not warn; we do, once
    unknown = ids.count(tokenizer.unk_id)
    if unknown:
        log.warning("%d %s character(s) are not in the model's vocabulary; they are read as the "
                    "unknown token", unknown, what)
    return ids


class _Detokenizer:
    """The text each new token adds to a sample, in O(1) per token."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.table = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)] if tokenizer.kind == "char" else None

    def new_row(self) -> list[list[int]]:
        """Per-sample memory: [recent tokens already shown, tokens not yet shown]."""
        return [[], []]

    def add(self, row: list[list[int]], token: int) -> str:
        if self.table is not None:
            return self.table[token]
        # subwords: decode with a little context (leading spaces) and wait for split UTF-8 bytes
        context, unshown = row
        unshown.append(token)
        before = self.tokenizer.decode(context)
        text = self.tokenizer.decode(context + unshown)[len(before):]
        if text.endswith("\ufffd") and len(unshown) < 4:
            return ""
        row[0], row[1] = (context + unshown)[-4:], []
        return text


class _Continuation:
    """One sample's text: cut at --length and at stop strings, shown as soon as it cannot be cut.
    Without `keep_text` the shown text is not kept, so memory stays flat however long it grows."""

    def __init__(self, length: int, stops: tuple[str, ...], keep_text: bool = True):
        self.length, self.stops = length, stops
        self.hold = max(map(len, stops), default=1) - 1  # a tail this long may still begin a stop string
        self.shown: list[str] | None = [] if keep_text else None
        self.pending = ""
        self.chars = 0

    def add(self, piece: str, last: bool = False) -> tuple[str, str | None]:
        """The text that can be shown now, and the stop reason once the sample is finished
        (`last`: no more tokens will come)."""
        if not self.stops and not last and self.chars + len(piece) < self.length:  # the common case, fast
            self.chars += len(piece)
            if self.shown is not None:
                self.shown.append(piece)
            return piece, None
        piece = piece[: self.length - self.chars]
        self.chars += len(piece)
        text = self.pending + piece
        cuts = [i for i in (text.find(stop) for stop in self.stops) if i >= 0]
        if cuts:
            text, reason = text[: min(cuts)], "stop_string"
        elif self.chars >= self.length or last:
            reason = "length"
        else:
            split = max(0, len(text) - self.hold)
            text, self.pending, reason = text[:split], text[split:], None
        if self.shown is not None:
            self.shown.append(text)
        return text, reason

    @property
    def text(self) -> str | None:
        return None if self.shown is None else "".join(self.shown)


class _Uniforms:
    """One uniform number per sample per step, each sample from its own generator seeded seed + i,
    so sample i of a batch is the text a single run with seed + i gives."""

    def __init__(self, seed: int, rows: int, device: torch.device, block: int = 256):
        self.generators = [torch.Generator(device).manual_seed(seed + row) for row in range(rows)]
        self.device, self.block, self.used = device, block, block
        self.values = torch.empty(rows, block, device=device)
        self.numbers: list[float] | None = None  # row 0's block as floats, for `next_number`

    def next(self) -> torch.Tensor:
        if self.used == self.block:
            self._refill()
        self.used += 1
        return self.values[:, self.used - 1]

    def next_number(self) -> float:
        """The next number of a one-sample generator, as a float: the server gathers one from each of
        its streams' generators a step, and a tensor apiece would cost more than the draw."""
        if self.used == self.block:
            self._refill()
        if self.numbers is None:
            self.numbers = self.values[0].tolist()
        self.used += 1
        return self.numbers[self.used - 1]

    def _refill(self) -> None:
        for row, generator in enumerate(self.generators):
            torch.rand(self.block, generator=generator, device=self.device, out=self.values[row])
        self.used, self.numbers = 0, None

    def select(self, rows: list[int]) -> None:
        self.generators = [self.generators[row] for row in rows]
        self.values, self.numbers = self.values[rows], None


# tokens per forward call while reading a prompt: memory stays bounded at any prompt length, and
# Ctrl-C is heard between calls
PRIME_CHUNK = 4096


def label_ids(model: LanguageModel, names: tuple[str, ...], rows: int, device: torch.device) -> torch.Tensor | None:
    """The label id of each of `rows` samples, the `names` (--label) in turn; None without names."""
    if not names:
        return None
    known = model.config.label_names
    if not known:
        raise TextgenError(f"--label {names[0]}: this model was not trained with --condition, so it knows no "
                           f"labels; drop --label, or fine-tune it with --condition label")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise TextgenError(f"--label {unknown[0]} is not a label of this model; it knows: {', '.join(known)}")
    ids = [known.index(name) + 1 for name in names]
    return torch.tensor([ids[row % len(ids)] for row in range(rows)], device=device)


def prime(model: LanguageModel, tokenizer: Tokenizer, prompt: str, device: torch.device, rows: int = 1,
           labels: torch.Tensor | None = None) -> tuple[list[int], torch.Tensor, State]:
    """The prompt's ids, and the logits (rows, vocab) and state after reading it, chunk by chunk,
    under each row's label (`labels` (rows,); None: no label). Each distinct label reads it once."""
    prompt_ids = encode_text(tokenizer, prompt)
    ids, state = [start_token(tokenizer), *prompt_ids], None
    if labels is None:
        distinct, row_of = None, torch.zeros(rows, dtype=torch.long, device=device)
    else:
        distinct, row_of = labels.unique(return_inverse=True)
    width = 1 if distinct is None else len(distinct)
    for begin in range(0, len(ids), PRIME_CHUNK):
        chunk = torch.tensor([ids[begin:begin + PRIME_CHUNK]], device=device).expand(width, -1)
        logits, state = model(chunk, state, distinct)
    return prompt_ids, logits[:, -1][row_of], select_state(state, row_of)


class _History:
    """The token history the processors read, `ids[:, :filled]` (batch, tokens), written in place:
    O(1) per step. Only the last `keep` tokens are kept (all when `keep` is None), in a buffer of
    twice that, so memory stays flat however long the text grows."""

    def __init__(self, prompt_ids: list[int], rows: int, keep: int | None, max_tokens: int,
                 device: torch.device):
        kept = prompt_ids if keep is None else prompt_ids[-keep:]
        self.keep = keep
        capacity = len(prompt_ids) + max_tokens if keep is None else 2 * keep
        self.ids = torch.empty(rows, capacity, dtype=torch.long, device=device)
        self.ids[:, :len(kept)] = torch.tensor(kept, dtype=torch.long, device=device)
        self.filled = len(kept)

    def append(self, tokens: torch.Tensor) -> None:
        if self.filled == self.ids.size(1):  # bounded and full: slide the last `keep` tokens to the front
            self.ids[:, :self.keep] = self.ids[:, self.filled - self.keep:self.filled].clone()
            self.filled = self.keep
        self.ids[:, self.filled] = tokens
        self.filled += 1


def draw(scores: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Each row's token drawn from softmax(`scores`) (rows, vocab) by inverting its cumulative sum at
    that row's uniform number: one number a step, so a seeded row draws the same in any batch."""
    cumulative = scores.softmax(-1).cumsum(-1)
    threshold = uniforms[:, None] * cumulative[:, -1:]
    return torch.searchsorted(cumulative, threshold, right=True).squeeze(1).clamp_(max=scores.size(-1) - 1)


def _max_tokens(tokenizer: Tokenizer, length: int) -> int:
    """Tokens enough for `length` characters: a character token is one character; a subword token is
    at least one once its UTF-8 bytes are whole, and a character has at most four bytes."""
    return length if tokenizer.kind == "char" else 4 * length


def _processors(tokenizer: Tokenizer, config: SampleConfig) -> list[Processor]:
    return [SuppressTokens((tokenizer.pad_id, tokenizer.unk_id)), *build_processors(config)]


def history_kept(config: SampleConfig) -> int | None:
    """The recent tokens the processors read (None: the whole history, for --no-repeat-ngram)."""
    if config.no_repeat_ngram:
        return None
    return max(config.repetition_window, GUARD_WINDOW + GUARD_SPAN if config.repeat_guard else 0)


def stream(model: LanguageModel, tokenizer: Tokenizer, prompt: str, config: SampleConfig,
           device: str | torch.device = "cpu", keep_text: bool = True) -> Iterator[Chunk]:
    """Chunks of new text as they are generated, for `config.num_samples` continuations of `prompt`.

    All samples advance together, one forward call per step; a sample's last chunk carries the
    finished `Sample`. With `config.beams > 1` the single best beam comes as one chunk at the end.
    Without `keep_text` (and without --no-repeat-ngram, which reads the whole history) memory stays
    flat however long the text: the finished `Sample` then has no text, only the chunks carry it.
    """
    device = torch.device(device)
    if config.beams > 1:
        sample = beam_search(model, tokenizer, prompt, config, device)
        yield Chunk(0, sample.text, sample)
        return
    rows = list(range(config.num_samples))  # batch row -> sample index; finished rows leave the batch
    max_tokens = _max_tokens(tokenizer, config.length)
    # inference mode is entered once per step, not around the generator, so it never leaks to the caller
    with torch.inference_mode():
        labels = label_ids(model, config.label, len(rows), device)
        if config.guidance:  # a second copy of each row reads no label: the unlabelled prediction to move from
            labels = torch.cat([labels, torch.zeros_like(labels)])
        primed_rows = len(rows) * (2 if config.guidance else 1)
        prompt_ids, logits, state = prime(model, tokenizer, prompt, device, primed_rows, labels)
        keep = history_kept(config)
        check_memory(8 * len(rows) * (len(prompt_ids) + max_tokens if keep is None else 2 * keep), "the token "
                     f"history of --num-samples {len(rows)} x --length {config.length}", "lower them", device)
        history = _History(prompt_ids, len(rows), keep, max_tokens, device)
        log_prob_sums = torch.zeros(len(rows), device=device)
        stepper = Stepper(model, int8=config.quantize == "int8")
    processors = _processors(tokenizer, config)
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(6), "little")
    uniforms = None if config.greedy else _Uniforms(seed, len(rows), device)
    detokenizer = _Detokenizer(tokenizer)
    decoded = [detokenizer.new_row() for _ in rows]
    texts = [_Continuation(config.length, config.stop, keep_text) for _ in rows]
    for step in range(max_tokens):
        with torch.inference_mode():
            if step:
                logits, state = stepper(tokens.repeat(2) if config.guidance else tokens, state, labels)
            raw = logits.float()
            if config.guidance:
                labelled, unlabelled = raw.log_softmax(-1).chunk(2)
                raw, guided = labelled, labelled + config.guidance * (labelled - unlabelled)
            scores = apply_processors(processors, history.ids[:, :history.filled], guided if config.guidance else raw)
            if config.no_repeat_ngram and torch.isinf(scores).all(-1).any():
                raise TextgenError(f"--no-repeat-ngram {config.no_repeat_ngram} banned every token after "
                                   f"{step} generated tokens; raise it or lower --length")
            if uniforms is None:
                tokens = scores.argmax(-1)
            else:
                tokens = draw(scores, uniforms.next())
            log_prob_sums += raw.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(1)
            history.append(tokens)
        chunks, keep = [], []
        for position, token in enumerate(tokens.tolist()):
            index = rows[position]
            text, reason = texts[index].add(detokenizer.add(decoded[index], token), last=step + 1 == max_tokens)
            if reason is None:
                keep.append(position)
                if text:
                    chunks.append(Chunk(index, text, None))
            else:
                mean = log_prob_sums[position].item() / (step + 1)
                chunks.append(Chunk(index, text, Sample(texts[index].text, mean, reason)))
        yield from chunks
        if not keep:
            return
        if len(keep) < len(rows):
            with torch.inference_mode():
                kept = torch.tensor(keep, device=device)
                tokens, log_prob_sums = tokens[kept], log_prob_sums[kept]
                both = torch.cat([kept, kept + len(rows)]) if config.guidance else kept  # and the unlabelled copies
                state, labels = select_state(state, both), None if labels is None else labels[both]
                history.ids = history.ids[kept]
            rows = [rows[position] for position in keep]
            if uniforms is not None:
                uniforms.select(keep)


def generate(model: LanguageModel, tokenizer: Tokenizer, prompt: str, config: SampleConfig,
             device: str | torch.device = "cpu") -> list[Sample]:
    """The finished samples (continuations of `prompt`), in sample order."""
    samples = {chunk.index: chunk.sample for chunk in stream(model, tokenizer, prompt, config, device)
               if chunk.sample is not None}
    return [samples[index] for index in sorted(samples)]


@dataclass
class _Beam:
    text: str
    tokens: int
    score: float  # sum of processed log-probabilities: what the search ranks by
    log_prob: float  # sum of the model's own log-probabilities
    decoded: list[list[int]]


@torch.inference_mode()
def beam_search(model: LanguageModel, tokenizer: Tokenizer, prompt: str, config: SampleConfig,
                device: str | torch.device = "cpu") -> Sample:
    """The most likely continuation found by a beam search of `config.beams` beams.

    Finished texts rank by log-probability / tokens ** `config.length_penalty`; each beam carries
    its own recurrent state.
    """
    device = torch.device(device)
    labels = label_ids(model, config.label, 1, device)
    prompt_ids, logits, state = prime(model, tokenizer, prompt, device, 1, labels)
    history = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    processors = _processors(tokenizer, config)
    detokenizer = _Detokenizer(tokenizer)
    stepper = Stepper(model, int8=config.quantize == "int8")
    alpha, longest_stop = config.length_penalty, max(map(len, config.stop), default=1)
    max_tokens = _max_tokens(tokenizer, config.length)
    beams = [_Beam("", 0, 0.0, 0.0, detokenizer.new_row())]
    best: tuple[float, Sample] | None = None
    while beams:
        raw_log_probs = logits.float().log_softmax(-1)
        scores = apply_processors(processors, history, logits.float()).log_softmax(-1)
        totals = torch.tensor([beam.score for beam in beams], device=device)[:, None] + scores
        top = totals.flatten().topk(min(2 * config.beams, totals.numel()))
        survivors: list[tuple[int, int, _Beam]] = []
        for total, flat in zip(top.values.tolist(), top.indices.tolist()):
            if total == NEG_INF or len(survivors) == config.beams:
                break
            row, token = divmod(flat, scores.size(-1))
            parent = beams[row]
            decoded = [list(part) for part in parent.decoded]
            text = parent.text + detokenizer.add(decoded, token)[: config.length - len(parent.text)]
            beam = _Beam(text, parent.tokens + 1, total, parent.log_prob + raw_log_probs[row, token].item(), decoded)
            search_from = max(0, len(parent.text) - longest_stop + 1)
            cuts = [i for i in (text.find(stop, search_from) for stop in config.stop) if i >= 0]
            if cuts or len(text) >= config.length or beam.tokens >= max_tokens:
                normalized = beam.score / beam.tokens ** alpha
                if best is None or normalized > best[0]:
                    reason = "stop_string" if cuts else "length"
                    best = (normalized, Sample(text[: min(cuts)] if cuts else text,
                                               beam.log_prob / beam.tokens, reason))
            else:
                survivors.append((row, token, beam))
        beams = [beam for _, _, beam in survivors]
        # with alpha <= 0 a longer text never ranks higher, so a finished text at least as good as
        # every live beam is the answer
        if best is not None and alpha <= 0 and all(b.score / b.tokens ** alpha <= best[0] for b in beams):
            break
        if beams:
            rows = torch.tensor([row for row, _, _ in survivors], device=device)
            tokens = torch.tensor([token for _, token, _ in survivors], device=device)
            history = torch.cat([history[rows], tokens[:, None]], 1)
            logits, state = stepper(tokens, select_state(state, rows),
                                    None if labels is None else labels[:1].expand(len(rows)))
    if best is None:
        raise TextgenError("beam search found no text: every token was banned; relax --no-repeat-ngram")
    return best[1]
