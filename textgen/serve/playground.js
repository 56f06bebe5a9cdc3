"use strict";
// Everything the server says is put on the page with textContent, never parsed as HTML.
const $ = (id) => document.getElementById(id);
const models = JSON.parse($("models").textContent);  // [{name, kind}]

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  if (className) made.className = className;
  return made;
}

// ---- the server's API: every request goes through these two functions ----

class ApiError extends Error {}

function headers() {
  const key = $("key").value.trim();
  return Object.assign({"Content-Type": "application/json"}, key ? {"Authorization": `Bearer ${key}`} : {});
}

async function failure(response) {
  // {"error": {"message": ...}} as the server sends it; anything else as the status and its text
  const body = await response.text();
  let message = `${response.status} ${response.statusText}`;
  try {
    const parsed = JSON.parse(body);
    const error = parsed.error ?? parsed.detail ?? parsed;
    message = typeof error === "string" ? error : error.message ?? JSON.stringify(error);
  } catch (ignored) {
    if (body.trim()) message += `: ${body.trim().slice(0, 300)}`;
  }
  if (response.status === 401) {
    $("key-label").hidden = false;
    message += " (give the server's API key above)";
  }
  return new ApiError(message);
}

async function post(path, body, signal) {
  const response = await fetch(path, {method: "POST", headers: headers(), body: JSON.stringify(body), signal});
  if (!response.ok) throw await failure(response);
  return response.json();
}

async function stream(path, body, signal, onPiece) {
  // server-sent events over a POST: "data: {...}" blocks separated by a blank line, then "data: [DONE]"
  const response = await fetch(path, {method: "POST", headers: headers(), body: JSON.stringify(body), signal});
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "", finish = null;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return finish;
    buffered += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      signal.throwIfAborted();  // Stop takes effect at once, even inside text that has already arrived
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = event.split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return finish;
      const parsed = JSON.parse(data);
      if (parsed.error) throw new ApiError(parsed.error.message ?? String(parsed.error));
      for (const choice of parsed.choices ?? []) {
        if (choice.text) onPiece(choice.text);
        finish = choice.finish_reason ?? finish;
      }
    }
  }
}

// ---- model pickers ----

function fillSelect(select, names) {
  select.replaceChildren(...names.map((name) => {
    const option = element("option", name);
    option.value = name;
    return option;
  }));
}
const languageModels = models.filter((m) => m.kind !== "classifier").map((m) => m.name);
const classifiers = models.filter((m) => m.kind === "classifier").map((m) => m.name);
fillSelect($("language-model"), languageModels);
fillSelect($("classifier"), classifiers);
fillSelect($("inside-model"), models.map((m) => m.name));
if (!languageModels.length) $("write").disabled = true;
if (!classifiers.length) {
  $("classify").disabled = true;
  $("label").textContent = "(the server has no classifier)";
}
const prompt = $("prompt");

// ---- write: stream a continuation into the text ----

let writing = null;  // the AbortController of the stream in progress

async function write() {
  completing?.abort();
  hideChoices();
  $("write-error").textContent = "";
  writing = new AbortController();
  prompt.readOnly = true;
  $("write").disabled = true;
  $("stop").disabled = false;
  $("write-status").textContent = "writing…";
  let written = 0;
  try {
    const finish = await stream("/v1/completions", {
      model: $("language-model").value, prompt: prompt.value, stream: true,
      max_tokens: Number($("max-tokens").value) || 200, temperature: Number($("temperature").value),
    }, writing.signal, (piece) => {
      prompt.value += piece;
      written += piece.length;
      prompt.scrollTop = prompt.scrollHeight;
      $("write-status").textContent = `writing… ${written} characters`;
      scheduleInspect();
    });
    $("write-status").textContent = `wrote ${written} characters` + (finish === "stop" ? " (reached a stop)" : "");
  } catch (error) {
    if (error.name === "AbortError") {
      $("write-status").textContent = `stopped after ${written} characters`;
    } else {
      $("write-status").textContent = "";
      $("write-error").textContent = error.message;
    }
  } finally {
    writing = null;
    prompt.readOnly = false;
    $("write").disabled = false;
    $("stop").disabled = true;
    prompt.focus();
    prompt.setSelectionRange(prompt.value.length, prompt.value.length);
  }
}
$("write").addEventListener("click", write);
$("stop").addEventListener("click", () => writing?.abort());

