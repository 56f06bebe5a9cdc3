"""The inspect page's static parts: its HTML, style and script, which `views.html_page` fills with a
trace's data (`{title}`, `{data}`, `{charts}`). Kept apart so that views.py reads as Python."""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 75em; }
h1 { font-size: 1.2em; }
h2 { font-size: 1em; margin: 1.4em 0 .4em; }
.intro, .note { color: #555; margin: .3em 0; }
#controls { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; margin-bottom: .6em; }
#controls input { width: 5em; }
.mono, #text, #readout, #about, table.grid, #equations { font-family: ui-monospace, monospace; }
#text { white-space: pre-wrap; line-height: 1.6; border: 1px solid #ccc; padding: .8em; max-height: 40vh;
        overflow-y: auto; cursor: pointer; }
#text span.focus, table.grid td.focus { outline: 2px solid #111; outline-offset: -1px; }
#text span.matched { box-shadow: inset 0 -3px 0 #e08b00; }
#text span.unknown, .unknown-key { text-decoration: underline wavy #222; text-underline-offset: .25em; }
#about { font-weight: bold; margin: .5em 0 .2em; }
#why { color: #555; margin: .2em 0 .5em; }
#readout { margin: .5em 0; min-height: 1.2em; }
#legend span { display: inline-block; min-width: 3.2em; text-align: center; font-family: ui-monospace, monospace;
               border: 1px solid #ddd; }
