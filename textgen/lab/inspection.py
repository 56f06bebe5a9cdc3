"""Look inside a trained model: every gate of every unit along a text (from the reference cells),
the unit that shows most along it, and the units that best track a feature of the text over a
corpus split. `views` draws them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from textgen.classify.predict import ngram_logits, text_buckets
from textgen.config import FEATURES as CLASSIFIER_FEATURES
from textgen.data.batches import cut_to
from textgen.lab.cells import gate_names, trace_layers
from textgen.nn.checkpoint import load_checkpoint, load_classifier, load_language_model
from textgen.data.corpus import Corpus, split_texts
from textgen.errors import TextgenError
from textgen.nn.model import GATE_COUNT, Classifier, LanguageModel, check_memory, lead, split_gates
from textgen.data.tokenizer import Tokenizer

FEATURES = {
    "quote": "inside double quotes",
    "paren": "inside parentheses",
    "line-position": "characters since the last line break",
    "line-start": "first character of a line",
    "label": "the text's label (its index among the corpus's labels)",
}
ROW_CHARS = 512        # a language-model corpus is cut into rows this long, read side by side
EXCERPT_CHARS = 1000   # text shown with --find when the user gives none
PREFIX_POINTS = 256  # prefixes of a longer text whose n-grams are hashed afresh; the others take the last one's
# prefixes the encoder reads afresh where running sums cannot give them (a bidirectional classifier, a
# text past --max-len that --long-text cuts): the slow case, so a few; the others take the last one's
REREAD_POINTS = 48
ENCODER, NGRAMS = "encoder", "n-grams"  # the two parts of a classifier's logits


@dataclass(frozen=True)
class Unit:
    """One unit of one gate of one layer (all counted from 0, layer 0 next to the embedding)."""

    layer: int
    gate: str
    unit: int

    def __str__(self) -> str:
        return f"layer {self.layer} {self.gate} unit {self.unit}"


@dataclass(frozen=True)
class UnitScore:
    """How well a unit tracks a feature: Pearson's correlation over `positions` values."""

    unit: Unit
    correlation: float
    positions: int


@dataclass
class Trace:
    """Every gate of every layer along one text, and for a classifier its prediction after each token."""

    tokens: list[str]                     # the text of each token; joined they give the text
    layers: list[dict[str, np.ndarray]]   # per layer: gate -> (tokens, width)
    probabilities: np.ndarray | None      # (tokens, classes), classifiers only: what `classify` gives each prefix
    label_names: list[str] | None
    unknown: np.ndarray                   # (tokens,) True where the model read <unk>: it never saw that character
    # classifiers only: each part's weighted logits (tokens, classes), the encoder's and/or the n-grams'
    # (their sum over the temperature gives the probabilities), and where the n-grams decided alone
    parts: dict[str, np.ndarray] | None = None
    ngrams_alone: np.ndarray | None = None
    classifier: dict[str, Any] | None = None  # how its probabilities are made: features, n-gram weight, temperature
    directions: int = 1  # 2 for a bidirectional model: the second half of each layer's units reads backwards
    # per layer: gate -> its two inputs before the squashing, (tokens, width) each (`gate_inputs`)
    preactivations: list[dict[str, tuple[np.ndarray, np.ndarray]]] | None = None

    def values(self, unit: Unit) -> np.ndarray:
        """The unit's value after each token."""
        return self.layers[unit.layer][unit.gate][:, unit.unit]


def load_model(model: str) -> tuple[LanguageModel | Classifier, Tokenizer, dict[str, Any]]:
    """A language model or classifier, whichever the checkpoint `model` holds, on the CPU."""
    kind = load_checkpoint(model).get("kind")
    return load_classifier(model) if kind == "classifier" else load_language_model(model)


