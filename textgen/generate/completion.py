"""Autocomplete: the most likely continuations of a text up to the end of its next word (or line).

A beam search over tokens (characters or subwords), best first: each live beam is a continuation
not yet past a boundary, scored by its total log-probability. A token that crosses the boundary
finishes a completion, cut where the boundary begins; completions cut to the same text (every
boundary character after "brown", say) are one completion whose probability is their sum. Since
a continuation's probability only falls as it grows, the search ends once the N best finished
completions are each at least as likely as every live beam: then no beam can overtake them.

A line is different: the shortest lines are always the most probable ("." then a newline beats
any sentence), so line completions are ranked by their probability per character, the beams run
until each has ended its line, and a line still going after `LINE_CHARS` characters ends at its
next word's end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from textgen.errors import TextgenError
from textgen.nn.model import LanguageModel, State, select_state
from textgen.generate.sampling import encode_text, label_ids, prime
from textgen.generate.stepper import Stepper
from textgen.data.tokenizer import Tokenizer


@dataclass
class Completion:
    """One continuation of the prefix, up to (not including) the boundary that ends it."""

    text: str
    probability: float
    """the model's probability of this text followed by a boundary (summed over the boundaries found)"""

    @property
    def per_char(self) -> float:
        """The probability per character of the text and its boundary (their geometric mean): how
        sure the model is, whatever the length."""
        return self.probability ** (1 / (len(self.text) + 1))


def is_word_char(char: str) -> bool:
    """Letters, digits and the apostrophe inside words such as don't (typeset text: don’t)."""
    return char.isalnum() or char in ("'", "\u2019")


class _Pieces:
    """Per token of the vocabulary, as tensors: its length, whether its text holds (or begins with) a
    word character, where a word's end cuts it in a continuation that has (`cut_started`) or has not
    yet (`cut_fresh`) begun its word, and where a line's end does (`cut_line`); -1 where it holds no
    boundary. Tokens that stand for no text are banned."""

    def __init__(self, tokenizer: Tokenizer):
        if tokenizer.kind == "char":
            texts = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
        else:  # a subword's leading space shows only after other text
            context = tokenizer.encode_batch(["a"])[0][-1]
            shift = len(tokenizer.decode([context]))
            texts = [tokenizer.decode([context, i])[shift:] for i in range(tokenizer.vocab_size)]
        self.texts = texts
        self.lengths = torch.tensor([len(text) for text in texts])
        self.starts_word = torch.tensor([is_word_char(text[:1]) for text in texts])
        # a line ends at its newline, or at the carriage return before one
        self.cut_line = torch.tensor([next((i for i, char in enumerate(text) if char in "\r\n"), -1) for text in texts])
        has_word, cut_started, cut_fresh = [], [], []
        for text in texts:
            word_at = next((i for i, char in enumerate(text) if is_word_char(char)), -1)
            has_word.append(word_at >= 0)
            cut_started.append(next((i for i, char in enumerate(text) if not is_word_char(char)), -1))
            cut_fresh.append(-1 if word_at < 0 else next(
                (i for i in range(word_at, len(text)) if not is_word_char(text[i])), -1))
        self.has_word = torch.tensor(has_word)
        self.cut_started, self.cut_fresh = torch.tensor(cut_started), torch.tensor(cut_fresh)
        self.banned = torch.tensor([not text or "\ufffd" in text for text in texts])
        self.banned[[tokenizer.pad_id, tokenizer.unk_id]] = True


# a prefix that grows by at most this many characters since the last call is read on from there
STEP_ON = 64


class _Session:
    """What completing with one model keeps between calls (on each keystroke, the same model): the
    fused stepper and token pieces, which cost more to build than a search, and the state after the
    last prefix, so a character model reads only the characters typed since."""

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer):
        self.key = (model, tuple(p._version for p in model.parameters()), tokenizer)
        self.stepper, self.pieces = Stepper(model), _Pieces(tokenizer)
        self.last: tuple | None = None  # (prefix, label ids, logits, state)

    def read(self, model: LanguageModel, tokenizer: Tokenizer, prefix: str, labels: torch.Tensor | None,
             device: torch.device) -> tuple[torch.Tensor, State]:
        """The logits (1, vocab) and state after `prefix`."""
        label_key = None if labels is None else labels.tolist()
        if (self.last is not None and tokenizer.kind == "char" and self.last[1] == label_key
                and prefix.startswith(self.last[0]) and len(prefix) - len(self.last[0]) <= STEP_ON):
            _, _, logits, state = self.last
            for token in encode_text(tokenizer, prefix[len(self.last[0]):]):
                logits, state = self.stepper(torch.tensor([token], device=device), state, labels)
        else:
            _, logits, state = prime(model, tokenizer, prefix, device, 1, labels)
        self.last = (prefix, label_key, logits, state)
        return logits, state


_session: list[_Session] = []


def _session_for(model: LanguageModel, tokenizer: Tokenizer) -> _Session:
    """The session of the last model asked about, or a new one if the model, its weights (the
    versions torch counts on every in-place change) or the tokenizer differ."""
    key = (model, tuple(p._version for p in model.parameters()), tokenizer)
    if not _session or any(a is not b and a != b for a, b in zip(_session[0].key, key)):
        _session[:] = [_Session(model, tokenizer)]
    return _session[0]


# a line completion still going after this many characters ends at the end of its next word
LINE_CHARS = 80


@dataclass
class _Beam:
    text: str
    log_prob: float
    started: bool  # a word character has been written, so the next non-word character ends the word


