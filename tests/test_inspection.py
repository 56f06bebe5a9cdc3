"""`textgen inspect`: unit traces along a text, finding units that track a feature, and the views."""

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from textgen.classify.predict import predict
from textgen.nn.checkpoint import save_checkpoint
from textgen.cli import main
from textgen.config import ClassifierConfig, ModelConfig, to_dict
from textgen.lab.inspection import (Trace, Unit, feature_values, find_units, informative_unit, load_model,
                                token_texts, trace_text)
from textgen.lab.views import CHART_PALETTE, colour, html_page, model_name, page_title, render_prediction, render_unit
from textgen.nn.model import Classifier, LanguageModel
from textgen.recipes.inspect import run
from textgen.requests import InspectRequest
from textgen.terminal.inspection import show_inspection
from textgen.data.tokenizer import CharTokenizer, SentencePieceTokenizer

CHARS = "abc()+-\n \"'<>/="


def planted_counter(cell: str = "lstm") -> tuple[LanguageModel, CharTokenizer]:
    """A tiny model whose layer 0 unit 0 follows '(' and '+' (up) and ')' and '-' (down): an LSTM's
    cell state is their running count, a GRU's hidden state the sign of the last one; the rest of
    the weights are random."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer(CHARS)
    model = LanguageModel(ModelConfig(cell=cell, num_layers=2, hidden_size=8, embed_size=8,
                                      vocab_size=tokenizer.vocab_size, tie_weights=False)).eval()
    ids = tokenizer.encode("()+-")
    with torch.no_grad():
        model.embedding.weight[:, 0] = 0.0
        model.embedding.weight[ids, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])
        rnn, size = model.rnn, 8
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(rnn, name)[0::size].zero_()  # unit 0's row of every gate
        if cell == "lstm":  # input and forget gates open, candidate = the sign of the count's step
            rnn.bias_ih_l0[0], rnn.bias_ih_l0[size] = 30.0, 30.0
            rnn.weight_ih_l0[2 * size, 0] = 30.0
        else:  # the update gate keeps the state except at a count's step, where it becomes its sign
            model.embedding.weight[:, 1] = 0.0
            model.embedding.weight[ids, 1] = 1.0
            rnn.bias_ih_l0[size], rnn.weight_ih_l0[size, 1] = 30.0, -60.0
            rnn.weight_ih_l0[2 * size, 0] = 30.0
    return model, tokenizer


def save_language_model(path: Path, model: LanguageModel, tokenizer) -> Path:
    save_checkpoint(path, {"kind": "language_model", "model_config": to_dict(model.config),
                           "model": model.state_dict(), "tokenizer": tokenizer.to_data()})
    return path


def test_trace_follows_the_text_and_its_top_layer_is_the_models_output():
    model, tokenizer = planted_counter()
    text = "ab(c)\nabc"
    trace = trace_text(model, tokenizer, text)
    assert "".join(trace.tokens) == text and len(trace.tokens) == len(text)
    assert [set(layer) for layer in trace.layers] == [{"input", "forget", "candidate", "cell", "output", "hidden"}] * 2
    outputs, _ = model.encode(torch.as_tensor(tokenizer.encode(text))[None])
    np.testing.assert_allclose(trace.layers[1]["hidden"], outputs[0].detach().numpy(), atol=1e-5)
    assert trace.values(Unit(0, "cell", 0)).round(3).tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert trace.probabilities is None


@pytest.mark.parametrize("bidirectional,head_norm", [(False, False), (True, False), (False, True)])
def test_classifier_prediction_along_the_text_is_its_prediction_on_each_prefix(bidirectional, head_norm):
    torch.manual_seed(1)
    tokenizer = CharTokenizer(CHARS)
    classifier = Classifier(ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size),
                            ClassifierConfig(label_names=["neg", "pos"], head_hidden=8, head_norm=head_norm,
                                             bidirectional=bidirectional)).eval()
    for module in classifier.head:
        if isinstance(module, torch.nn.BatchNorm1d):  # running statistics away from the identity
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.2, 2.0)
    text = "abc(ab)ca"
    trace = trace_text(classifier, tokenizer, text)
    ids = torch.as_tensor(tokenizer.encode(text))[None]
    with torch.no_grad():
        expected = [torch.softmax(classifier(ids[:, :t], torch.tensor([t])), dim=-1)[0].numpy()
                    for t in range(1, len(text) + 1)]
    np.testing.assert_allclose(trace.probabilities, np.stack(expected), atol=1e-5)
    assert trace.label_names == ["neg", "pos"]
    assert trace.layers[0]["hidden"].shape == (len(text), 16 if bidirectional else 8)


def test_features_are_read_right_after_each_character():
    text = 'a"b"c(d))e\nfg\n"'
    assert feature_values("quote", text).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    # the second ')' closes nothing and is ignored
    assert feature_values("paren", text).tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert feature_values("line-position", text).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 0, 1]
    assert feature_values("line-start", text).tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1]
    assert feature_values("paren", "x)(y").tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("cell, gate", [("lstm", "cell"), ("gru", "hidden")])
def test_find_ranks_first_the_unit_planted_to_track_parentheses(cell, gate):
    model, tokenizer = planted_counter(cell)
    rng = np.random.default_rng(0)
    rows = ["".join(f"({''.join(rng.choice(list('abc '), 5))})" if rng.random() < 0.5 else
                    "".join(rng.choice(list("abc \n"), 6)) for _ in range(8)) for _ in range(6)]
    ranking = find_units(model, tokenizer, rows, "paren", batch_size=4)
    assert ranking[0].unit == Unit(0, gate, 0) and ranking[0].correlation > (0.99 if cell == "lstm" else 0.8)
    assert ranking[0].positions == sum(map(len, rows))
    assert [abs(s.correlation) for s in ranking] == sorted((abs(s.correlation) for s in ranking), reverse=True)
    assert len(ranking) == 2 * sum(values.shape[1] for values in trace_text(model, tokenizer, "ab").layers[0].values())
    # the figure is Pearson's correlation of the unit with the feature over all positions
    trace = trace_text(model, tokenizer, rows[1])
    some_unit = ranking[5].unit
    only_row = find_units(model, tokenizer, [rows[1]], "paren", layer=some_unit.layer, gate=some_unit.gate)
    expected = np.corrcoef(trace.values(some_unit), feature_values("paren", rows[1]))[0, 1]
    assert next(s for s in only_row if s.unit == some_unit).correlation == pytest.approx(expected, abs=1e-6)
    assert {s.unit.gate for s in only_row} == {some_unit.gate} and {s.unit.layer for s in only_row} == {some_unit.layer}


def test_find_label_on_a_labelled_jsonl_finds_the_sentiment_unit(tmp_path, capsys):
    model, tokenizer = planted_counter()
    rng = np.random.default_rng(1)
    rows = []
    for index in range(40):
        label = index % 2
        words = rng.choice(list("abc  "), 12).tolist() + ["+" if label else "-"] * 3
        rng.shuffle(words)
        rows.append({"text": "".join(words), "label": label})
    corpus = tmp_path / "reviews.jsonl"
    corpus.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    status = main(["inspect", "--model", str(checkpoint), "--find", "label", "--corpus", str(corpus),
                   "--split", "train", "--json", "--top", "3"])
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    best = result["ranking"][0]
    assert (best["layer"], best["gate"], best["unit"]) == (0, "cell", 0) and best["correlation"] > 0.9
    assert best["positions"] == 36  # one per text: the carved validation split holds 4 of the 40
    assert len(result["ranking"]) == 3
    # the text shown is the first text of the split, with the best unit's values
    assert result["units"][0]["layer"] == 0 and result["units"][0]["unit"] == 0


def test_find_refuses_a_feature_the_corpus_never_shows(tmp_path, capsys):
    model, tokenizer = planted_counter()
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    corpus = tmp_path / "plain.txt"
    corpus.write_text("abc ab\nca b\n" * 50)
    status = main(["inspect", "--model", str(checkpoint), "--find", "quote", "--corpus", str(corpus)])
    assert status == 1
    assert ("--find quote: inside double quotes has one value only in this text, so no unit can track it; "
            "choose another --find feature, --corpus or --split") in capsys.readouterr().err


def test_inspect_json_gives_each_chosen_units_value_after_each_character(tmp_path, capsys):
    model, tokenizer = planted_counter()
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    text = "a(b(c))"
    assert main(["inspect", "--model", str(checkpoint), "--text", text, "--layer", "0", "--unit", "0",
                 "--unit", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    trace = trace_text(model, tokenizer, text)
    assert result["tokens"] == list(text)
    assert [(u["layer"], u["gate"], u["unit"]) for u in result["units"]] == [(0, "cell", 0), (0, "cell", 3)]
    assert np.round(result["units"][0]["values"], 3).tolist() == [0, 1, 1, 2, 2, 1, 0]
    np.testing.assert_allclose(result["units"][1]["values"], trace.values(Unit(0, "cell", 3)), atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--gate", "reset"], "--gate reset is not a gate of an LSTM; use one of: input, forget, candidate, cell, "
                          "output, hidden"),
    (["--layer", "2"], "--layer 2 is out of range: this model has layers 0 to 1"),
    (["--unit", "8"], "--unit 8 is out of range: the cell of layer 1 has units 0 to 7"),
    (["--find", "paren"], "--find paren measures units over a corpus split; add --corpus NAME (and --split)"),
])
def test_inspect_names_the_flag_that_is_wrong(tmp_path, capsys, flags, message):
    model, tokenizer = planted_counter()
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    assert main(["inspect", "--model", str(checkpoint), "--text", "abc", *flags]) == 1
    assert f"textgen: error: {message}" in capsys.readouterr().err


def test_terminal_view_colours_each_character_by_the_unit():
    model, tokenizer = planted_counter()
    trace = trace_text(model, tokenizer, "a((b))\nc")
    rendered = render_unit(trace, Unit(0, "cell", 0))
    assert rendered.plain == "a((b))↵\nc"
    styles = {rendered.plain[span.start:span.end]: str(span.style) for span in rendered.spans}
    # the count reaches 2 inside "((": the strongest red, on the unit's own scale; 0 is white
    assert styles["b"] == "black on rgb(255,51,51)" and styles["a"] == "black on rgb(255,255,255)"
    assert colour(-1.0, 1.0) == (51, 51, 255) and colour(0.5, 1.0) == (255, 153, 153)


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attributes, self.scripts, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


HOSTILE = '</script><script>alert(1)</script><img src=x onerror=alert(1)>"&amp;\u2028{data}{title}'


def hostile_page() -> tuple[str, Trace]:
    torch.manual_seed(2)
    tokenizer = CharTokenizer.from_texts([HOSTILE])
    model = LanguageModel(ModelConfig(num_layers=2, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size))
    trace = trace_text(model, tokenizer, HOSTILE)
    return html_page(trace, HOSTILE, Unit(1, "cell", 2)), trace


def test_page_is_self_contained_and_hostile_text_stays_text():
    page, trace = hostile_page()
    parser = Tags()
    parser.feed(page)
    assert parser.tags.count("script") == 2 and "img" not in parser.tags
    assert not {"src", "href", "onerror", "onload"} & set(parser.attributes)
    assert "<img" not in page and "alert(1)</script>" not in page
    data = json.loads(parser.scripts[0])
    assert data["tokens"] == trace.tokens and "".join(data["tokens"]) == HOSTILE
    assert data["title"] == HOSTILE and data["initial"] == {"layer": 1, "gate": "cell", "unit": 2}
    assert set(data["layers"][0]) == {"input", "forget", "candidate", "cell", "output", "hidden"}


def test_sentencepiece_tokens_rejoin_into_the_text_even_through_byte_pieces():
    tokenizer = SentencePieceTokenizer.train(["the cat sat on the mat. " * 200 + "abcdefghij"], 275)
    text = "the caté sat ✓ on\nthe mat"
    tokens = token_texts(tokenizer, tokenizer.encode(text).tolist())
    assert "".join(tokens) == text and len(tokens) == len(tokenizer.encode(text))
    assert "é" in tokens and "✓" in tokens  # the multi-byte characters land on their last byte piece


def test_load_model_reads_either_kind(tmp_path):
    model, tokenizer = planted_counter()
    path = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    assert isinstance(load_model(str(path))[0], LanguageModel)
    classifier = Classifier(model.config, ClassifierConfig(label_names=["a", "b"], head_hidden=4))
    save_checkpoint(tmp_path / "clf.pt", {"kind": "classifier", "model_config": to_dict(model.config),
                                          "classifier_config": to_dict(classifier.config),
                                          "model": classifier.state_dict(), "tokenizer": tokenizer.to_data()})
    assert isinstance(load_model(str(tmp_path / "clf.pt"))[0], Classifier)


def test_inspecting_a_classifier_shows_its_prediction_along_the_text(tmp_path, capsys):
    torch.manual_seed(3)
    tokenizer = CharTokenizer(CHARS)
    config = ModelConfig(cell="gru", num_layers=1, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size)
    classifier = Classifier(config, ClassifierConfig(label_names=["neg", "pos"], head_hidden=4))
    save_checkpoint(tmp_path / "clf.pt", {"kind": "classifier", "model_config": to_dict(config),
                                          "classifier_config": to_dict(classifier.config),
                                          "model": classifier.state_dict(), "tokenizer": tokenizer.to_data()})
    assert main(["inspect", "--model", str(tmp_path / "clf.pt"), "--text", "abc (a) cab", "--gate", "update",
                 "--unit", "0", "--html", str(tmp_path / "page.html")]) == 0
    assert main(["inspect", "--model", str(tmp_path / "clf.pt"), "--text", "abc (a) cab", "--gate", "update",
                 "--unit", "0"]) == 0
    out = capsys.readouterr().out  # not a terminal: numbers, one line per character
    trace = trace_text(classifier, tokenizer, "abc (a) cab")
    assert "   # token  layer 0 update unit 0    P(neg)    P(pos)\n" in out
    last = out.rstrip().splitlines()[-1].split()
    assert last[:2] == ["11", "b"] and len(last) == 5
    np.testing.assert_allclose([float(v) for v in last[2:]],
                               [trace.values(Unit(0, "update", 0))[-1], *trace.probabilities[-1]], atol=1e-4)
    page = Tags()
    page.feed((tmp_path / "page.html").read_text())
    data = json.loads(page.scripts[0])
    assert data["prediction"]["labels"] == ["neg", "pos"] and len(data["prediction"]["probabilities"]) == 11
    assert data["initial"] == {"layer": 0, "gate": "update", "unit": 0}


def test_view_opens_on_the_unit_that_varies_most_along_the_text_and_says_why(tmp_path, capsys):
    model, tokenizer = planted_counter()
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    text = "ab((((((((c"  # the planted counter climbs to 8: no random unit moves as much
    spread = trace_text(model, tokenizer, text).layers[0]["cell"].std(axis=0)
    reason = (f"of layer 0's 8 cell units, it varies most along this text (standard deviation {spread[0]:.2f}, "
              f"the median unit's {np.median(spread):.2f}); --unit N shows another")
    assert main(["inspect", "--model", str(checkpoint), "--text", text, "--layer", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(u["layer"], u["gate"], u["unit"]) for u in result["units"]] == [(0, "cell", 0)]
    assert result["reason"] == reason
    assert main(["inspect", "--model", str(checkpoint), "--text", text, "--layer", "0"]) == 0
    assert capsys.readouterr().out.startswith(f"why this unit: {reason}\neach unit's value after each token:\n"
                                              f"   # token  layer 0 cell unit 0\n")
    assert main(["inspect", "--model", str(checkpoint), "--text", text, "--layer", "0",
                 "--html", str(tmp_path / "page.html")]) == 0
    data = json.loads(page_parts((tmp_path / "page.html").read_text()).scripts[0])
    assert data["initial"] == {"layer": 0, "gate": "cell", "unit": 0} and data["reason"] == reason
    assert f"it opens on layer 0 cell unit 0: {reason}" in " ".join(capsys.readouterr().err.split())
    # a unit the user names is shown without a reason
    assert main(["inspect", "--model", str(checkpoint), "--text", text, "--layer", "0", "--unit", "3", "--json"]) == 0
    assert "reason" not in json.loads(capsys.readouterr().out)


def test_a_classifier_view_opens_on_the_unit_that_moves_with_its_prediction():
    probabilities = np.stack([np.linspace(0.8, 0.1, 6), np.linspace(0.2, 0.9, 6)], axis=1)  # "pos" wins
    cells = np.stack([np.zeros(6),                                   # never moves
                      np.linspace(0, 4, 6) + 3 * np.array([1, -1, -1, 1, 1, -1]),  # ranges widest, barely with it
                      2 * probabilities[:, 1] + 0.1 * np.array([0, 1, 0, 1, 0, 1])], axis=1)  # follows it
    trace = Trace(list("abcdef"), [{"cell": cells}], probabilities, ["neg", "pos"], np.zeros(6, dtype=bool))
    choice = informative_unit(trace, 0, "cell")
    assert choice.unit == Unit(0, "cell", 2)
    assert choice.reason.startswith("of layer 0's 3 cell units, it moves most in step with the classifier's "
                                    "probability of pos along this text (r = +1.00")
    one_token = Trace(["a"], [{"cell": cells[:1]}], None, None, np.zeros(1, dtype=bool))
    assert informative_unit(one_token, 0, "cell").unit == Unit(0, "cell", 0)


def test_page_title_says_which_model_reads_which_text(tmp_path):
    assert (page_title("shakespeare", "ROMEO:\nBut soft, what light through yonder window breaks?")
            == 'textgen inspect: shakespeare on "ROMEO: But soft, what light through…"')
    assert page_title("runs/rt-clf", "dull") == 'textgen inspect: rt-clf on "dull"'
    assert model_name("runs/rt-clf/best.pt") == "rt-clf/best" and model_name("lm.pt") == "lm"
    model, tokenizer = planted_counter()
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    assert main(["inspect", "--model", str(checkpoint), "--text", "a <b> & c", "--html", str(tmp_path / "p.html")]) == 0
    page = (tmp_path / "p.html").read_text()
    assert "<title>textgen inspect: lm on &quot;a &lt;b&gt; &amp; c&quot;</title>" in page
    assert str(tmp_path) not in page.split("</title>")[0]  # no file path in the title


def test_characters_the_model_never_saw_are_shown_as_themselves_and_marked(tmp_path, capsys):
    model, tokenizer = planted_counter()
    text = "a(é)b—"
    trace = trace_text(model, tokenizer, text)
    assert trace.tokens == list(text) and trace.unknown.tolist() == [False, False, True, False, False, True]
    rendered = render_unit(trace, Unit(0, "cell", 0))
    assert rendered.plain == text and "\ufffd" not in rendered.plain
    styles = {rendered.plain[span.start:span.end]: str(span.style) for span in rendered.spans}
    assert styles["é"].endswith(" underline") and not styles["a"].endswith("underline")
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    assert main(["inspect", "--model", str(checkpoint), "--text", text, "--html", str(tmp_path / "p.html")]) == 0
    page = (tmp_path / "p.html").read_text()
    data = json.loads(page_parts(page).scripts[0])
    assert data["tokens"] == list(text) and data["unknown"] == [2, 5] and "\\ufffd" not in page
    assert "#text span.unknown" in page  # styled, not replaced
    colour = Console(force_terminal=True, color_system="truecolor", file=io.StringIO(), width=200)
    show_inspection(colour, InspectRequest(model=str(checkpoint), text=text), run(InspectRequest(
        model=str(checkpoint), text=text, unit=(0,))), as_json=False)
    assert "(red high, blue low, underlined: unknown to the model):\n" in colour.file.getvalue()


def test_prediction_chart_has_axes_ticks_token_labels_and_colours_apart_from_the_units(tmp_path):
    torch.manual_seed(3)
    tokenizer = CharTokenizer(CHARS)
    config = ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size)
    classifier = Classifier(config, ClassifierConfig(label_names=["neg", "<pos>"], head_hidden=4))
    save_checkpoint(tmp_path / "clf.pt", {"kind": "classifier", "model_config": to_dict(config),
                                          "classifier_config": to_dict(classifier.config),
                                          "model": classifier.state_dict(), "tokenizer": tokenizer.to_data()})
    assert main(["inspect", "--model", str(tmp_path / "clf.pt"), "--text", "ab c<a>\n",
                 "--html", str(tmp_path / "page.html")]) == 0
    page = (tmp_path / "page.html").read_text()
    chart = page[page.index('<svg xmlns="http://www.w3.org/2000/svg" id="prediction-chart"'):page.index("</svg>")]

    class Chart(HTMLParser):
        def __init__(self):
            super().__init__()
            self.elements, self._open = [], None

        def handle_starttag(self, tag, attrs):
            self.elements.append((tag, dict(attrs), ""))
            self._open = tag

        def handle_endtag(self, tag):
            self._open = None

        def handle_data(self, data):
            if self._open == "text":
                tag, attrs, text = self.elements[-1]
                self.elements[-1] = (tag, attrs, text + data)

    parsed = Chart()
    parsed.feed(chart)
    texts = {(attrs.get("class"), text) for tag, attrs, text in parsed.elements if tag == "text"}
    assert sum(attrs.get("class") == "axis" for tag, attrs, _ in parsed.elements if tag == "line") == 2
    assert {("ytick", tick) for tick in ("0", "0.25", "0.5", "0.75", "1")} <= texts
    assert ("ylabel", "probability") in texts and ("xlabel", "token") in texts
    # every token labelled, spaces and line breaks made visible, the text escaped
    labels = [text for tag, attrs, text in parsed.elements if tag == "text" and attrs.get("class") == "xtick"]
    assert labels == ["a", "b", "␣", "c", "<", "a", ">", "↵"]
    assert {("legend", "neg"), ("legend", "<pos>")} <= texts and "<pos>" not in chart
    strokes = [attrs["stroke"] for tag, attrs, _ in parsed.elements if tag == "polyline"]
    assert strokes == CHART_PALETTE[:2]
    assert not {colour.lower() for colour in strokes} & {"#ff0000", "#0000ff", "#1f77b4", "#d62728", "#ff3333",
                                                         "#3333ff"}  # the units' red and blue


def test_find_shows_its_progress_on_stderr(tmp_path, capsys, monkeypatch):
    model, tokenizer = planted_counter()
    calls = []
    rows = ["(ab) c\n" * 20] * 5
    find_units(model, tokenizer, rows, "paren", batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(280, 700), (560, 700), (700, 700)]
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    corpus = tmp_path / "code.txt"
    corpus.write_text("(ab) c\n" * 500)
    # stderr counts as a terminal, as it does for a person (not FORCE_COLOR: rich reads the os.environ
    # it was imported with, which a datasets.map with num_proc elsewhere in the run may have replaced)
    monkeypatch.setattr(Console, "is_terminal", property(lambda console: True))
    assert main(["inspect", "--model", str(checkpoint), "--find", "paren", "--corpus", str(corpus),
                 "--split", "train", "--top", "2"]) == 0
    err = capsys.readouterr().err
    assert "--find paren" in err and "tokens" in err


def page_parts(page: str) -> Tags:
    """The page's tags and the text of its two scripts (the data, then the code)."""
    parts = Tags()
    parts.feed(page)
    return parts


