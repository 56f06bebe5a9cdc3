"""Views of what `inspection` traced: text coloured by a unit in the terminal, the numbers as JSON,
and one self-contained HTML page with a chart of a classifier's prediction along the text."""

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
from textgen.lab.inspection import FEATURES, Trace, Unit, UnitScore

PAGE_VALUES = 25_000_000  # values one HTML page may hold (1.4 bytes each)


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