#ranking button, #units th button { font-family: ui-monospace, monospace; margin: .1em; }
#ranking button.current, #units tr.current th button { font-weight: bold; }
#equations { border-collapse: collapse; margin: .3em 0; }
#equations td { padding: .15em .5em; vertical-align: top; white-space: nowrap; }
#equations div.meaning { white-space: normal; font-size: .85em; }
#equations td.value { font-weight: bold; text-align: right; }
#equations .meaning { color: #555; font-family: system-ui, sans-serif; }
#equations tr.current td { background: #f3f0f8; }
#in-words, #gate-why { margin: .4em 0; }
.scroll { overflow-x: auto; border: 1px solid #ccc; max-height: 60vh; }
table.grid { border-collapse: collapse; font-size: 12px; }
table.grid th { position: sticky; left: 0; background: #fff; text-align: right; padding: 0 .4em; white-space: nowrap;
                font-weight: normal; z-index: 1; }
table.grid thead th { position: sticky; top: 0; z-index: 2; }
table.grid thead td { position: sticky; top: 0; background: #fff; text-align: center; font-weight: bold; }
table.grid td { text-align: center; min-width: 1.1em; padding: 1px 2px; white-space: pre; }
table.grid.numbers td { min-width: 2.6em; }
svg { border: 1px solid #ccc; margin-top: .5em; }
</style>
</head>
<body>
<h1>{title}</h1>
<p class="intro">The model reads the text one character (or token) at a time. Each unit of each layer keeps a
few numbers, its <em>gates</em> and states, which change after every character. Pick a unit, then hover over
or click a character to see every gate of that unit there and the cell's equations with those numbers.</p>
<div id="controls">
  <label>layer <select id="layer"></select></label>
  <label>gate <select id="gate"></select></label>
  <label>unit <input id="unit" type="number" min="0" value="0"></label>
  <button id="previous" title="previous unit">&larr;</button><button id="next" title="next unit">&rarr;</button>
  <span id="legend"></span>
</div>
<div id="about"></div>
<div id="why"></div>
<div id="ranking"></div>
<div id="text"></div>
<div id="unknown-note" class="note"></div>
<div id="readout"></div>
<div id="prediction">{charts}</div>
<h2>This unit at the chosen <span class="token-word">character</span></h2>
<div id="step"><table id="equations"></table><div id="gate-why"></div><div id="in-words"></div></div>
<h2>Every gate of this unit along the text</h2>
<div class="note">Each row is one gate or state of the unit, each column a character; the numbers are the values
right after the model read that character.</div>
<div class="scroll"><div id="unit-gates"></div></div>
<h2>Many units along the text</h2>
<div class="note">One row per unit, coloured as above (as in Karpathy et al.'s and LSTMVis's views). Type a
pattern or select part of the text above to rank the units by how differently they behave there; click a
unit's name to look at it.</div>
<div id="units-controls" class="mono">
  <label>rank by <select id="sort"></select></label>
  <label>pattern <input id="pattern" placeholder="a regular expression, e.g. [A-Z]"></label>
  <label>rows <select id="rows"><option>10</option><option selected>20</option><option>50</option>
    <option>100</option></select></label>
  <span id="pattern-note"></span>
</div>
<div class="scroll"><div id="units"></div></div>
<script type="application/json" id="data">{data}</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const count = data.tokens.length;
const shownTokens = Math.min(count, data.grid_tokens);
const $ = (id) => document.getElementById(id);
function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  if (className) made.className = className;
  return made;
}
const SIGMOID = new Set(data.sigmoid);
const MEANING = {
  input: "how much of the candidate is written into the cell (0 none, 1 all)",
  forget: "how much of the previous cell state is kept (0 forget it, 1 keep it all)",
  candidate: data.cell === "gru" ? "the new state proposed (-1 to 1)" : "the new content proposed for the cell (-1 to 1)",
  cell: "the unit's memory: kept by the forget gate, written by the input gate (no bounds)",
  output: "how much of the cell is shown as the hidden state (0 none, 1 all)",
  hidden: "what the unit passes on, to the next layer and the next step",
  reset: "how much of the previous state the candidate reads (0 none, 1 all)",
  update: "how much of the previous state is kept (1 keep it, 0 take the candidate)",
};
const SYMBOL = {gru: {reset: "r", update: "z", candidate: "n", hidden: "h"}, rnn: {hidden: "h"},
                lstm: {input: "i", forget: "f", candidate: "c~", cell: "c", output: "o", hidden: "h"}}[data.cell];

// the values are stored as IEEE half floats, one unit's run along the text after another
const HALF = new Float32Array(65536);
for (let bits = 0; bits < 65536; bits++) {
  const exponent = (bits >> 10) & 31, fraction = bits & 1023;
  const size = exponent === 0 ? fraction * 2 ** -24 : exponent === 31 ? (fraction ? NaN : Infinity)
    : (1 + fraction / 1024) * 2 ** (exponent - 15);
  HALF[bits] = bits & 32768 ? -size : size;
}
const decoded = new Map();
function decode(key, stored) {
  if (!decoded.has(key)) {
    const raw = atob(stored.data), out = new Float32Array(raw.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = HALF[raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8)];
    decoded.set(key, out);
  }
  return decoded.get(key);
}
const gateValues = (layer, gate) => decode(`${layer}/${gate}`, data.layers[layer][gate]);
// a gate's part from x_t and its part from h_t-1 at token i, or null where the page lacks them
function gateInputs(gate, i) {
  const parts = (data.preactivations[current.layer] || {})[gate];
  if (!parts || current.unit >= parts.x.width) return null;
  const at = (k) => decode(`${current.layer}/${gate}/${k}`, parts[k])[current.unit * count + i];
  return [at("x"), at("h")];
}
const has = (layer, gate) => Boolean(data.layers[layer] && data.layers[layer][gate]);
const widthOf = (layer, gate) => data.layers[layer][gate].width;
const unitValues = (layer, gate, unit) => gateValues(layer, gate).subarray(unit * count, (unit + 1) * count);

// gates (sigmoids) on their own 0-1 scale, white to violet; the rest white at 0, red up, blue down
function scaleFor(gate, values) {
  if (SIGMOID.has(gate)) return {gate: true, largest: 1};
  let largest = 0;
  for (const v of values) largest = Math.max(largest, Math.abs(v));
  return {gate: false, largest: largest <= 1 ? 1 : largest};
}
function colour(value, scale) {
  if (scale.gate) {
    const s = Math.max(0, Math.min(1, value));
    return `rgb(${Math.round(255 - 171 * s)},${Math.round(255 - 216 * s)},${Math.round(255 - 112 * s)})`;
  }
  const strength = Math.max(-1, Math.min(1, value / scale.largest));
  const fade = Math.round(255 * (1 - 0.8 * Math.abs(strength)));
  return strength >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
}
const ink = (value, scale) => (scale.gate && value > 0.55 ? "#fff" : "#000");
const number = (v) => (Number.isNaN(v) ? "n/a" : v.toFixed(3));
const term = (v) => (v < 0 ? `(${number(v)})` : number(v));
const tokenName = (i) => `${data.token_word} ${i + 1} ${JSON.stringify(data.tokens[i])}`;
const label = (token) => token === " " ? "\u2423" : token.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
const unknown = new Set(data.unknown);
const same = (a, b) => a.layer === b.layer && a.gate === b.gate && a.unit === b.unit;

let current = Object.assign({}, data.initial), focus = count - 1, pinned = false, mask = null;
let values = null, scale = null, focusCells = [];

const spans = data.tokens.map((token, i) => {
  const span = element("span", token.replace(/\n/g, "\u21b5\n"), unknown.has(i) ? "unknown" : "");
  span.dataset.index = i;
  $("text").appendChild(span);
  return span;
});

function fillSelect(select, options, chosen) {
  select.replaceChildren(...options.map(([value, text]) => {
    const made = element("option", text);
    made.value = value;
    return made;
  }));
  select.value = chosen;
}

function show() {
  const layers = data.layers.map((gates, i) => i).filter((i) => Object.keys(data.layers[i]).length);
  fillSelect($("layer"), layers.map((i) => [i, i]), current.layer);
  const gates = Object.keys(data.layers[current.layer]);
  if (!gates.includes(current.gate)) current.gate = gates[0];
  fillSelect($("gate"), gates.map((g) => [g, g]), current.gate);
  const width = widthOf(current.layer, current.gate);
  current.unit = Math.max(0, Math.min(width - 1, current.unit));
  $("unit").max = width - 1;
  $("unit").value = current.unit;
  values = unitValues(current.layer, current.gate, current.unit);
  scale = scaleFor(current.gate, values);
  spans.forEach((span, i) => {
    span.style.background = colour(values[i], scale);
    span.style.color = ink(values[i], scale);
    span.title = number(values[i]) + (unknown.has(i) ? " (not in the model's vocabulary: read as unknown)" : "");
  });
  const ticks = scale.gate ? [0, 0.25, 0.5, 0.75, 1] : [-1, -0.5, 0, 0.5, 1].map((f) => f * scale.largest);
  $("legend").replaceChildren(element("span", scale.gate ? "gate scale:" : "scale:"), ...ticks.map((v) => {
    const s = element("span", Number(v.toPrecision(2)).toString());
    s.style.background = colour(v, scale);
    s.style.color = ink(v, scale);
    return s;
  }));
  const ranked = data.ranking.find((r) => same(r, current));
  $("about").textContent = `layer ${current.layer} ${current.gate} unit ${current.unit} (of ${width}): ` +
    `${MEANING[current.gate] || ""}` + (ranked ? `; correlation ${ranked.correlation.toFixed(3)} with ` +
    `${data.feature} over ${ranked.positions.toLocaleString("en")} positions` : "");
  const opened = `layer ${data.initial.layer} ${data.initial.gate} unit ${data.initial.unit}`;
  $("why").textContent = !data.reason ? "" : same(current, data.initial) ? `why this unit: ${data.reason}`
    : `you chose this unit; the page opened on ${opened} because ${data.reason.replace(/; --unit N.*$/, "")}`;
  for (const button of $("ranking").querySelectorAll("button")) {
    button.classList.toggle("current", button.dataset.key === `${current.layer}/${current.gate}/${current.unit}`);
  }
  focusCells = [];
  drawUnitGates();
  drawUnits();
  setFocus(focus);
}

function grid(rows, numbers) {
  const table = element("table", undefined, numbers ? "grid numbers" : "grid");
  const head = element("tr");
  head.appendChild(element("th"));
  for (let i = 0; i < shownTokens; i++) head.appendChild(element("td", label(data.tokens[i])));
  const thead = element("thead");
  thead.appendChild(head);
  table.appendChild(thead);
  for (const row of rows) {
    const tr = element("tr", undefined, row.current ? "current" : "");
    const th = element("th");
    if (row.pick) {
      const button = element("button", row.name);
      button.addEventListener("click", row.pick);
      th.appendChild(button);
    } else th.textContent = row.name;
    if (row.note) th.appendChild(element("span", ` ${row.note}`));
    tr.appendChild(th);
    const rowScale = scaleFor(row.gate, row.values);
    for (let i = 0; i < shownTokens; i++) {
      const v = row.values[i], cell = element("td", numbers ? v.toFixed(2) : label(data.tokens[i]));
      cell.style.background = colour(v, rowScale);
      cell.style.color = ink(v, rowScale);
      cell.title = `${row.name} after ${tokenName(i)}: ${number(v)}`;
      cell.dataset.index = i;
      cell.dataset.value = v;
      (focusCells[i] ??= []).push(cell);
      tr.appendChild(cell);
    }
    table.appendChild(tr);
  }
  return table;
}
const cutNote = () => shownTokens < count ? element("div", `the first ${shownTokens} of ${count} tokens`, "note") : "";

function drawUnitGates() {
  const rows = Object.keys(data.layers[current.layer]).filter((g) => current.unit < widthOf(current.layer, g))
    .map((g) => ({name: `${SYMBOL[g] || g} ${g}`, gate: g, values: unitValues(current.layer, g, current.unit),
                  current: g === current.gate, pick: () => { current.gate = g; show(); }}));
  $("unit-gates").replaceChildren(grid(rows, true), cutNote());
}

function rankedUnits() {
  const sort = $("sort").value, rows = Number($("rows").value);
  if (sort === "find") {
    return data.ranking.slice(0, rows).map((r) => ({layer: r.layer, gate: r.gate, unit: r.unit,
                                                    note: `r ${r.correlation >= 0 ? "+" : ""}${r.correlation.toFixed(2)}`}));
  }
  const {layer, gate} = current, all = gateValues(layer, gate), scored = [];
  const inside = mask ? mask.filter(Boolean).length : 0;
  for (let unit = 0; unit < widthOf(layer, gate); unit++) {
    let sum = 0, squares = 0, sumIn = 0;
    for (let i = 0; i < count; i++) {
      const v = all[unit * count + i];
      sum += v;
      squares += v * v;
      if (mask && mask[i]) sumIn += v;
    }
    const mean = sum / count, spread = Math.sqrt(Math.max(0, squares / count - mean * mean));
    if (sort === "pattern" && mask && inside < count) {
      // how far the unit's mean on the pattern is from its mean elsewhere, in its own standard deviations
      const score = spread > 0 ? (sumIn / inside - (sum - sumIn) / (count - inside)) / spread : 0;
      scored.push({layer, gate, unit, score, note: `${score >= 0 ? "+" : ""}${score.toFixed(2)} sd on the pattern`});
    } else scored.push({layer, gate, unit, score: spread, note: `sd ${spread.toFixed(3)}`});
  }
  return scored.sort((a, b) => Math.abs(b.score) - Math.abs(a.score)).slice(0, rows);
}

function drawUnits() {
  const rows = rankedUnits().map((u) => ({
    name: `layer ${u.layer} ${u.gate} ${u.unit}`, gate: u.gate, values: unitValues(u.layer, u.gate, u.unit),
    note: u.note, current: same(u, current),
    pick: () => { current = {layer: u.layer, gate: u.gate, unit: u.unit}; show(); }}));
  $("units").replaceChildren(grid(rows, false), cutNote());
}

function stepRows(t) {
  // the previous step: t - 1 reading forwards; t + 1 for a bidirectional layer's backward half
  const memory = data.cell === "lstm" ? "cell" : "hidden";  // the state carried from step to step
  const backward = data.directions === 2 && current.unit >= widthOf(current.layer, memory) / 2;
  const before = backward ? t + 1 : t - 1, start = before < 0 || before >= count;
  // a projected LSTM's hidden state is narrower than its cell: its unit k is not the cell's unit k
  const at = (gate, i) => (current.unit >= widthOf(current.layer, gate) ? NaN
    : i < 0 || i >= count ? 0 : unitValues(current.layer, gate, current.unit)[i]);
  const previous = start ? `the zero state (no ${data.token_word} before)` : `after ${tokenName(before)}`;
  const rows = [], G = (g) => at(g, t);
  if (data.cell === "lstm") {
    const projected = widthOf(current.layer, "hidden") !== widthOf(current.layer, "cell");
    const cellBefore = at("cell", before);
    rows.push(["input", "i_t", "σ(W_ii x_t + b_ii + W_hi h_t-1 + b_hi)", "", G("input")],
              ["forget", "f_t", "σ(W_if x_t + b_if + W_hf h_t-1 + b_hf)", "", G("forget")],
              ["candidate", "c~_t", "tanh(W_ig x_t + b_ig + W_hg h_t-1 + b_hg)", "", G("candidate")],
              ["output", "o_t", "σ(W_io x_t + b_io + W_ho h_t-1 + b_ho)", "", G("output")],
              ["previous-cell", "c_t-1", "the cell one step before: " + previous, "", cellBefore],
              ["cell", "c_t", "f_t ⊙ c_t-1 + i_t ⊙ c~_t",
               `${number(G("forget"))} × ${term(cellBefore)} + ${number(G("input"))} × ${term(G("candidate"))}`,
               G("cell")]);
    const shown = G("output") * Math.tanh(G("cell"));
    if (projected) {  // h_t = W_hr (o_t ⊙ tanh(c_t)): this unit's part before the projection mixes them all
      rows.push(["unprojected", "o⊙tanh(c)", "o_t ⊙ tanh(c_t), which the projection W_hr mixes with every " +
                 "other unit's into h_t", `${number(G("output"))} × tanh(${number(G("cell"))})`, shown]);
    } else {
      rows.push(["hidden", "h_t", "o_t ⊙ tanh(c_t)", `${number(G("output"))} × tanh(${number(G("cell"))})`, G("hidden")]);
    }
    const kept = G("forget") * cellBefore, written = G("input") * G("candidate");
    $("in-words").textContent = `In words: the forget gate kept ${(100 * G("forget")).toFixed(1)}% of the old cell ` +
      `${number(cellBefore)}, that is ${number(kept)}; the input gate let in ${(100 * G("input")).toFixed(1)}% of ` +
      `the candidate ${number(G("candidate"))}, that is ${number(written)}; so the cell went from ` +
      `${number(cellBefore)} to ${number(G("cell"))} (${number(kept)} + ${term(written)}), and the output gate ` +
      `showed ${(100 * G("output")).toFixed(1)}% of its tanh, ${number(shown)}` +
      (projected ? ", which the projection mixes with the other units'." : ", as the hidden state.");
  } else if (data.cell === "gru") {
    const hiddenBefore = at("hidden", before);
    rows.push(["reset", "r_t", "σ(W_ir x_t + b_ir + W_hr h_t-1 + b_hr)", "", G("reset")],
              ["update", "z_t", "σ(W_iz x_t + b_iz + W_hz h_t-1 + b_hz)", "", G("update")],
              ["candidate", "n_t", "tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_t-1 + b_hn))", "", G("candidate")],
              ["previous-hidden", "h_t-1", "the state one step before: " + previous, "", hiddenBefore],
              ["hidden", "h_t", "(1 - z_t) ⊙ n_t + z_t ⊙ h_t-1",
               `(1 - ${number(G("update"))}) × ${term(G("candidate"))} + ${number(G("update"))} × ${term(hiddenBefore)}`,
               G("hidden")]);
    $("in-words").textContent = `In words: the update gate kept ${(100 * G("update")).toFixed(1)}% of the old state ` +
      `${number(hiddenBefore)} and took ${(100 * (1 - G("update"))).toFixed(1)}% of the candidate ` +
      `${number(G("candidate"))}, so the state went from ${number(hiddenBefore)} to ${number(G("hidden"))}.`;
  } else {
    rows.push(["previous-hidden", "h_t-1", "the state one step before: " + previous, "", at("hidden", before)],
              ["hidden", "h_t", "tanh(W_ih x_t + b_ih + W_hh h_t-1 + b_hh)", "", G("hidden")]);
    $("in-words").textContent = "";
  }
  return rows;
}

function showStep(t) {
  const missing = Object.keys(SYMBOL).filter((g) => !has(current.layer, g));
  if (missing.length || current.unit >= widthOf(current.layer, data.cell === "lstm" ? "cell" : "hidden")) {
    $("equations").replaceChildren(element("tr", "this page holds only some gates of this layer (written with " +
      "--layer or --gate): write it without them to see the equations"));
    $("in-words").textContent = "";
    return;
  }
  const rows = stepRows(t);
  for (const row of rows) {
    const parts = gateInputs(row[0], t);
    if (parts && !row[3]) row[3] = `${SIGMOID.has(row[0]) ? "σ" : "tanh"}(${number(parts[0])} + ${term(parts[1])})`;
  }
  const parts = gateInputs(current.gate, t);
  $("gate-why").textContent = "";
  if (parts) {
    const source = current.layer === 0 ? `reading ${JSON.stringify(data.tokens[t])}`
      : `layer ${current.layer - 1}'s output at this ${data.token_word}`;
    $("gate-why").textContent = `Why ${current.gate} = ${number(values[t])} here: ` +
      `${SIGMOID.has(current.gate) ? "σ" : "tanh"}(${number(parts[0] + parts[1])}), ${number(parts[0])} of it from ` +
      `${source} and ${number(parts[1])} from h_t-1, the layer's state one step before.`;
  }
  $("equations").replaceChildren(...rows.map(([gate, symbol, formula, filled, value]) => {
    const tr = element("tr", undefined, gate === current.gate ? "current" : "");
    tr.dataset.gate = gate;
    const said = element("td", "= " + formula);
    if (MEANING[gate]) said.appendChild(element("div", `${gate}: ${MEANING[gate]}`, "meaning"));
    tr.append(element("td", symbol), said, element("td", filled ? "= " + filled : ""),
              element("td", "= " + number(value), "value"));
    tr.children[3].dataset.value = value;
    return tr;
  }));
}

function setFocus(i) {
  for (const cell of focusCells[focus] || []) cell.classList.remove("focus");
  spans[focus].classList.remove("focus");
  focus = i;
  for (const cell of focusCells[focus] || []) cell.classList.add("focus");
  spans[focus].classList.add("focus");
  let line = `after ${tokenName(i)}${unknown.has(i) ? " (unknown to the model)" : ""}: ` +
    `layer ${current.layer} ${current.gate} unit ${current.unit} = ${number(values[i])}`;
  if (data.prediction) {
    const p = data.prediction;
    line += `; classify would say ${p.labels.map((l, k) => `${l} ${p.probabilities[i][k].toFixed(3)}`).join(", ")}`;
    const shares = Object.entries(p.shares).map(([part, lead]) =>
      `${part} ${lead[i] >= 0 ? "+" : ""}${lead[i].toFixed(2)}`).join(", ");
    line += ` (toward ${p.labels[p.final]}: ${shares}${p.alone.includes(i) ? "; the n-grams decided alone" : ""})`;
  }
  $("readout").textContent = line + (pinned ? " [pinned: click it again to let go]" : "");
  showStep(i);
}

function applyMask(made, note) {
  mask = made;
  spans.forEach((span, i) => span.classList.toggle("matched", Boolean(mask && mask[i])));
  $("pattern-note").textContent = note;
  if (mask) $("sort").value = "pattern";
  drawUnits();
  setFocus(focus);
}
$("pattern").addEventListener("input", (e) => {
  const pattern = e.target.value;
  if (!pattern) { applyMask(null, ""); return; }
  let expression;
  try { expression = new RegExp(pattern, "g"); } catch (error) {
    applyMask(null, `not a regular expression: ${error.message}`);
    return;
  }
  const made = new Array(count).fill(false), ends = [];
  let offset = 0;
  for (const token of data.tokens) ends.push(offset += token.length);
  const text = data.tokens.join("");
  for (const match of text.matchAll(expression)) {
    const from = match.index, to = match.index + Math.max(1, match[0].length);
    for (let i = 0; i < count; i++) if (ends[i] > from && ends[i] - data.tokens[i].length < to) made[i] = true;
  }
  const matched = made.filter(Boolean).length;
  applyMask(matched ? made : null, `${matched} of ${count} tokens match`);
});
$("text").addEventListener("mouseup", () => {
  const selection = window.getSelection();
  if (!selection || selection.isCollapsed) return;
  const index = (node) => Number((node.nodeType === 1 ? node : node.parentElement).dataset.index);
  const [from, to] = [index(selection.anchorNode), index(selection.focusNode)].sort((a, b) => a - b);
  if (Number.isNaN(from) || Number.isNaN(to)) return;
  $("pattern").value = "";
  applyMask(data.tokens.map((_, i) => i >= from && i <= to), `your selection: tokens ${from + 1} to ${to + 1}`);
});

fillSelect($("sort"), [["spread", "varies most along this text (this layer and gate)"],
                       ...(data.ranking.length ? [["find", `--find: tracks ${data.feature}`]] : []),
                       ["pattern", "your pattern or selection (this layer and gate)"]],
           data.ranking.length ? "find" : "spread");
// hovering a character (in the text or a grid) shows it; a click pins it until clicked again
const pointed = (event) => (event.target.dataset && event.target.dataset.index !== undefined
  ? Number(event.target.dataset.index) : null);
for (const id of ["text", "unit-gates", "units"]) {
  $(id).addEventListener("mouseover", (event) => {
    const i = pointed(event);
    if (i !== null && !pinned) setFocus(i);
  });
  $(id).addEventListener("click", (event) => {
    const i = pointed(event);
    if (i === null) return;
    pinned = !(pinned && focus === i);
    setFocus(i);
  });
}
$("sort").addEventListener("change", drawUnits);
$("rows").addEventListener("change", drawUnits);
if (data.ranking.length) {
  $("ranking").appendChild(element("span", `units that best track ${data.feature}: `));
  for (const r of data.ranking.slice(0, 20)) {
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
if (unknown.size) {
  const key = element("span", "wavy underline", "unknown-key");
  $("unknown-note").append(key, `: ${unknown.size} character${unknown.size > 1 ? "s" : ""} the model never saw ` +
    "in training; it reads each as one unknown symbol");
}
for (const word of document.querySelectorAll(".token-word")) word.textContent = data.token_word;
show();
</script>
</body>
</html>
"""
