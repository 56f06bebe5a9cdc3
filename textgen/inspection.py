"""Look inside a trained model: every gate of every unit along a text (from the reference cells),
the units that best track a feature of the text over a corpus split, and three views of them:
text coloured by a unit in the terminal, the numbers as JSON, and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from rich.text import Text
from torch import nn

from textgen.cells import gate_names, trace_layers
from textgen.checkpoint import load_checkpoint, load_classifier, load_language_model
from textgen.corpus import Corpus, split_texts
from textgen.errors import TextgenError
from textgen.model import GATE_COUNT, Classifier, LanguageModel, check_memory
from textgen.tokenizer import Tokenizer

FEATURES = {
    "quote": "inside double quotes",
    "paren": "inside parentheses",
    "line-position": "characters since the last line break",
    "line-start": "first character of a line",
    "label": "the text's label (its index among the corpus's labels)",
}
ROW_CHARS = 512        # a language-model corpus is cut into rows this long, read side by side
EXCERPT_CHARS = 1000   # text shown with --find when the user gives none
PAGE_VALUES = 25_000_000  # values one HTML page may hold (1.4 bytes each)
# a bidirectional classifier reads each prefix afresh, so its prediction is sampled at this many points
PREFIX_POINTS = 256


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
    probabilities: np.ndarray | None      # (tokens, classes), classifiers only
    label_names: list[str] | None
    unknown: np.ndarray                   # (tokens,) True where the model read <unk>: it never saw that character

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


@torch.inference_mode()
def trace_text(model: LanguageModel | Classifier, tokenizer: Tokenizer, text: str) -> Trace:
    """Every gate of every layer of `model` along `text`, read from a zero state."""
    ids = torch.as_tensor(tokenizer.encode(text), dtype=torch.long)[None]  # (1, tokens)
    if ids.shape[1] == 0:
        raise TextgenError("the text to inspect is empty; give it some characters")
    rnn = model.rnn
    check_memory(4.0 * ids.shape[1] * rnn.num_layers * rnn.hidden_size * (2 * GATE_COUNT["lstm"] + 2) * 2,
                 f"tracing every unit along {ids.shape[1]:,} tokens", "inspect a shorter text")
    model.eval()
    layers = trace_layers(model.rnn, model.embedding(ids))
    probabilities, label_names = None, None
    if isinstance(model, Classifier):
        probabilities = prefix_probabilities(model, ids, layers[-1]["hidden"])
        label_names = list(model.config.label_names)
    # a character model has one token per character: show the user's own, even those it reads as <unk>
    tokens = list(text) if tokenizer.kind == "char" else token_texts(tokenizer, ids[0].tolist())
    return Trace(tokens, [{name: value[0].numpy() for name, value in layer.items()} for layer in layers],
                 probabilities, label_names, (ids[0] == tokenizer.unk_id).numpy())


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


def model_name(model: str) -> str:
    """What to call `model` (as the user typed it) in a title: a bundled name, a run folder's name, a file's name."""
    path = Path(model)
    if path.suffix == ".pt" and path.stem in ("best", "last") and path.parent.name:
        return f"{path.parent.name}/{path.stem}"
    return path.stem if path.suffix == ".pt" else path.name or model


def page_title(model: str, text: str, words: int = 6, max_chars: int = 40) -> str:
    """"textgen inspect: MODEL on "FIRST WORDS…"": what the page shows, in a few words."""
    split = text.split()
    opening = " ".join(split[:words])[:max_chars]
    cut = len(opening) < len(" ".join(split))
    return f'textgen inspect: {model_name(model)} on "{opening}{"…" if cut else ""}"'


@torch.inference_mode()
def prefix_probabilities(classifier: Classifier, ids: torch.Tensor, top: torch.Tensor) -> np.ndarray:
    """The classifier's class probabilities (tokens, classes) had the text `ids` (1, tokens) ended
    after each token; `top` (1, tokens, width) is its top layer's output along the text."""
    steps = ids.shape[1]
    if not classifier.config.bidirectional:
        # reading forwards, the pooled features of every prefix come from running sums and maxima
        counts = torch.arange(1, steps + 1, dtype=top.dtype)[None, :, None]
        features = torch.cat([top, top.cummax(dim=1).values, top.cumsum(dim=1) / counts], dim=2)
        return torch.softmax(classifier.classify_pooled(features[0]), dim=-1).numpy()
    ends = np.unique(np.linspace(1, steps, min(steps, PREFIX_POINTS)).round().astype(np.int64))
    sampled = []
    for chunk in np.array_split(ends, max(1, len(ends) // 32)):
        lengths = torch.as_tensor(chunk)
        sampled.append(torch.softmax(classifier(ids[:, :int(chunk.max())].expand(len(chunk), -1), lengths),
                                     dim=-1).numpy())
    # each token shows the prediction for the longest sampled prefix that ends at or before it
    latest = np.searchsorted(ends, np.arange(1, steps + 1), side="right") - 1
    return np.concatenate(sampled)[latest]


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
        for number, gates in enumerate(trace_layers(model.rnn, model.embedding(ids), lengths)):
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


def colour(value: float, scale: float) -> tuple[int, int, int]:
    """White at 0, red towards +scale, blue towards -scale (the page's script does the same)."""
    strength = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    fade = round(255 * (1 - 0.8 * abs(strength)))
    return (255, fade, fade) if strength >= 0 else (fade, fade, 255)


def colour_scale(values: np.ndarray) -> float:
    """1 for a unit that stays within [-1, 1] (as sigmoid and tanh outputs do), so colours are
    absolute; else its largest magnitude (a cell state grows without bound)."""
    largest = float(np.abs(values).max()) if values.size else 0.0
    return 1.0 if largest <= 1.0 else largest


def shown(token: str) -> str:
    """A token as displayed: a line break also shows as ↵, so its colour can be seen."""
    return token.replace("\n", "↵\n")


UNKNOWN_STYLE = "underline"  # a character the model never saw (read as <unk>): shown as itself, underlined


def render_unit(trace: Trace, unit: Unit) -> Text:
    """The text coloured by `unit`'s value after each token, for a rich console; characters the
    model does not know are underlined."""
    values = trace.values(unit)
    scale = colour_scale(values)
    text = Text()
    for token, value, unknown in zip(trace.tokens, values.tolist(), trace.unknown.tolist()):
        red, green, blue = colour(value, scale)
        style = f"black on rgb({red},{green},{blue})" + (f" {UNKNOWN_STYLE}" if unknown else "")
        text.append(shown(token), style=style)
    return text


def render_prediction(trace: Trace) -> Text:
    """The text shaded by a classifier's probability, after each token, of the class it predicts at
    the end: white at chance or below, that class's chart colour (never a unit's red or blue) at 1."""
    final = int(trace.probabilities[-1].argmax())
    chance = 1 / trace.probabilities.shape[1]
    target = np.asarray([int(CHART_PALETTE[final % len(CHART_PALETTE)][i:i + 2], 16) for i in (1, 3, 5)])
    text = Text()
    for token, probability in zip(trace.tokens, trace.probabilities[:, final].tolist()):
        strength = min(1.0, max(0.0, (probability - chance) / (1 - chance)))
        red, green, blue = np.round(255 + strength * (target - 255)).astype(int).tolist()
        text.append(shown(token), style=f"black on rgb({red},{green},{blue})")
    return text


def trace_json(trace: Trace, units: list[Unit]) -> dict[str, Any]:
    """Plain data: the tokens, each unit's value after each token, a classifier's predictions."""
    data: dict[str, Any] = {
        "tokens": trace.tokens,
        "unknown": np.flatnonzero(trace.unknown).tolist(),
        "units": [{"layer": u.layer, "gate": u.gate, "unit": u.unit,
                   "values": np.round(trace.values(u).astype(np.float64), 6).tolist()} for u in units],
    }
    if trace.probabilities is not None:
        data["prediction"] = {"labels": trace.label_names,
                              "probabilities": np.round(trace.probabilities.astype(np.float64), 6).tolist()}
    return data


def score_json(score: UnitScore) -> dict[str, Any]:
    """One ranked unit as plain data."""
    return {"layer": score.unit.layer, "gate": score.unit.gate, "unit": score.unit.unit,
            "correlation": round(score.correlation, 6), "positions": score.positions}


def _quantized(values: np.ndarray) -> dict[str, Any]:
    """A gate's values (tokens, width) as 8 bits per value, each unit scaled to its own range."""
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    levels = np.round((values - low) / span * 255).astype(np.uint8).T  # (width, tokens): one unit per row
    return {"low": low.astype(np.float64).round(6).tolist(), "high": high.astype(np.float64).round(6).tolist(),
            "data": base64.b64encode(levels.tobytes()).decode("ascii")}


# the prediction chart's colours: none of them red or blue, which colour the units' values
CHART_PALETTE = ["#1b9e77", "#b8860b", "#7b3294", "#66a61e", "#666666"]
CHART_LABELS = 60  # tokens labelled on the chart's axis at most; longer texts label every k-th


def token_label(token: str, max_chars: int = 10) -> str:
    """A token as an axis label: line breaks and spaces made visible, long ones cut."""
    label = token.replace("\n", "↵").replace("\t", "⇥")
    label = "␣" if label == " " else label.strip() or label.replace(" ", "␣")
    return label if len(label) <= max_chars else label[:max_chars - 1] + "…"


def prediction_svg(probabilities: np.ndarray, label_names: list[str], tokens: list[str]) -> str:
    """An SVG line chart of a classifier's class probabilities (tokens, classes) after each token,
    with axes, ticks, a legend and the tokens as labels along the bottom."""
    left, top, plot_width, plot_height, bottom, right = 56, 12, 760, 180, 78, 110
    count = len(tokens)
    x = (lambda i: left + (i / (count - 1) if count > 1 else 0.5) * plot_width)
    y = (lambda p: top + (1 - p) * plot_height)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="prediction-chart" role="img" '
             f'width="{left + plot_width + right}" height="{top + plot_height + bottom}" '
             f'font-family="ui-monospace, monospace" font-size="11">',
             '<title>the classifier\'s probability of each label, had the text ended at each token</title>']
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_width}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#ddd"/>')
        parts.append(f'<text class="ytick" x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_height}" stroke="#222"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left + plot_width}" y1="{top + plot_height}" '
                 f'y2="{top + plot_height}" stroke="#222"/>')
    parts.append(f'<text class="ylabel" transform="translate(14 {top + plot_height / 2}) rotate(-90)" '
                 f'text-anchor="middle">probability</text>')
    every = -(-count // CHART_LABELS)
    for i in range(0, count, every):
        parts.append(f'<line class="xtick" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top + plot_height}" '
                     f'y2="{top + plot_height + 4}" stroke="#222"/>')
        parts.append(f'<text class="xtick" transform="translate({x(i) + 3:.1f} {top + plot_height + 10}) rotate(60)">'
                     f'{html.escape(token_label(tokens[i]))}</text>')
    parts.append(f'<text class="xlabel" x="{left + plot_width / 2}" y="{top + plot_height + bottom - 4}" '
                 f'text-anchor="middle">token{"" if every == 1 else f" (every {every}th labelled)"}</text>')
    for k, label in enumerate(label_names):
        colour_k = CHART_PALETTE[k % len(CHART_PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(float(p)):.1f}" for i, p in enumerate(probabilities[:, k]))
        parts.append(f'<polyline class="series" points="{points}" fill="none" stroke="{colour_k}" stroke-width="2"/>')
        if count <= CHART_LABELS:
            parts.extend(f'<circle cx="{x(i):.1f}" cy="{y(float(p)):.1f}" r="2.5" fill="{colour_k}"/>'
                         for i, p in enumerate(probabilities[:, k]))
        legend_y = top + 10 + 16 * k
        parts.append(f'<line x1="{left + plot_width + 10}" x2="{left + plot_width + 30}" y1="{legend_y - 4}" '
                     f'y2="{legend_y - 4}" stroke="{colour_k}" stroke-width="3"/>')
        parts.append(f'<text class="legend" x="{left + plot_width + 35}" y="{legend_y}" fill="{colour_k}">'
                     f'{html.escape(str(label))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def html_page(trace: Trace, title: str, initial: Unit, ranking: Sequence[UnitScore] = (),
              feature: str | None = None, layer: int | None = None, gate: str | None = None,
              reason: str = "") -> str:
    """One self-contained HTML page (no external resources) where the reader picks a layer, gate
    and unit and sees the text coloured by it; it opens on `initial` and says why (`reason`), lists
    `ranking` when given, and charts a classifier's prediction along the text. Holds only `layer` /
    `gate` where given."""
    layers = [{name: values for name, values in gates.items() if gate is None or name == gate}
              if layer is None or number == layer else {} for number, gates in enumerate(trace.layers)]
    count = sum(values.size for gates in layers for values in gates.values())
    if count > PAGE_VALUES:
        raise TextgenError(f"the page would hold {count:,} values (over {PAGE_VALUES:,}, about "
                           f"{count * 1.4 / 1e6:.0f} MB); narrow it with --layer and --gate, or give a shorter text")
    data = {
        "title": title, "tokens": trace.tokens, "unknown": np.flatnonzero(trace.unknown).tolist(),
        "layers": [{name: _quantized(values) for name, values in gates.items()} for gates in layers],
        "initial": {"layer": initial.layer, "gate": initial.gate, "unit": initial.unit},
        "reason": reason,
        "feature": FEATURES.get(feature or "", None),
        "ranking": [score_json(score) for score in ranking],
        "prediction": None if trace.probabilities is None else
        {"labels": trace.label_names, "probabilities": np.round(trace.probabilities.astype(np.float64), 4).tolist()},
    }
    chart = "" if trace.probabilities is None else (
        "<div>the classifier's prediction had the text ended at each token:</div>\n"
        + prediction_svg(trace.probabilities, trace.label_names, trace.tokens))
    # inside <script>, "<", ">" and "&" as JSON escapes: no text can close the element or open another
    payload = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    filled = {"title": html.escape(title), "data": payload, "chart": chart}
    # one pass: no text is read twice
    return re.sub(r"\{(title|data|chart)\}", lambda match: filled[match.group(1)], PAGE)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; }
#controls { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; margin-bottom: .8em; }
#controls input { width: 5em; }
#text { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.5; border: 1px solid #ccc;
        padding: .8em; max-height: 60vh; overflow-y: auto; }