def test_terminal_prediction_is_shaded_in_the_charts_colour_not_the_units_red_and_blue():
    probabilities = np.array([[0.5, 0.5], [0.2, 0.8], [0.0, 1.0]])
    trace = Trace(list("abc"), [{"cell": np.zeros((3, 1))}], probabilities, ["neg", "pos"], np.zeros(3, dtype=bool))
    rendered = render_prediction(trace)
    styles = [str(span.style) for span in rendered.spans]
    gold = tuple(int(CHART_PALETTE[1][i:i + 2], 16) for i in (1, 3, 5))
    assert styles[0] == "black on rgb(255,255,255)" and styles[2] == "black on rgb({},{},{})".format(*gold)


def stacked_classifier(long_text: str = "whole", bidirectional: bool = False, decisive_margin: float = 0.0,
                       features: str = "both") -> tuple[Classifier, CharTokenizer]:
    """A tiny classifier of encoder and hashed n-grams, mixed as `textgen classify` mixes them, its
    n-gram table random so that the two parts disagree, reading at most 5 characters at once."""
    torch.manual_seed(4)
    tokenizer = CharTokenizer(CHARS)
    config = ModelConfig(num_layers=1, hidden_size=8, embed_size=8, vocab_size=tokenizer.vocab_size)
    classifier = Classifier(config, ClassifierConfig(
        label_names=["neg", "pos"], head_hidden=8, bidirectional=bidirectional, max_len=5, long_text=long_text,
        features=features, ngram_buckets=64, ngram_weight=0.6, temperatures=(1.3, 0.7, 0.9),
        decisive_margin=decisive_margin)).eval()
    with torch.no_grad():
        classifier.ngrams.weight.normal_(0, 1.5)
    return classifier, tokenizer


