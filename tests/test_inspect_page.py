"""The page `textgen inspect --html` writes, driven in headless Chromium as a learner uses it: every
readout follows the current layer, gate, unit and character; the equations hold with the numbers
they show; many units ranked by a pattern; and a classifier's chart ends where `textgen classify` does."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from textgen.cli import main
from textgen.config import ClassifierConfig, ModelConfig, to_dict
from textgen.data.tokenizer import CharTokenizer
from textgen.lab.inspection import Unit, load_model, trace_text
from textgen.lab.views import html_page
from textgen.nn.checkpoint import save_checkpoint
from textgen.nn.model import Classifier, LanguageModel

CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

TEXT = 'ROMEO: But soft, what light\nthrough "yonder" (window) breaks?'
HALF = 2e-3  # the page stores half floats: about three significant digits


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or sync_playwright is None:
        pytest.skip(f"needs Chromium{' (not on PATH)' if CHROMIUM is None else ''} and playwright"
                    f"{' (not installed)' if sync_playwright is None else ''}; apt-get install chromium; "
                    f"pip install playwright")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


def open_page(browser, page_html: str, folder: Path):
    """The page opened from a file; the test fails on any script error or refused resource."""
    path = folder / "page.html"
    path.write_text(page_html, encoding="utf-8")
    opened = browser.new_page(viewport={"width": 1200, "height": 1000})
    problems = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    opened.goto(path.as_uri())
    opened.problems = problems
    return opened


def tiny_model(cell: str) -> tuple[LanguageModel, CharTokenizer]:
    torch.manual_seed(5)
    tokenizer = CharTokenizer.from_texts([TEXT])
    return LanguageModel(ModelConfig(cell=cell, num_layers=2, hidden_size=8, embed_size=8,
                                     vocab_size=tokenizer.vocab_size)).eval(), tokenizer


def tiny_page(browser, folder: Path, cell: str, unit: Unit, **options):
    """The trace of TEXT through `tiny_model(cell)`, and its page opened on `unit`."""
    model, tokenizer = tiny_model(cell)
    trace = trace_text(model, tokenizer, TEXT)
    return trace, open_page(browser, html_page(trace, "t", unit, **options), folder)


def readout_value(page) -> float:
    """The number the readout gives for the current unit."""
    return float(re.search(r"unit \d+ = (-?[\d.]+)", page.locator("#readout").text_content()).group(1))


def equation_values(page) -> dict[str, float]:
    """Each row of the equations at the chosen character: its gate and the value it ends with."""
    rows = page.locator("#equations tr")
    return {rows.nth(k).get_attribute("data-gate"): float(rows.nth(k).locator("td.value").text_content()[2:])
            for k in range(rows.count())}


@pytest.mark.slow  # Chromium
def test_every_readout_follows_the_gate_unit_and_character_chosen(browser, tmp_path):
    trace, page = tiny_page(browser, tmp_path, "lstm", Unit(1, "cell", 2), reason="it varies most")
    last = len(TEXT) - 1
    assert page.locator("#about").text_content().startswith("layer 1 cell unit 2 (of 8)")
    assert page.locator("#why").text_content() == "why this unit: it varies most"
    assert readout_value(page) == pytest.approx(trace.values(Unit(1, "cell", 2))[last], abs=HALF)

    page.select_option("#gate", "forget")  # the readout must not keep the cell's value
    forget = trace.values(Unit(1, "forget", 2))
    assert page.locator("#about").text_content().startswith("layer 1 forget unit 2 (of 8)")
    assert readout_value(page) == pytest.approx(forget[last], abs=HALF) and 0 <= readout_value(page) <= 1
    assert page.locator("#why").text_content().startswith("you chose this unit; the page opened on layer 1 cell unit 2")

    page.locator("#text span").nth(7).hover()
    assert readout_value(page) == pytest.approx(forget[7], abs=HALF)
    assert 'after character 8 "B"' in page.locator("#readout").text_content()

    page.fill("#unit", "5")
    page.locator("#unit").dispatch_event("change")
    assert page.locator("#about").text_content().startswith("layer 1 forget unit 5 (of 8)")
    assert readout_value(page) == pytest.approx(trace.values(Unit(1, "forget", 5))[7], abs=HALF)
    page.select_option("#layer", "0")
    assert readout_value(page) == pytest.approx(trace.values(Unit(0, "forget", 5))[7], abs=HALF)

    # every gate of the unit at that character, and the equations hold with the numbers shown
    shown = equation_values(page)
    for gate in ("input", "forget", "candidate", "cell", "output", "hidden"):
        assert shown[gate] == pytest.approx(trace.values(Unit(0, gate, 5))[7], abs=HALF)
    assert shown["previous-cell"] == pytest.approx(trace.values(Unit(0, "cell", 5))[6], abs=HALF)
    assert shown["cell"] == pytest.approx(shown["forget"] * shown["previous-cell"] + shown["input"] * shown["candidate"],
                                          abs=5e-3)
    assert shown["hidden"] == pytest.approx(shown["output"] * math.tanh(shown["cell"]), abs=5e-3)
    words = page.locator("#in-words").text_content()
    assert f"the forget gate kept {100 * shown['forget']:.1f}% of the old cell" in words
    # inside each gate's σ, its part from the character and its part from h_t-1, which add up to it
    x, h = (part[:, 5] for part in trace.preactivations[0]["forget"])
    filled = page.locator('#equations tr[data-gate="forget"] td').nth(2).text_content()
    inside = [float(v) for v in re.fullmatch(r"= σ\((-?[\d.]+) \+ \(?(-?[\d.]+)\)?\)", filled).groups()]
    assert inside == pytest.approx([x[7], h[7]], abs=HALF)
    assert 1 / (1 + math.exp(-sum(inside))) == pytest.approx(shown["forget"], abs=5e-3)
    why = re.fullmatch(r'Why forget = ([\d.]+) here: σ\((-?[\d.]+)\), (-?[\d.]+) of it from reading "B" and '
                       r"(-?[\d.]+) from h_t-1, the layer's state one step before\.",
                       page.locator("#gate-why").text_content())
    assert [float(v) for v in why.groups()] == pytest.approx([shown["forget"], x[7] + h[7], x[7], h[7]], abs=HALF)
    assert page.locator("#equations tr.current").get_attribute("data-gate") == "forget"

    # a click pins the character: moving on does not change the readout until it is clicked again
    page.locator("#text span").nth(0).click()
    page.locator("#text span").nth(3).hover()
    assert 'after character 1 "R"' in page.locator("#readout").text_content()
    assert shown_cell_zero_state(page)
    assert not page.problems


def shown_cell_zero_state(page) -> bool:
    """At the first character the previous cell is the zero state."""
    return (equation_values(page)["previous-cell"] == 0
            and "the zero state" in page.locator('#equations tr[data-gate="previous-cell"]').text_content())


@pytest.mark.slow  # Chromium
def test_gates_are_coloured_on_their_own_zero_to_one_scale(browser, tmp_path):
    trace, page = tiny_page(browser, tmp_path, "lstm", Unit(0, "forget", 1))
    values = trace.values(Unit(0, "forget", 1))
    backgrounds = page.locator("#text span").evaluate_all("spans => spans.map((s) => s.style.background)")
    for value, background in zip(values.tolist(), backgrounds):  # white (0) to violet (84, 39, 143) at 1
        red, green, blue = map(int, re.findall(r"\d+", background))
        assert (red, green, blue) == pytest.approx((255 - 171 * value, 255 - 216 * value, 255 - 112 * value), abs=1)
    assert page.locator("#legend").text_content() == "gate scale:00.250.50.751"
    page.select_option("#gate", "candidate")  # a tanh in -1..1: white at 0, red up, blue down
    assert page.locator("#legend").text_content() == "scale:-1-0.500.51"
    assert not page.problems


@pytest.mark.slow  # Chromium
def test_gru_equations_are_filled_with_the_numbers_of_the_unit(browser, tmp_path):
    trace, page = tiny_page(browser, tmp_path, "gru", Unit(1, "hidden", 3))
    page.locator("#text span").nth(10).hover()
    shown = equation_values(page)
    assert set(shown) == {"reset", "update", "candidate", "previous-hidden", "hidden"}
    for gate in ("reset", "update", "candidate", "hidden"):
        assert shown[gate] == pytest.approx(trace.values(Unit(1, gate, 3))[10], abs=HALF)
    assert shown["hidden"] == pytest.approx((1 - shown["update"]) * shown["candidate"]
                                            + shown["update"] * shown["previous-hidden"], abs=5e-3)
    assert not page.problems


@pytest.mark.slow  # Chromium
def test_a_plain_rnn_shows_its_one_equation(browser, tmp_path):
    trace, page = tiny_page(browser, tmp_path, "rnn", Unit(0, "hidden", 1))
    page.locator("#text span").nth(2).hover()
    hidden = trace.values(Unit(0, "hidden", 1))
    assert equation_values(page) == pytest.approx({"previous-hidden": hidden[1], "hidden": hidden[2]}, abs=HALF)
    assert 'h_t-1= the state one step before: after character 2 "O"' in page.locator("#equations").text_content()
    assert not page.problems


@pytest.mark.slow  # Chromium
def test_a_backward_unit_steps_from_the_next_character_and_a_projection_is_named(browser, tmp_path):
    torch.manual_seed(6)
    tokenizer = CharTokenizer.from_texts([TEXT])
    # tied weights with a hidden size above the embedding's: an LSTM projected to 8 wide, read both ways
    classifier = Classifier(ModelConfig(num_layers=1, hidden_size=12, embed_size=8, tie_weights=True,
                                        vocab_size=tokenizer.vocab_size),
                            ClassifierConfig(label_names=["a", "b"], head_hidden=4, bidirectional=True)).eval()
    trace = trace_text(classifier, tokenizer, TEXT)
    assert trace.layers[0]["cell"].shape[1] == 24 and trace.layers[0]["hidden"].shape[1] == 16
    page = open_page(browser, html_page(trace, "t", Unit(0, "cell", 20)), tmp_path)  # backward, past h's width
    page.locator("#text span").nth(3).hover()
    shown = equation_values(page)
    cell = trace.values(Unit(0, "cell", 20))
    assert shown["previous-cell"] == pytest.approx(cell[4], abs=HALF)  # read backwards: the step before is 4
    assert "after character 5" in page.locator('#equations tr[data-gate="previous-cell"]').text_content()
    assert shown["cell"] == pytest.approx(shown["forget"] * shown["previous-cell"] + shown["input"] * shown["candidate"],
                                          abs=5e-3)
    assert "hidden" not in shown and shown["unprojected"] == pytest.approx(
        shown["output"] * math.tanh(shown["cell"]), abs=5e-3)
    assert "which the projection mixes" in page.locator("#in-words").text_content()
    page.locator("#text span").nth(len(TEXT) - 1).hover()  # the last character, read first: from the zero state
    assert equation_values(page)["previous-cell"] == 0
    assert not page.problems


@pytest.mark.slow  # Chromium
def test_many_units_are_ranked_by_the_pattern_typed_and_picked_by_name(browser, tmp_path):
    trace, page = tiny_page(browser, tmp_path, "lstm", Unit(1, "cell", 0))
    cells = trace.layers[1]["cell"].astype(np.float64)  # (tokens, width)
    spread_order = np.argsort(-cells.std(axis=0), kind="stable")
    names = page.locator("#units tbody th button, #units table > tr th button")
    assert [names.nth(k).text_content() for k in range(3)] == [f"layer 1 cell {u}" for u in spread_order[:3]]

    page.fill("#pattern", "[A-Z]")  # the capitals
    capitals = np.array([token.isupper() for token in trace.tokens])
    contrast = (cells[capitals].mean(axis=0) - cells[~capitals].mean(axis=0)) / cells.std(axis=0)
    best = int(np.argmax(np.abs(contrast)))
    assert page.locator("#sort").input_value() == "pattern"
    assert page.locator("#pattern-note").text_content() == f"{capitals.sum()} of {len(TEXT)} tokens match"
    assert names.nth(0).text_content() == f"layer 1 cell {best}"
    assert f"{contrast[best]:+.2f} sd on the pattern" in page.locator("#units th").nth(1).text_content()
    names.nth(0).click()
    assert page.locator("#about").text_content().startswith(f"layer 1 cell unit {best} (of 8)")
    page.fill("#pattern", "(")
    assert page.locator("#pattern-note").text_content().startswith("not a regular expression")
    assert not page.problems


@pytest.mark.slow  # Chromium
def test_a_ranking_from_find_orders_the_many_units_view(browser, tmp_path):
    model, tokenizer = tiny_model("lstm")
    corpus = tmp_path / "quotes.txt"
    corpus.write_text('he said "yes" and (then) "no"\n' * 40)
    path = tmp_path / "lm.pt"
    save_checkpoint(path, {"kind": "language_model", "model_config": to_dict(model.config),
                           "model": model.state_dict(), "tokenizer": tokenizer.to_data()})
    assert main(["inspect", "--model", str(path), "--find", "quote", "--corpus", str(corpus), "--split", "train",
                 "--top", "5", "--text", TEXT, "--html", str(tmp_path / "find.html")]) == 0
    page_html = (tmp_path / "find.html").read_text()
    ranking = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page_html,
                                   re.S).group(1))["ranking"]
    page = open_page(browser, page_html, tmp_path)
    assert page.locator("#sort").input_value() == "find"
    names = page.locator("#units th button")
    assert [names.nth(k).text_content() for k in range(5)] == [f"layer {r['layer']} {r['gate']} {r['unit']}"
                                                               for r in ranking]
    assert not page.problems


HOSTILE = '</script><script>alert(1)</script><img src=x onerror=alert(1)>"&amp;\u2028{data}{title}é'


@pytest.mark.slow  # Chromium
def test_hostile_text_stays_text_and_unknown_characters_are_marked(browser, tmp_path):
    torch.manual_seed(2)
    tokenizer = CharTokenizer.from_texts([HOSTILE[:-1]])  # the é is unknown
    model = LanguageModel(ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size))
    trace = trace_text(model, tokenizer, HOSTILE)
    page = open_page(browser, html_page(trace, HOSTILE, Unit(0, "cell", 2)), tmp_path)
    assert page.locator("#text").text_content().replace("\u21b5", "") == HOSTILE
    assert page.locator("h1").text_content() == HOSTILE and page.locator("img").count() == 0
    assert page.locator("#text span.unknown").count() == 1
    assert "not in the model's vocabulary" in page.locator("#text span").nth(len(HOSTILE) - 1).get_attribute("title")
    assert not page.problems


# short, negated, mixed, long (a few hundred characters), all in the bundled model's world of reviews
REVIEWS = [
    "dull and lifeless, though the lead is wonderful", "not bad at all", "a gorgeous, moving film", "great",
    "I did not like it", "meh", "an utter waste of time", "not good, not terrible, just forgettable",
    "It isn't funny, and it never tries to be.", "the best film of the year? hardly.",
    "wonderful", "boring", "I laughed, I cried, I wanted my money back",
    "never less than watchable, never more than that", "a masterpiece of tedium",
    "the plot never comes together but the acting is superb and the music soars; " * 4,
    "This is not a good movie, and it is not even funny. The jokes fall flat, the pacing drags, and yet the "
    "final twenty minutes are so beautifully made that I almost forgave it. " * 3,
    "Slow. " * 30, "fun!", "i can't say i didn't enjoy it",
]


@pytest.fixture(scope="module")
def sentiment():
    return load_model("sentiment")[:2]


def page_data(page_html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page_html,
                                re.S).group(1))


def test_classifier_chart_ends_where_classify_does(sentiment, capsys):
    classifier, tokenizer = sentiment
    assert classifier.config.features == "both"  # encoder and n-grams: what the chart must not leave out
    assert main(["classify", "--model", "sentiment", *REVIEWS, "--json"]) == 0
    classified = [json.loads(line)["probabilities"] for line in capsys.readouterr().out.splitlines()]
    for text, expected in zip(REVIEWS, classified):
        trace = trace_text(classifier, tokenizer, text)
        data = page_data(html_page(trace, "t", Unit(1, "cell", 0)))
        last = dict(zip(data["prediction"]["labels"], data["prediction"]["probabilities"][-1]))
        assert last == pytest.approx(expected, abs=0.01), text


@pytest.mark.slow  # Chromium
def test_classifier_page_says_what_it_charts_and_each_parts_share(browser, sentiment, tmp_path, capsys):
    classifier, tokenizer = sentiment
    text = REVIEWS[0]
    trace = trace_text(classifier, tokenizer, text)
    page = open_page(browser, html_page(trace, "t", Unit(1, "cell", 0)), tmp_path)
    how = page.locator("#prediction-how").text_content()
    assert how.startswith("The same as textgen classify: the recurrent encoder and the hashed word n-grams, "
                          f"their logits mixed as {1 - classifier.config.ngram_weight:.2f} × encoder")
    assert main(["classify", "--model", "sentiment", text, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["probabilities"]
    shown = dict(pair.split() for pair in page.locator("#prediction-end").text_content().split(", "))
    assert {label: float(p) for label, p in shown.items()} == pytest.approx(expected, abs=0.01)
    assert page.locator("#shares-chart polyline").count() == 2
    page.locator("#text span").nth(0).hover()  # "du": the readout gives that prefix's prediction and shares
    readout = page.locator("#readout").text_content()
    first = "neg {:.3f}, pos {:.3f}".format(*trace.probabilities[0])
    assert f"classify would say {first} (toward neg: encoder " in readout and "n-grams" in readout
    assert not page.problems