def check_unit(model: LanguageModel | Classifier, layer: int | None, gate: str | None,
               unit: int | None = None) -> Unit:
    """The unit the flags name (defaults: the top layer, its cell state or GRU hidden state, unit 0),
    or a TextgenError naming the flag that is out of range."""
    rnn = model.rnn
    layer = rnn.num_layers - 1 if layer is None else layer
    if not 0 <= layer < rnn.num_layers:
        raise TextgenError(f"--layer {layer} is out of range: this model has layers 0 to {rnn.num_layers - 1}")
    names = gate_names(rnn)
    gate = gate or ("cell" if "cell" in names else "hidden")
    if gate not in names:
        kind = {nn.LSTM: "an LSTM", nn.GRU: "a GRU"}.get(type(rnn), "a plain RNN")
        raise TextgenError(f"--gate {gate} is not a gate of {kind}; use one of: {', '.join(names)}")
    width = gate_width(rnn, gate)
    unit = 0 if unit is None else unit
    if not 0 <= unit < width:
        raise TextgenError(f"--unit {unit} is out of range: the {gate} of layer {layer} has units 0 to {width - 1}")
    return Unit(layer, gate, unit)


def gate_width(rnn: nn.LSTM | nn.GRU | nn.RNN, gate: str) -> int:
    """Units in `gate` of each layer of `rnn` (both directions of a bidirectional one)."""
    directions = 2 if rnn.bidirectional else 1
    projected = gate == "hidden" and getattr(rnn, "proj_size", 0)
    return directions * (rnn.proj_size if projected else rnn.hidden_size)