#text span { color: #000; }
#readout, #about { font-family: ui-monospace, monospace; margin: .5em 0; min-height: 1.2em; }
#why { margin: .3em 0; color: #555; }
#text span.unknown, .unknown-key { text-decoration: underline wavy #222; text-underline-offset: .25em; }
#ranking button { font-family: ui-monospace, monospace; margin: .1em; }
#ranking button.current { font-weight: bold; }
#legend span { display: inline-block; width: 3em; text-align: center; font-family: ui-monospace, monospace; }
svg { border: 1px solid #ccc; margin-top: .5em; }
</style>
</head>
<body>
<h1>{title}</h1>
<div id="controls">
  <label>layer <select id="layer"></select></label>
  <label>gate <select id="gate"></select></label>
  <label>unit <input id="unit" type="number" min="0" value="0"></label>
  <button id="previous">&larr;</button><button id="next">&rarr;</button>
  <span id="legend"></span>
</div>
<div id="about"></div>
<div id="why"></div>
<div id="ranking"></div>
<div id="readout">hover over the text to read the values</div>
<div id="text"></div>
<div id="unknown-note"></div>
<div id="prediction">{chart}</div>
<script type="application/json" id="data">{data}</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const count = data.tokens.length;
const $ = (id) => document.getElementById(id);
function element(tag, text) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  return made;
}
let current = Object.assign({}, data.initial), values = null, scale = 1;