// ---- autocomplete: choices under the cursor as you type ----

let choices = [], selected = 0, completing = null, completeTimer = 0;

function scheduleComplete() {
  clearTimeout(completeTimer);
  completeTimer = setTimeout(complete, 150);
}

async function complete() {
  completing?.abort();
  const prefix = prompt.value.slice(0, prompt.selectionStart);
  if (writing || !prefix || !languageModels.length || prompt.selectionStart !== prompt.selectionEnd) {
    hideChoices();
    return;
  }
  const request = completing = new AbortController();
  try {
    const answer = await post("/v1/complete", {model: $("language-model").value, prefix, top: 5, until: "word"},
                              request.signal);
    // stale: the text moved on, a stream began, or the writer left the text
    if (request !== completing || writing || document.activeElement !== prompt ||
        prompt.value.slice(0, prompt.selectionStart) !== prefix) return;
    showChoices((answer.completions ?? []).filter((c) => c.text));
    $("write-error").textContent = "";
  } catch (error) {
    if (error.name !== "AbortError") $("write-error").textContent = error.message;
  }
}

function visible(text) {
  // a choice as shown: spaces and line breaks made visible
  return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
}

function showChoices(list) {
  choices = list;
  selected = 0;
  if (!choices.length) {
    hideChoices();
    return;
  }
  $("choices").replaceChildren(...choices.map((choice, i) => {
    const item = element("li");
    item.id = `choice-${i}`;
    item.setAttribute("role", "option");
    item.dataset.text = choice.text;
    item.append(element("span", visible(choice.text), "text"));
    if (typeof choice.probability === "number") {
      item.append(element("span", `${(100 * choice.probability).toFixed(1)}%`, "probability"));
    }
    item.addEventListener("mousedown", (event) => {
      event.preventDefault();  // keep the focus in the text
      pick(i);
    });
    return item;
  }));
  placeChoices();
  $("choices").hidden = false;
  prompt.setAttribute("aria-expanded", "true");
  highlight();
}

function hideChoices() {
  choices = [];
  $("choices").hidden = true;
  prompt.setAttribute("aria-expanded", "false");
  prompt.removeAttribute("aria-activedescendant");
}

function highlight() {
  [...$("choices").children].forEach((item, i) => item.setAttribute("aria-selected", String(i === selected)));
  prompt.setAttribute("aria-activedescendant", `choice-${selected}`);
}

function pick(i) {
  const text = choices[i].text, at = prompt.selectionStart;
  prompt.setRangeText(text, at, prompt.selectionEnd, "end");
  hideChoices();
  textChanged();
}

function placeChoices() {
  // the caret's place: a hidden copy of the textarea, styled alike, holding the text up to the caret
  const style = getComputedStyle(prompt), mirror = element("div", undefined, "mirror");
  for (const property of ["boxSizing", "width", "fontFamily", "fontSize", "fontWeight", "lineHeight",
                          "letterSpacing", "paddingTop", "paddingLeft", "paddingRight", "borderTopWidth",
                          "borderLeftWidth", "borderRightWidth", "borderStyle", "tabSize"]) {
    mirror.style[property] = style[property];
  }
  mirror.textContent = prompt.value.slice(0, prompt.selectionStart);
  const caret = element("span", "\u200b");
  mirror.append(caret);
  $("editor").append(mirror);
  const top = prompt.offsetTop + caret.offsetTop + caret.offsetHeight - prompt.scrollTop + 2;
  const left = prompt.offsetLeft + Math.min(caret.offsetLeft, prompt.clientWidth - 160);
  mirror.remove();
  $("choices").style.top = `${Math.min(top, prompt.offsetTop + prompt.offsetHeight)}px`;
  $("choices").style.left = `${Math.max(prompt.offsetLeft, left)}px`;
}

prompt.addEventListener("keydown", (event) => {
  if ($("choices").hidden) return;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    selected = (selected + (event.key === "ArrowDown" ? 1 : choices.length - 1)) % choices.length;
    highlight();
  } else if (event.key === "Enter" || event.key === "Tab") {
    pick(selected);
  } else if (event.key === "Escape") {
    completing?.abort();
    hideChoices();
  } else {
    return;
  }
  event.preventDefault();
});
prompt.addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== prompt) hideChoices(); }, 0));
prompt.addEventListener("click", hideChoices);