def token_texts(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """The text each token stands for; joined they give `tokenizer.decode(ids)`. The bytes of a
    character that SentencePiece spells as several byte pieces all go to its last piece."""
    if tokenizer.kind == "char":
        return list(tokenizer.decode(ids))
    texts, pending = [], []
    for token in ids:
        pending.append(int(token))
        text = tokenizer.decode(pending)
        if text.endswith("\ufffd") and len(pending) < 4:  # an incomplete UTF-8 sequence so far
            texts.append("")
            continue
        texts.append(text)
        pending = []
    if pending:
        texts[-1] = tokenizer.decode(pending)
    return texts


def _rnn_inputs(model: LanguageModel | Classifier, ids: torch.Tensor) -> torch.Tensor:
    """What the model's first layer reads for `ids`: a conditioned language model's with no label."""
    return model.rnn_inputs(ids) if isinstance(model, LanguageModel) else model.embedding(ids)


@torch.inference_mode()
def trace_text(model: LanguageModel | Classifier, tokenizer: Tokenizer, text: str) -> Trace:
    """Every gate of every layer of `model` along `text`, read from a zero state."""
    ids = torch.as_tensor(tokenizer.encode(text), dtype=torch.long)[None]  # (1, tokens)
    if ids.shape[1] == 0:
        raise TextgenError("the text to inspect is empty; give it some characters")
    rnn = model.rnn
    # every gate and state, each gate's two inputs too, twice over while they are made
    check_memory(4.0 * ids.shape[1] * rnn.num_layers * rnn.hidden_size * (4 * GATE_COUNT["lstm"] + 2) * 2,
                 f"tracing every unit along {ids.shape[1]:,} tokens", "inspect a shorter text")
    model.eval()
    inputs = _rnn_inputs(model, ids)
    layers = trace_layers(model.rnn, inputs)
    # a character model has one token per character: show the user's own, even those it reads as <unk>
    tokens = list(text) if tokenizer.kind == "char" else token_texts(tokenizer, ids[0].tolist())
    trace = Trace(tokens, [{name: value[0].numpy() for name, value in layer.items()} for layer in layers],
                  None, None, (ids[0] == tokenizer.unk_id).numpy(), directions=2 if rnn.bidirectional else 1,
                  preactivations=gate_inputs(rnn, inputs[0], layers))
    if isinstance(model, Classifier):
        trace.probabilities, trace.parts, trace.ngrams_alone = prefix_prediction(model, ids, layers[-1]["hidden"],
                                                                                 tokens, text)
        trace.label_names = list(model.config.label_names)
        config = model.config
        trace.classifier = {"features": config.features, "temperature": config.temperature,
                            "ngram_weight": config.ngram_weight if config.features == "both" else None,
                            "decisive_margin": config.decisive_margin if config.features == "both" else None}
    return trace


@torch.inference_mode()
def gate_inputs(rnn: nn.LSTM | nn.GRU | nn.RNN, inputs: torch.Tensor, layers: list[dict[str, torch.Tensor]]
                ) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """For each layer of `rnn` that read `inputs` (tokens, features) and gave the `layers` of
    `trace_layers` (batch 1), each gate's two inputs before its squashing, (tokens, width) each: the
    part from the layer's input, W_i. x_t + b_i., and the part from its state, W_h. h_t-1 + b_h. (for
    a GRU's candidate r_t ⊙ (W_hn h_t-1 + b_hn)); σ or tanh of their sum is the gate. A plain RNN's
    one "gate" is its hidden state."""
    cell = {nn.LSTM: "lstm", nn.GRU: "gru"}.get(type(rnn), "rnn")
    directions = 2 if rnn.bidirectional else 1
    found = []
    for layer in range(rnn.num_layers):
        source = inputs if layer == 0 else layers[layer - 1]["hidden"][0]
        per_direction = []
        for direction, suffix in enumerate(("", "_reverse")[:directions]):
            weight_ih, weight_hh, bias_ih, bias_hh = (getattr(rnn, f"{kind}_l{layer}{suffix}") for kind in
                                                      ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            own = layers[layer]["hidden"][0].chunk(directions, dim=1)[direction]  # (tokens, width)
            zero = own.new_zeros(1, own.shape[1])
            # h_t-1: the state after the token before, which for the backward direction is the next one
            previous = torch.cat([own[1:], zero]) if suffix else torch.cat([zero, own[:-1]])
            from_input = torch.addmm(bias_ih, source, weight_ih.T)
            from_state = torch.addmm(bias_hh, previous, weight_hh.T)
            if cell == "rnn":
                per_direction.append({"hidden": (from_input, from_state)})
                continue
            x, h = split_gates(cell, from_input), split_gates(cell, from_state)
            parts = {name: (getattr(x, name), getattr(h, name)) for name in x._fields}
            if cell == "gru":
                parts["candidate"] = (x.candidate, torch.sigmoid(x.reset + h.reset) * h.candidate)
            per_direction.append(parts)
        found.append({name: tuple(torch.cat([parts[name][k] for parts in per_direction], dim=1).numpy()
                                  for k in (0, 1)) for name in per_direction[0]})
    return found


@dataclass(frozen=True)
class Choice:
    """The unit a view opens on, and why, in one line."""

    unit: Unit
    reason: str


def informative_unit(trace: Trace, layer: int, gate: str) -> Choice:
    """The unit of `layer`'s `gate` that shows most along this text: for a classifier, the one that
    moves most in step with its prediction (r squared times its spread); else the one that varies most."""
    values = trace.layers[layer][gate].astype(np.float64)  # (tokens, width)
    among = f"of layer {layer}'s {values.shape[1]} {gate} units"
    spread = values.std(axis=0)
    if len(values) < 2 or spread.max() == 0:
        return Choice(Unit(layer, gate, 0), "the text is too short for any unit to vary, so unit 0; "
                                            "--unit N shows another")
    if trace.probabilities is not None and trace.probabilities.std(axis=0).max() > 0:
        final = int(trace.probabilities[-1].argmax())
        correlation = pearson(values, trace.probabilities[:, final])
        # r squared: a wide-ranging unit that barely follows the prediction (a counter) must not win
        best = int(np.argmax(correlation ** 2 * spread))
        return Choice(Unit(layer, gate, best),
                      f"{among}, it moves most in step with the classifier's probability of {trace.label_names[final]} "
                      f"along this text (r = {correlation[best]:+.2f}, standard deviation {spread[best]:.2f}); "
                      f"--unit N shows another")
    best = int(np.argmax(spread))
    return Choice(Unit(layer, gate, best),
                  f"{among}, it varies most along this text (standard deviation {spread[best]:.2f}, the median "
                  f"unit's {np.median(spread):.2f}); --unit N shows another")


def found_unit(score: UnitScore, feature: str, source: str) -> Choice:
    """The unit --find ranked first, and why."""
    return Choice(score.unit, f"of all units, it tracks {FEATURES[feature]} best over {source} "
                              f"(r = {score.correlation:+.3f} over {score.positions:,} positions)")


def pearson(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson's correlation of each column of `values` (positions, width) with `target` (positions,)."""
    centred, target = values - values.mean(axis=0), target - target.mean()
    spread = np.sqrt((centred ** 2).sum(axis=0) * (target ** 2).sum())
    return np.divide(centred.T @ target, spread, out=np.zeros(values.shape[1]), where=spread > 0)


def sampled_ends(steps: int, points: int = PREFIX_POINTS, first: int = 1) -> np.ndarray:
    """At most `points` prefix lengths from `first` to `steps`, spread evenly, both ends among them."""
    return np.unique(np.linspace(first, steps, min(steps - first + 1, points)).round().astype(np.int64))


def spread_to_tokens(values: np.ndarray, ends: np.ndarray, steps: int) -> np.ndarray:
    """Per token, the row of `values` (one per prefix length in `ends`) for the longest prefix that
    ends at or before it (the first row for tokens before them all)."""
    return values[np.maximum(np.searchsorted(ends, np.arange(1, steps + 1), side="right") - 1, 0)]


@torch.inference_mode()
def prefix_prediction(classifier: Classifier, ids: torch.Tensor, top: torch.Tensor, tokens: list[str], text: str
                      ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """What `textgen classify` says of `text` (its `tokens`, ids (1, tokens)) had it ended after each
    token: (probabilities (tokens, classes), each part's weighted logits, where the n-grams decided
    alone). It follows `predict`: the encoder's logits (the text cut as --long-text says) and the
    hashed n-grams' are mixed by the n-gram weight, divided by the temperature and softmaxed; a text
    whose weighted n-gram logits lead by over the decisive margin takes the n-grams' answer alone;
    --long-text chunk averages its chunks' probabilities. `top` (1, tokens, width) is the top layer's
    output along the text."""
    config, steps = classifier.config, ids.shape[1]
    weight = {"recurrent": 0.0, "ngram": 1.0, "both": config.ngram_weight}[config.features]
    parts: dict[str, np.ndarray] = {}
    mixed, owners = 0.0, np.arange(steps)  # the logits of each piece read, and the prefix each belongs to
    if config.features != "ngram":
        encoder, owners = prefix_encoder_logits(classifier, ids, top)  # (pieces, classes), (pieces,)
        mixed = (1 - weight) * encoder
        parts[ENCODER] = np.zeros((steps, encoder.shape[1]))
        np.add.at(parts[ENCODER], owners, mixed)
        parts[ENCODER] /= np.bincount(owners, minlength=steps)[:, None]
    if config.features != "recurrent":
        ends, joined = sampled_ends(steps), "".join(tokens)
        offsets = np.cumsum([len(token) for token in tokens])
        prefixes = [text if end == steps else joined[:offsets[end - 1]] for end in ends]
        ngrams = spread_to_tokens(ngram_logits(classifier, text_buckets(config, prefixes)).double().numpy(), ends, steps)
        parts[NGRAMS] = weight * ngrams
        mixed = mixed + parts[NGRAMS][owners]
    chunked = torch.softmax(torch.as_tensor(mixed, dtype=torch.float64) / config.temperature, dim=1).numpy()
    probabilities = np.zeros((steps, chunked.shape[1]))
    np.add.at(probabilities, owners, chunked)
    probabilities /= np.bincount(owners, minlength=steps)[:, None]
    alone = np.zeros(steps, dtype=bool)
    if config.features == "both" and config.decisive_margin > 0:
        alone = lead(torch.from_numpy(parts[NGRAMS])).numpy() > config.decisive_margin
        ngram_temperature = config.temperatures[CLASSIFIER_FEATURES.index("ngram")]
        probabilities[alone] = torch.softmax(torch.from_numpy(ngrams[alone]).double() / ngram_temperature,
                                             dim=1).numpy()
    return probabilities, parts, alone


@torch.inference_mode()
def prefix_encoder_logits(classifier: Classifier, ids: torch.Tensor, top: torch.Tensor
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's logits of each prefix of `ids` (1, tokens) as `predict` reads it, one row per
    piece it reads, and the prefix (its length - 1) each piece belongs to, in order; `top` (1, tokens,
    width) is the top layer's output along the text."""
    config, steps = classifier.config, ids.shape[1]
    # reading forwards, the pooled features of every prefix it reads whole come from running sums and maxima
    whole = 0 if config.bidirectional else steps if config.long_text == "whole" else min(steps, config.max_len)
    counts = torch.arange(1, whole + 1, dtype=top.dtype)[None, :, None]
    running = top[:, :whole]
    features = torch.cat([running, running.cummax(dim=1).values, running.cumsum(dim=1) / counts], dim=2)
    logits = [classifier.classify_pooled(features[0]).float().numpy()]
    if whole == steps:
        return logits[0], np.arange(steps)
    if config.long_text == "truncate" and whole:  # a longer prefix is cut to the same first max_len tokens
        return np.concatenate([logits[0], np.repeat(logits[0][-1:], steps - whole, axis=0)]), np.arange(steps)
    # the longer prefixes read afresh, as `predict` cuts them, at a few points
    ends, text = sampled_ends(steps, REREAD_POINTS, first=whole + 1), ids[0].numpy()
    pieces, owners = [], []
    for end in ends:
        prefix = text[:end]
        if config.long_text == "chunk":
            chunks = [prefix[start:start + config.max_len] for start in range(0, end, config.max_len)]
        else:
            chunks = [cut_to(prefix, config.max_len, config.long_text)]
        pieces += chunks
        owners += [end] * len(chunks)
    lengths = torch.as_tensor([len(piece) for piece in pieces])
    padded = torch.zeros(len(pieces), int(lengths.max()), dtype=torch.long)  # the padding is masked
    for row, piece in enumerate(pieces):
        padded[row, :len(piece)] = torch.from_numpy(piece)
    reread, owners = classifier.recurrent_logits(padded, lengths).float().numpy(), np.asarray(owners)
    # each later token takes the pieces of the longest sampled prefix that ends at or before it
    latest = spread_to_tokens(ends, ends, steps)[whole:]
    rows = [np.flatnonzero(owners == end) for end in latest]
    logits += [reread[row] for row in rows]
    return (np.concatenate(logits),
            np.concatenate([np.arange(whole)] + [np.full(len(row), whole + k) for k, row in enumerate(rows)]))


def feature_values(feature: str, text: str) -> np.ndarray:
    """The feature at each character of `text`, as it stands right after that character is read."""
    chars = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if feature == "quote":
        return (np.cumsum(chars == ord('"')) % 2).astype(np.float64)
    if feature == "paren":
        opened = np.cumsum((chars == ord("(")).astype(np.int64) - (chars == ord(")")))
        # a closing parenthesis with none open is ignored: depth is the walk reflected at zero
        depth = opened - np.minimum(np.minimum.accumulate(opened), 0)
        return (depth > 0).astype(np.float64)
    newline = chars == ord("\n")
    if feature == "line-position":
        positions = np.arange(len(chars))
        return (positions - np.maximum.accumulate(np.where(newline, positions, -1))).astype(np.float64)
    if feature == "line-start":
        return np.concatenate([[0.0], newline[:-1]]).astype(np.float64)
    raise ValueError(f"unknown feature {feature!r}")


def token_feature(feature: str, text: str, tokens: list[str]) -> np.ndarray:
    """The feature after each token of `text`: its value at the token's last character."""
    ends = np.maximum(np.cumsum([len(token) for token in tokens]) - 1, 0)
    return feature_values(feature, text)[ends]


def corpus_rows(corpus: Corpus, split: str, feature: str, max_chars: int) -> tuple[list[str], np.ndarray | None]:
    """Texts of `split` to measure `feature` over, at most about `max_chars` characters: for the
    label, whole labelled texts and their labels; else the split's text cut into rows."""
    if split not in corpus.splits:
        raise TextgenError(f"--split {split} is not in {corpus.name}; it has: {', '.join(corpus.splits)}")
    if feature == "label":
        rows, labels, total = [], [], 0
        for row in corpus.splits[split]:
            text = row[corpus.text_column]
            if text and text.strip():
                rows.append(text)
                labels.append(row[corpus.label_column])
                total += len(text)
            if total >= max_chars:
                break
        return rows, np.asarray(labels, dtype=np.float64)
    stream, total = [], 0
    for piece in split_texts(corpus, split):
        stream.append(piece[:max_chars - total])
        total += len(stream[-1])
        if total >= max_chars:
            break
    text = "".join(stream)
    return [text[start:start + ROW_CHARS] for start in range(0, len(text), ROW_CHARS)], None


class _Moments:
    """Running sums for Pearson's correlation of many units with one target."""

    def __init__(self, width: int):
        self.count, self.y, self.yy = 0, 0.0, 0.0
        self.x, self.xx, self.xy = np.zeros(width), np.zeros(width), np.zeros(width)

    def add(self, values: np.ndarray, target: np.ndarray) -> None:
        values = values.astype(np.float64)  # (positions, width)
        self.count += len(target)
        self.y += target.sum()
        self.yy += target @ target
        self.x += values.sum(axis=0)
        self.xx += np.einsum("pw,pw->w", values, values)
        self.xy += target @ values

    def correlation(self) -> np.ndarray:
        n = self.count
        covariance = n * self.xy - self.x * self.y
        spread = np.sqrt(np.maximum(n * self.xx - self.x ** 2, 0.0) * max(n * self.yy - self.y ** 2, 0.0))
        return np.divide(covariance, spread, out=np.zeros_like(covariance), where=spread > 1e-12 * n * n)


@torch.inference_mode()
def find_units(model: LanguageModel | Classifier, tokenizer: Tokenizer, rows: list[str], feature: str,
               labels: np.ndarray | None = None, layer: int | None = None, gate: str | None = None,
               batch_size: int = 16, progress: Callable[[int, int], None] | None = None) -> list[UnitScore]:
    """Every unit (of `layer` and `gate` where given), best first by how closely it tracks
    `feature` along `rows`: the absolute Pearson correlation of its value after each token with the
    feature there, or for "label", of its value after each row's last token with the row's label.
    `progress(tokens_read, tokens_in_all)` is called after each batch."""
    model.eval()
    encoded = [np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(rows)]
    keep = [index for index, ids in enumerate(encoded) if len(ids)]
    if feature == "label":
        targets = [np.asarray([labels[index]]) for index in keep]
    else:
        targets = [token_feature(feature, rows[index], token_texts(tokenizer, encoded[index])) for index in keep]
    all_targets = np.concatenate(targets) if targets else np.zeros(0)
    if len(all_targets) < 3 or all_targets.min() == all_targets.max():
        seen = "one value only" if len(all_targets) >= 3 else "fewer than three positions"
        raise TextgenError(f"--find {feature}: {FEATURES[feature]} has {seen} in this text, so no unit can "
                           f"track it; choose another --find feature, --corpus or --split")
    moments: dict[tuple[int, str], _Moments] = {}
    order = sorted(range(len(keep)), key=lambda index: len(encoded[keep[index]]))  # little padding
    total, done = sum(len(encoded[index]) for index in keep), 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        lengths = torch.as_tensor([len(encoded[keep[index]]) for index in batch])
        ids = torch.full((len(batch), int(lengths.max())), tokenizer.pad_id, dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, :lengths[row]] = torch.as_tensor(encoded[keep[index]])
        valid = torch.arange(ids.shape[1])[None, :] < lengths[:, None]  # (batch, time)
        target = np.concatenate([targets[index] for index in batch])
        for number, gates in enumerate(trace_layers(model.rnn, _rnn_inputs(model, ids), lengths)):
            if layer is not None and number != layer:
                continue
            for name, values in gates.items():
                if gate is not None and name != gate:
                    continue
                if feature == "label":  # the value after each row's last token
                    picked = values[torch.arange(len(batch)), lengths - 1]
                else:
                    picked = values[valid]
                moments.setdefault((number, name), _Moments(values.shape[-1])).add(picked.numpy(), target)
        done += int(lengths.sum())
        if progress is not None:
            progress(done, total)
    scores = [UnitScore(Unit(number, name, unit), float(r), stats.count)
              for (number, name), stats in moments.items() for unit, r in enumerate(stats.correlation())]
    return sorted(scores, key=lambda score: -abs(score.correlation))