@pytest.mark.parametrize("long_text, bidirectional, margin, features", [
    ("whole", False, 0.0, "both"), ("whole", False, 0.8, "both"), ("tail", False, 0.0, "both"),
    ("truncate", False, 0.0, "both"), ("chunk", False, 0.0, "both"), ("whole", True, 0.0, "both"),
    ("tail", False, 0.0, "ngram"), ("chunk", False, 0.0, "recurrent")])
def test_prediction_along_the_text_is_what_classify_says_of_each_prefix(long_text, bidirectional, margin, features):
    classifier, tokenizer = stacked_classifier(long_text, bidirectional, margin, features)
    text = "ab c (a b) cab ba"
    trace = trace_text(classifier, tokenizer, text)
    expected = predict(classifier, tokenizer, [text[:end] for end in range(1, len(text) + 1)], torch.device("cpu"),
                       precision="fp32")
    np.testing.assert_allclose(trace.probabilities, expected, atol=1e-5)
    if margin:  # the n-grams decide some prefixes alone, and not others
        assert 0 < trace.ngrams_alone.sum() < len(text)
    # the parts add up to the logits whose softmax at the temperature is the probability
    if long_text == "whole" and not margin and features == "both":
        mixed = trace.parts["encoder"] + trace.parts["n-grams"]
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(mixed) / 0.9, dim=1).numpy(), expected, atol=1e-5)
    assert set(trace.parts) == {"both": {"encoder", "n-grams"}, "ngram": {"n-grams"},
                                "recurrent": {"encoder"}}[features]