@torch.inference_mode()
def complete(model: LanguageModel, tokenizer: Tokenizer, prefix: str, top: int = 5, until: str = "word",
             beam_width: int | None = None, max_tokens: int | None = None, label: str | None = None,
             device: str | torch.device = "cpu", new_word: bool = False) -> list[Completion]:
    """The `top` most likely continuations of `prefix` up to the end of the next word (`until`
    "word": the first run of letters, digits and apostrophes, with what comes before it), most
    likely first; or up to the end of the line ("line"; at most about `LINE_CHARS` characters),
    likeliest per character first. From a search of `beam_width` beams (default: 2 * top, at least
    8) over at most `max_tokens` tokens (default: 40 for a word, LINE_CHARS + 20 for a line); under
    `label` for a model trained with --condition. `new_word`: the prefix's last word is finished,
    so no completion goes on with it ("Hello" gets ", and" or " there", never "w")."""
    if until not in ("word", "line"):
        raise TextgenError(f"--until {until!r} is not one of: word, line")
    line = until == "line"
    max_tokens = max_tokens or (LINE_CHARS + 20 if line else 40)
    device = torch.device(device)
    width = beam_width or max(8, 2 * top)
    session = _session_for(model, tokenizer)
    stepper, pieces = session.stepper, session.pieces
    labels = label_ids(model, (label,) if label else (), 1, device)
    # a subword's leading space belongs to the word after it: "was " is read as "was", and the
    # completions are the continuations that begin with that space, shown without it
    held = prefix[len(prefix.rstrip(" ")):] if tokenizer.kind != "char" else ""
    logits, state = session.read(model, tokenizer, prefix[:len(prefix) - len(held)], labels, device)
    beams = [_Beam("", 0.0, False)]
    finished: dict[str, float] = {}  # completion text -> log-probability, summed over the ways to it
    for _ in range(max_tokens):
        log_probs = logits.float().log_softmax(-1).cpu().masked_fill(pieces.banned, -math.inf)  # (beams, vocab)
        if held and beams[0].text == "":  # the first token must write the space typed
            log_probs = log_probs.masked_fill(torch.tensor([not text.startswith(held) for text in pieces.texts]),
                                              -math.inf)
        if new_word and beams[0].text == "" and is_word_char(prefix[-1:]):  # the first token must not go on with it
            log_probs = log_probs.masked_fill(pieces.starts_word, -math.inf)
        started = torch.tensor([beam.started for beam in beams])[:, None]
        cuts = torch.where(started, pieces.cut_started, pieces.cut_fresh)  # (beams, vocab)
        if line:  # a line ends at its newline; past LINE_CHARS, at any word's end too
            long = torch.tensor([len(beam.text) >= LINE_CHARS for beam in beams])[:, None]
            cuts = torch.where(long, cuts, pieces.cut_line.expand_as(cuts))
        totals = log_probs + torch.tensor([beam.log_prob for beam in beams])[:, None]
        # every token that ends the word (or line) right where a beam stands gives that beam's text
        at_beam = totals.masked_fill(cuts != 0, -math.inf).logsumexp(-1)  # (beams,)
        for beam, log_prob in zip(beams, at_beam.tolist()):
            _add(finished, beam.text, log_prob)
        # a subword can hold the boundary further in ("s." ends the word "cats")
        inside = totals.masked_fill(cuts <= 0, -math.inf)
        for row, token in _top_entries(inside, 8 * top):
            _add(finished, beams[row].text + pieces.texts[token][:cuts[row, token]], inside[row, token].item())
        going = totals.masked_fill(cuts >= 0, -math.inf)
        if line:  # beams of different lengths (subwords) compete per character
            lengths = torch.tensor([len(beam.text) for beam in beams])[:, None] + pieces.lengths
            chosen = _top_entries(going / lengths.clamp(min=1), width)
        else:
            chosen = _top_entries(going, width)
            best = sorted(finished.values(), reverse=True)[:top]
            if chosen and len(best) == top and best[-1] >= going[chosen[0]].item():
                break  # no live beam can overtake the `top` best finished ones
        if not chosen:
            break
        beams = [_Beam(beams[row].text + pieces.texts[token], going[row, token].item(),
                       beams[row].started or bool(pieces.has_word[token])) for row, token in chosen]
        rows = torch.tensor([row for row, _ in chosen], device=device)
        tokens = torch.tensor([token for _, token in chosen], device=device)
        logits, state = stepper(tokens, select_state(state, rows), None if labels is None else labels.expand(len(rows)))
    found = [Completion(text[len(held):], math.exp(log_prob)) for text, log_prob in finished.items()
             if text[len(held):]]
    found.sort(key=(lambda c: c.per_char) if line else (lambda c: c.probability), reverse=True)
    return found[:top]


def _add(finished: dict[str, float], text: str, log_prob: float) -> None:
    """Count one more way to the completion `text` (empty: none)."""
    if text and log_prob > -math.inf:
        finished[text] = float(torch.logaddexp(torch.tensor(finished.get(text, -math.inf)), torch.tensor(log_prob)))


def _top_entries(scores: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """The (row, column) of the `count` highest finite entries of `scores` (rows, columns), best first."""
    top = scores.flatten().topk(min(count, scores.numel()))
    columns = scores.shape[1]
    return [divmod(index, columns) for value, index in zip(top.values.tolist(), top.indices.tolist())
            if value > -math.inf]