function textChanged() {
  scheduleComplete();
  scheduleInspect();
}
prompt.addEventListener("input", textChanged);

// ---- classify ----

async function classify() {
  $("classify-error").textContent = "";
  $("label").textContent = "…";
  $("label-probability").textContent = "";
  $("probabilities").replaceChildren();
  try {
    const answer = await post("/v1/classify", {model: $("classifier").value, texts: [prompt.value]});
    const prediction = (answer.data ?? answer.predictions ?? [])[0] ?? {};
    $("label").textContent = String(prediction.label ?? "?");
    if (typeof prediction.probability === "number") {
      $("label-probability").textContent = `(${(100 * prediction.probability).toFixed(1)}%)`;
    }
    for (const [label, probability] of Object.entries(prediction.probabilities ?? {})) {
      const fill = element("div", undefined, "fill"), track = element("div", undefined, "track");
      fill.style.width = `${(100 * probability).toFixed(1)}%`;
      track.append(fill);
      const bar = element("div", undefined, "bar");
      bar.append(element("span", label, "name"), track, element("span", probability.toFixed(3)));
      $("probabilities").append(bar);
    }
  } catch (error) {
    $("label").textContent = "";
    $("classify-error").textContent = error.message;
  }
}
$("classify").addEventListener("click", classify);

// ---- look inside: one unit of one gate along the text ----

const SIGMOID_GATES = ["input", "forget", "output", "reset", "update"];  // 0..1; the others -1..1 or wider
const ALL_GATES = ["input", "forget", "candidate", "cell", "output", "hidden", "reset", "update"];
const HOVER_HINT = "hover over the text to read the values";
// layer and gate: what the pickers ask for (null: the server's default); shown: the layer and gate on the page
const inside = {layer: null, gate: null, unit: null, shown: null, trace: null, values: null, scale: 1};
let inspecting = null, inspectTimer = 0;

function scheduleInspect() {
  clearTimeout(inspectTimer);
  inspectTimer = setTimeout(inspect, 300);
}

async function inspect() {
  if (!$("inside").open || !models.length) return;
  inspecting?.abort();
  const text = prompt.value;
  if (!text) {
    inside.trace = null;
    $("inside-text").replaceChildren();
    $("about").textContent = "write something to see inside";
    return;
  }
  const request = inspecting = new AbortController();
  const body = {model: $("inside-model").value, text};
  if (inside.layer !== null) body.layer = inside.layer;
  if (inside.gate !== null) body.gate = inside.gate;
  try {
    const trace = await post("/v1/inspect", body, request.signal);
    if (request !== inspecting) return;
    $("inside-error").textContent = "";
    showTrace(trace);
  } catch (error) {
    if (error.name === "AbortError") return;
    $("inside-error").textContent = error.message;
    if (inside.shown) {  // the pickers go back to what is shown
      Object.assign(inside, inside.shown);
      $("layer").value = inside.layer;
      $("gate").value = inside.gate;
    }
  }
}

function busiest(units) {
  // the unit whose value spreads most along the text
  let best = units[0], spread = -1;
  for (const unit of units) {
    const values = unit.values ?? [];
    const mean = values.reduce((a, b) => a + b, 0) / (values.length || 1);
    const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0);
    if (variance > spread) [best, spread] = [unit, variance];
  }
  return best;
}

function showTrace(trace) {
  const units = trace.units ?? [];
  if (!units.length) {
    $("inside-error").textContent = "the server sent no units to show";
    return;
  }
  inside.trace = trace;
  const shown = {layer: trace.layer ?? units[0].layer, gate: trace.gate ?? units[0].gate};
  // another layer or gate: start on its most active unit
  if (inside.shown?.layer !== shown.layer || inside.shown?.gate !== shown.gate) inside.unit = null;
  Object.assign(inside, shown, {shown});
  $("gate").disabled = false;
  if (typeof trace.layers === "number") $("layer").max = trace.layers - 1;
  $("layer").value = inside.layer;
  const gates = Array.isArray(trace.gates) ? trace.gates : ALL_GATES;
  fillSelect($("gate"), gates.includes(inside.gate) ? gates : [...gates, inside.gate]);
  $("gate").value = inside.gate;
  if (inside.unit === null || !units.some((u) => u.unit === inside.unit)) inside.unit = busiest(units).unit;
  showUnit();
}