function colour(value) {
  const strength = Math.max(-1, Math.min(1, scale > 0 ? value / scale : 0));
  const fade = Math.round(255 * (1 - 0.8 * Math.abs(strength)));
  return strength >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
}
function unitValues(layer, gate, unit) {
  const stored = data.layers[layer][gate];
  if (!stored.bytes) {
    const raw = atob(stored.data);
    stored.bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) stored.bytes[i] = raw.charCodeAt(i);
  }
  const low = stored.low[unit], span = stored.high[unit] - low, out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = low + stored.bytes[unit * count + i] / 255 * span;
  return out;
}
const unknown = new Set(data.unknown);
const spans = data.tokens.map((token, i) => {
  const span = element("span", token.replace(/\\n/g, "\\u21b5\\n"));
  if (unknown.has(i)) span.className = "unknown";
  span.addEventListener("mouseenter", () => readout(i));
  $("text").appendChild(span);
  return span;
});
function readout(i) {
  let line = `token ${i} ${JSON.stringify(data.tokens[i])}${unknown.has(i) ? " (unknown to the model)" : ""}: ` +
    values[i].toFixed(4);
  if (data.prediction) {
    line += "   prediction: " + data.prediction.labels.map((label, k) =>
      `${label} ${data.prediction.probabilities[i][k].toFixed(3)}`).join(", ");
  }
  $("readout").textContent = line;
}
function fillSelect(select, options, chosen) {
  select.replaceChildren(...options.map((option) => {
    const made = element("option", String(option));
    made.value = option;
    return made;
  }));
  select.value = chosen;
}
function show() {
  const layers = data.layers.map((gates, i) => i).filter((i) => Object.keys(data.layers[i]).length);
  fillSelect($("layer"), layers, current.layer);
  const gates = Object.keys(data.layers[current.layer]);
  if (!gates.includes(current.gate)) current.gate = gates[0];
  fillSelect($("gate"), gates, current.gate);
  const width = data.layers[current.layer][current.gate].low.length;
  current.unit = Math.max(0, Math.min(width - 1, current.unit));
  $("unit").max = width - 1;
  $("unit").value = current.unit;
  values = unitValues(current.layer, current.gate, current.unit);
  let largest = 0;
  for (const v of values) largest = Math.max(largest, Math.abs(v));
  scale = largest <= 1 ? 1 : largest;
  spans.forEach((span, i) => {
    span.style.background = colour(values[i]);
    span.title = values[i].toFixed(4) + (unknown.has(i) ? " (not in the model's vocabulary: read as unknown)" : "");
  });
  $("legend").replaceChildren(...[-1, -0.5, 0, 0.5, 1].map((f) => {
    const s = element("span", (f * scale).toPrecision(2)); s.style.background = colour(f * scale); return s; }));
  const ranked = data.ranking.find((r) =>
    r.layer === current.layer && r.gate === current.gate && r.unit === current.unit);
  $("about").textContent = `layer ${current.layer} ${current.gate} unit ${current.unit} (of ${width})` +
    (ranked ? `: correlation ${ranked.correlation.toFixed(3)} with ${data.feature} over ` +
              `${ranked.positions.toLocaleString("en")} positions` : "");
  for (const button of $("ranking").querySelectorAll("button")) {
    button.classList.toggle("current", button.dataset.key === `${current.layer}/${current.gate}/${current.unit}`);
  }
}
if (data.ranking.length) {
  $("ranking").appendChild(element("span", `units that best track ${data.feature}: `));
  for (const r of data.ranking) {
    const button = element("button", `layer ${r.layer} ${r.gate} ${r.unit}: r = ${r.correlation.toFixed(3)}`);
    button.dataset.key = `${r.layer}/${r.gate}/${r.unit}`;
    button.addEventListener("click", () => { current = {layer: r.layer, gate: r.gate, unit: r.unit}; show(); });
    $("ranking").appendChild(button);
  }
}
$("layer").addEventListener("change", (e) => { current.layer = Number(e.target.value); show(); });
$("gate").addEventListener("change", (e) => { current.gate = e.target.value; show(); });
$("unit").addEventListener("change", (e) => { current.unit = Number(e.target.value) || 0; show(); });
$("previous").addEventListener("click", () => { current.unit -= 1; show(); });
$("next").addEventListener("click", () => { current.unit += 1; show(); });
if (data.reason) $("why").textContent = `why this unit: ${data.reason}`;
if (unknown.size) {
  const key = element("span", "wavy underline");
  key.className = "unknown-key";
  $("unknown-note").append(key, `: ${unknown.size} character${unknown.size > 1 ? "s" : ""} the model never saw ` +
    "in training; it reads each as one unknown symbol");
}
show();
</script>
</body>
</html>
"""
