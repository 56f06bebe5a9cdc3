"""Views of what `inspection` traced: text coloured by a unit in the terminal (numbers where colour
cannot show), the numbers as JSON, and one self-contained HTML page (`page.PAGE`) with a chart of
what a classifier says along the text."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.text import Text

from textgen.errors import TextgenError
from textgen.lab.cells import GRU_GATES, LSTM_GATES
from textgen.lab.inspection import FEATURES, Trace, Unit, UnitScore
from textgen.lab.page import PAGE

PAGE_BYTES_PER_VALUE = 8 / 3  # a half float in base64
PAGE_VALUES = 12_000_000      # values one HTML page may hold (about 32 MB)
GRID_TOKENS = 1000            # tokens the page's grids show (the coloured text shows them all)
SIGMOID_GATES = ("input", "forget", "output", "reset", "update")  # between 0 and 1: coloured on their own scale
GATE_COLOUR = (84, 39, 143)   # a gate at 1: violet, apart from the units' red and blue and the chart's colours


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


def colour(value: float, scale: float) -> tuple[int, int, int]:
    """White at 0, red towards +scale, blue towards -scale (the page's script does the same)."""
    strength = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    fade = round(255 * (1 - 0.8 * abs(strength)))
    return (255, fade, fade) if strength >= 0 else (fade, fade, 255)


def gate_colour(value: float) -> tuple[int, int, int]:
    """White at 0 (closed), violet at 1 (open), for a gate between 0 and 1 (the page's script does the same)."""
    strength = max(0.0, min(1.0, value))
    return tuple(round(255 - (255 - full) * strength) for full in GATE_COLOUR)


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
    """The text coloured by `unit`'s value after each token, for a rich console (a gate white to
    violet over 0 to 1, else white at 0, red up, blue down); characters the model does not know are
    underlined."""
    values = trace.values(unit)
    scale = colour_scale(values)
    text = Text()
    for token, value, unknown in zip(trace.tokens, values.tolist(), trace.unknown.tolist()):
        red, green, blue = gate_colour(value) if unit.gate in SIGMOID_GATES else colour(value, scale)
        ink = "white" if unit.gate in SIGMOID_GATES and value > 0.55 else "black"
        style = f"{ink} on rgb({red},{green},{blue})" + (f" {UNKNOWN_STYLE}" if unknown else "")
        text.append(shown(token), style=style)
    return text


def colour_key(units: Sequence[Unit], unknown: bool) -> str:
    """What the terminal's colours mean for `units`."""
    keys = ["gates white (0, closed) to violet (1, open)"] if any(u.gate in SIGMOID_GATES for u in units) else []
    keys += ["red high, blue low"] if any(u.gate not in SIGMOID_GATES for u in units) else []
    return ", ".join(keys + (["underlined: unknown to the model"] if unknown else []))


def numbers_table(trace: Trace, units: Sequence[Unit]) -> str:
    """Plain text, one line per token: its position, the token, each unit's value after it and a
    classifier's probabilities, for where colour cannot show (a pipe, NO_COLOR, a dumb terminal)."""
    columns = [str(unit) for unit in units]
    rows = [trace.values(unit) for unit in units]
    if trace.probabilities is not None:
        columns += [f"P({label})" for label in trace.label_names]
        rows += list(trace.probabilities.T)
    widths = [max(len(column), 8) for column in columns]
    token_width = max(5, *(len(token_label(token)) for token in trace.tokens))
    lines = ["   # " + "token".ljust(token_width) + "".join(f"  {c:>{w}}" for c, w in zip(columns, widths))]
    for index, token in enumerate(trace.tokens):
        cells = "".join(f"  {float(row[index]):>+{w}.4f}" for row, w in zip(rows, widths))
        lines.append(f"{index + 1:>4} {token_label(token).ljust(token_width)}{cells}")
    return "\n".join(lines)


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
    """Plain data: the tokens, each unit's value after each token, a classifier's predictions (what
    `classify` gives each prefix, each part's weighted logits, where the n-grams decided alone)."""
    data: dict[str, Any] = {
        "tokens": trace.tokens,
        "unknown": np.flatnonzero(trace.unknown).tolist(),
        "units": [{"layer": u.layer, "gate": u.gate, "unit": u.unit,
                   "values": np.round(trace.values(u).astype(np.float64), 6).tolist()} for u in units],
    }
    if trace.probabilities is not None:
        data["prediction"] = {"labels": trace.label_names,
                              "probabilities": np.round(trace.probabilities.astype(np.float64), 6).tolist(),
                              **(trace.classifier or {})}
        if trace.parts:
            data["prediction"]["parts"] = {name: np.round(logits.astype(np.float64), 6).tolist()
                                           for name, logits in trace.parts.items()}
            data["prediction"]["ngrams_alone"] = np.flatnonzero(trace.ngrams_alone).tolist()
    return data


def prediction_how(trace: Trace) -> str:
    """One sentence: how the charted probabilities are made (what `textgen classify` computes)."""
    how = trace.classifier or {"features": "recurrent", "temperature": 1.0}
    temperature = f"divided by the temperature {how['temperature']:.3g}, softmaxed"
    if how["features"] == "recurrent":
        return f"the recurrent encoder's logits, {temperature}."
    if how["features"] == "ngram":
        return f"the hashed word n-grams' logits alone (the encoder is not used), {temperature}."
    weight = how["ngram_weight"]
    alone = (f"; where the weighted n-gram logits lead by more than {how['decisive_margin']:.3g}, the n-grams "
             f"decide alone, as classify does" if how["decisive_margin"] else "")
    return (f"the recurrent encoder and the hashed word n-grams, their logits mixed as {1 - weight:.2f} × encoder + "
            f"{weight:.2f} × n-grams, {temperature}{alone}.")


def share_leads(trace: Trace) -> dict[str, np.ndarray]:
    """Each part's weighted logits toward the class predicted at the end: its logit for that class
    minus the mean of its others, after each token (their sum, over the temperature, is the lead)."""
    final = int(trace.probabilities[-1].argmax())
    return {name: logits[:, final] - np.delete(logits, final, axis=1).mean(axis=1)
            for name, logits in (trace.parts or {}).items()}


def score_json(score: UnitScore) -> dict[str, Any]:
    """One ranked unit as plain data."""
    return {"layer": score.unit.layer, "gate": score.unit.gate, "unit": score.unit.unit,
            "correlation": round(score.correlation, 6), "positions": score.positions}


# the prediction chart's colours: none of them red or blue, which colour the units' values
CHART_PALETTE = ["#1b9e77", "#b8860b", "#7b3294", "#66a61e", "#666666"]
CHART_LABELS = 60  # tokens labelled on the chart's axis at most; longer texts label every k-th


def token_label(token: str, max_chars: int = 10) -> str:
    """A token as an axis label: line breaks and spaces made visible, long ones cut."""
    label = token.replace("\n", "↵").replace("\t", "⇥")
    label = "␣" if label == " " else label.strip() or label.replace(" ", "␣")
    return label if len(label) <= max_chars else label[:max_chars - 1] + "…"


def line_chart(chart_id: str, title: str, series: Sequence[tuple[str, np.ndarray, str]], tokens: list[str],
               ticks: Sequence[float], ylabel: str) -> str:
    """An SVG line chart of `series` (label, a value after each token, colour) over the range of
    `ticks`, with axes, ticks, a legend and the tokens as labels along the bottom."""
    left, top, plot_width, plot_height, bottom, right = 56, 12, 760, 180, 78, 110
    count, low, high = len(tokens), min(ticks), max(ticks)
    x = (lambda i: left + (i / (count - 1) if count > 1 else 0.5) * plot_width)
    y = (lambda v: top + (high - v) / (high - low) * plot_height)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{chart_id}" role="img" '
             f'width="{left + plot_width + right}" height="{top + plot_height + bottom}" '
             f'font-family="ui-monospace, monospace" font-size="11">', f"<title>{html.escape(title)}</title>"]
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_width}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="{"#999" if tick == 0 and low < 0 else "#ddd"}"/>')
        parts.append(f'<text class="ytick" x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_height}" stroke="#222"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left + plot_width}" y1="{top + plot_height}" '
                 f'y2="{top + plot_height}" stroke="#222"/>')
    parts.append(f'<text class="ylabel" transform="translate(14 {top + plot_height / 2}) rotate(-90)" '
                 f'text-anchor="middle">{html.escape(ylabel)}</text>')
    every = -(-count // CHART_LABELS)
    for i in range(0, count, every):
        parts.append(f'<line class="xtick" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top + plot_height}" '
                     f'y2="{top + plot_height + 4}" stroke="#222"/>')
        parts.append(f'<text class="xtick" transform="translate({x(i) + 3:.1f} {top + plot_height + 10}) rotate(60)">'
                     f'{html.escape(token_label(tokens[i]))}</text>')
    parts.append(f'<text class="xlabel" x="{left + plot_width / 2}" y="{top + plot_height + bottom - 4}" '
                 f'text-anchor="middle">token{"" if every == 1 else f" (every {every}th labelled)"}</text>')
    for k, (label, values, colour_k) in enumerate(series):
        clipped = np.clip(values.astype(np.float64), low, high)
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(clipped.tolist()))
        parts.append(f'<polyline class="series" points="{points}" fill="none" stroke="{colour_k}" stroke-width="2"/>')
        if count <= CHART_LABELS:
            parts.extend(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour_k}"/>'
                         for i, v in enumerate(clipped.tolist()))
        legend_y = top + 10 + 16 * k
        parts.append(f'<line x1="{left + plot_width + 10}" x2="{left + plot_width + 30}" y1="{legend_y - 4}" '
                     f'y2="{legend_y - 4}" stroke="{colour_k}" stroke-width="3"/>')
        parts.append(f'<text class="legend" x="{left + plot_width + 35}" y="{legend_y}" fill="{colour_k}">'
                     f'{html.escape(str(label))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


SHARE_COLOURS = {"encoder": "#555555", "n-grams": "#a6761d"}  # neither red nor blue, nor a class's colour


def prediction_charts(trace: Trace) -> str:
    """The classifier's part of the page: what it computes, the probability of each label had the
    text ended at each token, the value at the end, and each part's share of the logits."""
    probabilities, labels = trace.probabilities, trace.label_names
    final = int(probabilities[-1].argmax())
    ending = ", ".join(f"{label} {p:.3f}" for label, p in zip(labels, probabilities[-1].tolist()))
    parts = [f'<h2>What the classifier says along the text</h2>\n<div id="prediction-how">The same as '
             f'<code>textgen classify</code>: {html.escape(prediction_how(trace))}</div>',
             f'<div>At the end of the text: <strong id="prediction-end">{html.escape(ending)}</strong>, what '
             f'<code>textgen classify</code> says of the whole text. The chart gives what it would say had the text '
             f'ended after each token:</div>',
             line_chart("prediction-chart", "the classifier's probability of each label, had the text ended at "
                        "each token", [(label, probabilities[:, k], CHART_PALETTE[k % len(CHART_PALETTE)])
                                       for k, label in enumerate(labels)],
                        trace.tokens, (0, 0.25, 0.5, 0.75, 1), "probability")]
    leads = share_leads(trace)
    if len(leads) > 1:
        largest = max(float(np.abs(lead).max()) for lead in leads.values())
        top = float(np.ceil(max(largest, 0.1) * 2) / 2)
        parts += [f'<div id="shares-how">Each part\'s share: its weighted logit for {html.escape(str(labels[final]))} '
                  f'minus its others\' (above 0 pushes toward {html.escape(str(labels[final]))}); the two add up '
                  f'to the lead that the temperature and softmax turn into the probability above.</div>',
                  line_chart("shares-chart", f"each part's push toward {labels[final]} along the text",
                             [(name, lead, SHARE_COLOURS[name]) for name, lead in leads.items()], trace.tokens,
                             (-top, -top / 2, 0, top / 2, top), f"toward {labels[final]}")]
    return "\n".join(parts)


def _half_floats(values: np.ndarray) -> dict[str, Any]:
    """A gate's values (tokens, width) as half floats, one unit's run along the text after another."""
    stored = values.astype("<f2").T.copy()  # (width, tokens)
    return {"width": values.shape[1], "data": base64.b64encode(stored.tobytes()).decode("ascii")}


def html_page(trace: Trace, title: str, initial: Unit, ranking: Sequence[UnitScore] = (),
              feature: str | None = None, layer: int | None = None, gate: str | None = None,
              reason: str = "") -> str:
    """One self-contained HTML page (no external resources) where the reader picks a layer, gate
    and unit and sees the text coloured by it, every gate of that unit at any character with the
    cell's equations filled in, and many units along the text ranked by `ranking` or a pattern; it
    opens on `initial` and says why (`reason`), and charts a classifier's prediction (what
    `classify` computes) along the text. Holds only `layer` where given, and only `gate` where the
    page would otherwise hold over PAGE_VALUES values."""
    layers = [gates if layer is None or number == layer else {} for number, gates in enumerate(trace.layers)]
    inputs = [{} if not gates or trace.preactivations is None else trace.preactivations[number]
              for number, gates in enumerate(layers)]
    count = (sum(values.size for gates in layers for values in gates.values())
             + sum(2 * x.size for parts in inputs for x, _ in parts.values()))
    if count > PAGE_VALUES and gate is not None:  # every gate fills the equations; where too many, --gate's only
        layers = [{name: values for name, values in gates.items() if name == gate} for gates in layers]
        inputs = [{} for _ in layers]
        count = sum(values.size for gates in layers for values in gates.values())
    if count > PAGE_VALUES:
        raise TextgenError(f"the page would hold {count:,} values (over {PAGE_VALUES:,}, about "
                           f"{count * PAGE_BYTES_PER_VALUE / 1e6:.0f} MB); narrow it with --layer and --gate, "
                           f"or give a shorter text")
    names = set(trace.layers[0])
    data = {
        "title": title, "tokens": trace.tokens, "unknown": np.flatnonzero(trace.unknown).tolist(),
        "cell": "lstm" if names == set(LSTM_GATES) else "gru" if names == set(GRU_GATES) else "rnn",
        "directions": trace.directions, "sigmoid": SIGMOID_GATES, "grid_tokens": GRID_TOKENS,
        "token_word": "character" if all(len(token) == 1 for token in trace.tokens) else "token",
        "layers": [{name: _half_floats(values) for name, values in gates.items()} for gates in layers],
        # each gate's sum inside its σ or tanh, as its part from x_t and its part from h_t-1
        "preactivations": [{name: {"x": _half_floats(x), "h": _half_floats(h)} for name, (x, h) in parts.items()}
                           for parts in inputs],
        "initial": {"layer": initial.layer, "gate": initial.gate, "unit": initial.unit},
        "reason": reason,
        "feature": FEATURES.get(feature or "", None),
        "ranking": [score_json(score) for score in ranking],
        "prediction": None,
    }
    if trace.probabilities is not None:
        data["prediction"] = {
            "labels": trace.label_names, "final": int(trace.probabilities[-1].argmax()),
            "probabilities": np.round(trace.probabilities.astype(np.float64), 4).tolist(),
            "shares": {name: np.round(lead, 3).tolist() for name, lead in share_leads(trace).items()},
            "alone": [] if trace.ngrams_alone is None else np.flatnonzero(trace.ngrams_alone).tolist()}
    charts = "" if trace.probabilities is None else prediction_charts(trace)
    # inside <script>, "<", ">" and "&" as JSON escapes: no text can close the element or open another
    payload = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    filled = {"title": html.escape(title), "data": payload, "charts": charts}
    # one pass: no text is read twice
    return re.sub(r"\{(title|data|charts)\}", lambda match: filled[match.group(1)], PAGE)