function colour(value) {
  const strength = Math.max(-1, Math.min(1, value / inside.scale));
  const fade = Math.round(255 * (1 - 0.8 * Math.abs(strength)));
  return strength >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
}

function showUnit() {
  const trace = inside.trace, units = trace.units;
  const numbers = units.map((u) => u.unit);
  const highest = Math.max(...numbers);
  inside.unit = Math.max(0, Math.min(highest, inside.unit));
  const shown = units.find((u) => u.unit === inside.unit) ?? units[0];
  inside.unit = shown.unit;
  $("unit").max = highest;
  $("unit").value = inside.unit;
  const values = inside.values = shown.values;
  const largest = values.reduce((a, b) => Math.max(a, Math.abs(b)), 0);
  // gates between 0 and 1 white to red; signed values blue to red, widened when they pass 1 (a cell's state)
  const sigmoid = SIGMOID_GATES.includes(inside.gate);
  inside.scale = largest <= 1 ? 1 : largest;
  const unknown = new Set(trace.unknown ?? []);
  $("inside-text").replaceChildren(...(trace.tokens ?? []).map((token, i) => {
    const span = element("span", token.replace(/\n/g, "\u21b5\n"));
    if (unknown.has(i)) span.className = "unknown";
    span.style.background = colour(values[i]);
    span.title = `${values[i].toFixed(4)}` + (unknown.has(i) ? " (not in the model's vocabulary)" : "");
    span.addEventListener("mouseenter", () => readout(i));
    return span;
  }));
  const ticks = sigmoid ? [0, 0.25, 0.5, 0.75, 1] : [-1, -0.5, 0, 0.5, 1].map((f) => f * inside.scale);
  $("legend").replaceChildren(...ticks.map((tick) => {
    const span = element("span", Number(tick.toPrecision(2)).toString());
    span.style.background = colour(tick);
    return span;
  }));
  const low = Math.min(...values), high = Math.max(...values);
  $("about").textContent = `layer ${inside.layer} ${inside.gate} unit ${inside.unit}` +
    (units.length > 1 ? ` (of ${units.length})` : "") +
    `: from ${low.toFixed(3)} to ${high.toFixed(3)} along ${values.length} tokens`;
  $("readout").textContent = HOVER_HINT;
}

function readout(i) {
  const trace = inside.trace;
  let line = `token ${i} ${JSON.stringify(trace.tokens[i])}: ${inside.values[i].toFixed(4)}`;
  const prediction = trace.prediction;
  if (prediction && prediction.probabilities?.[i]) {
    line += "   prediction so far: " + prediction.labels.map((label, k) =>
      `${label} ${prediction.probabilities[i][k].toFixed(3)}`).join(", ");
  }
  $("readout").textContent = line;
}

function moveUnit(step) {
  if (!inside.trace) return;
  const numbers = inside.trace.units.map((u) => u.unit).sort((a, b) => a - b);
  const at = numbers.indexOf(inside.unit);
  inside.unit = numbers[Math.max(0, Math.min(numbers.length - 1, at + step))];
  showUnit();
}
$("previous").addEventListener("click", () => moveUnit(-1));
$("next").addEventListener("click", () => moveUnit(1));
$("unit").addEventListener("change", (event) => {
  inside.unit = Number(event.target.value) || 0;
  if (inside.trace) showUnit();
});
$("busiest").addEventListener("click", () => {
  if (!inside.trace) return;
  inside.unit = busiest(inside.trace.units).unit;
  showUnit();
});
$("layer").addEventListener("change", (event) => {
  inside.layer = Math.max(0, Number(event.target.value) || 0);
  inspect();
});
$("gate").addEventListener("change", (event) => {
  inside.gate = event.target.value;
  inspect();
});
$("inside-model").addEventListener("change", () => {
  Object.assign(inside, {layer: null, gate: null, unit: null, shown: null});
  inspect();
});
$("inside").addEventListener("toggle", () => { if ($("inside").open) inspect(); });