def test_terminal_prints_numbers_where_colour_cannot_show(tmp_path):
    model, tokenizer = planted_counter()
    checkpoint = save_language_model(tmp_path / "lm.pt", model, tokenizer)
    request = InspectRequest(model=str(checkpoint), text="a((b", layer=0, unit=(0,), gate="cell")
    inspection = run(request)
    forget = InspectRequest(model=str(checkpoint), text="a((b", layer=0, unit=(0,), gate="forget")
    # NO_COLOR, a pipe, a dumb terminal, as rich reads them from the environment when the process starts
    # (set here on the console itself: a `datasets` map swaps os.environ for a copy that rich never reads)
    for settings in ({"force_terminal": True, "no_color": True}, {"force_terminal": False},
                     {"force_terminal": True, "color_system": None}):
        console = Console(file=io.StringIO(), width=120, **settings)
        show_inspection(console, request, inspection, as_json=False)
        lines = console.file.getvalue().splitlines()
        assert lines[0] == "each unit's value after each token:"
        assert [line.split() for line in lines[2:]] == [["1", "a", "+0.0000"], ["2", "(", "+1.0000"],
                                                        ["3", "(", "+2.0000"], ["4", "b", "+2.0000"]]
    # in colour, a gate is shaded on its own 0-1 scale: white closed, violet open
    console = Console(force_terminal=True, color_system="truecolor", file=io.StringIO(), width=120)
    show_inspection(console, forget, run(forget), as_json=False)
    assert "layer 0 forget unit 0 (gates white (0, closed) to violet (1, open)):" in console.file.getvalue()
    rendered = render_unit(trace_text(model, tokenizer, "a((b"), Unit(0, "forget", 0))
    assert {str(span.style) for span in rendered.spans} == {"white on rgb(84,39,143)"}  # planted wide open


@pytest.mark.parametrize("cell, bidirectional", [("lstm", False), ("lstm", True), ("gru", False), ("gru", True),
                                                 ("rnn", False)])
def test_each_gate_is_the_squashed_sum_of_its_part_from_the_input_and_its_part_from_the_state(cell, bidirectional):
    torch.manual_seed(7)
    tokenizer = CharTokenizer(CHARS)
    classifier = Classifier(ModelConfig(cell=cell, num_layers=2, hidden_size=8, embed_size=8,
                                        vocab_size=tokenizer.vocab_size),
                            ClassifierConfig(label_names=["a", "b"], head_hidden=4, bidirectional=bidirectional))
    trace = trace_text(classifier, tokenizer, "ab (c) ba\nc")
    for gates, parts in zip(trace.layers, trace.preactivations):
        assert set(parts) == {"lstm": {"input", "forget", "candidate", "output"},
                              "gru": {"reset", "update", "candidate"}, "rnn": {"hidden"}}[cell]
        for name, (from_input, from_state) in parts.items():
            squash = np.tanh if name in ("candidate", "hidden") else lambda z: 1 / (1 + np.exp(-z))
            np.testing.assert_allclose(squash(from_input + from_state), gates[name], atol=1e-5)
    # the first layer's part from the input is the character's alone: the same wherever it is read
    first = trace.preactivations[0][{"lstm": "forget", "gru": "update", "rnn": "hidden"}[cell]][0]
    np.testing.assert_allclose(first[0], first[8], atol=1e-6)  # both "a"
