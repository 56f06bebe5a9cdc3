import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from textgen.checkpoint import load_classifier, load_language_model
from textgen.cli import main
from textgen.config import ModelConfig
from textgen.errors import ConfigError
from textgen.memory import (CELLS, REBER_SYMBOLS, TASKS, LagModel, MemoryConfig, Summary, adding_problem,
                            bridged_lags, delayed_recall, embedded_reber, run_benchmark, summarize)
from textgen.model import LanguageModel
from textgen.sampling import Stepper

MEMORY_PAGE = Path(__file__).resolve().parent.parent / "docs" / "memory.md"

# The Reber grammar as drawn in Hochreiter and Schmidhuber (1997), figure 3: state -> {symbol: next state}.
REBER = {0: {"T": 1, "P": 2}, 1: {"S": 1, "X": 3}, 2: {"T": 2, "V": 4}, 3: {"X": 2, "S": 5}, 4: {"P": 3, "V": 5}}


def is_reber_string(text: str) -> bool:
    if not (text.startswith("B") and text.endswith("E")):
        return False
    state = 0
    for symbol in text[1:-1]:
        if state not in REBER or symbol not in REBER[state]:
            return False
        state = REBER[state][symbol]
    return state == 5


# --- the tasks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("task", list(TASKS))
def test_a_seed_gives_the_same_sequences_and_another_seed_others(task):
    generate = TASKS[task].generate
    first = generate(16, 12, torch.Generator().manual_seed(3))
    again = generate(16, 12, torch.Generator().manual_seed(3))
    other = generate(16, 12, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert first[0].shape[2] == TASKS[task].features


def test_the_adding_problem_marks_two_values_in_the_first_half_and_asks_for_their_sum():
    inputs, targets = adding_problem(64, 40, torch.Generator().manual_seed(0))
    values, markers = inputs[..., 0], inputs[..., 1]
    assert inputs.shape == (64, 40, 2) and ((values >= 0) & (values < 1)).all()
    assert (markers.sum(1) == 2).all() and (markers[:, 20:] == 0).all()
    assert (markers[:, :4].sum(1) >= 1).all()  # one of them in the first tenth
    torch.testing.assert_close(targets, (values * markers).sum(1))


def test_delayed_recall_shows_a_symbol_then_t_distractors_then_the_cue():
    inputs, targets = delayed_recall(32, 7, torch.Generator().manual_seed(0))
    ids = inputs.argmax(2)
    assert inputs.shape == (32, 9, 17) and (inputs.sum(2) == 1).all()
    assert torch.equal(ids[:, 0], targets) and (targets < 8).all()
    assert ((ids[:, 1:8] >= 8) & (ids[:, 1:8] < 16)).all() and (ids[:, 8] == 16).all()
    assert len(set(targets.tolist())) > 1


@pytest.mark.parametrize("lag", [5, 6, 13, 40])
def test_embedded_reber_strings_follow_the_grammar_and_repeat_the_second_symbol_after_t_steps(lag):
    inputs, targets = embedded_reber(64, lag, torch.Generator().manual_seed(lag))
    assert inputs.shape == (64, lag + 2, 7)
    texts = ["".join(REBER_SYMBOLS[i] for i in row) for row in inputs.argmax(2).tolist()]
    for text, target in zip(texts, targets.tolist()):
        assert text[0] == "B" and text[1] == "TP"[target]
        assert is_reber_string(text[2:]) and len(text[2:]) == lag
    assert len(set(texts)) > 1 and set(targets.tolist()) == {0, 1}


@pytest.mark.parametrize("options, message", [
    (dict(lags=(4, 10)), "--lags 4 is too short for reber, which needs 5 or more (the shortest Reber string); "
                         "drop it or raise it"),
    (dict(tasks=("adding", "sorting")), "--tasks sorting: choose from adding, recall, reber"),
    (dict(steps=0), "--steps must be positive, got 0"),
])
def test_invalid_benchmark_options_give_one_clear_error(options, message):
    with pytest.raises(ConfigError) as error:
        MemoryConfig(**options)
    assert str(error.value) == message


# --- models, training and scoring ----------------------------------------------------------------

@pytest.mark.parametrize("cell, gate", [("lstm", 1), ("gru", 1)])
def test_gated_cells_start_keeping_memory_for_up_to_the_lag(cell, gate):
    model = LagModel(cell, 4, 8, 1, lag=50)
    keep = (model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0)[gate * 8:(gate + 1) * 8]
    assert (keep >= 0).all() and (keep <= math.log(50)).all() and keep.std() > 0
    if cell == "lstm":
        torch.testing.assert_close((model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0)[:8], -keep)


def test_a_tiny_budget_trains_every_cell_to_recall_over_a_short_lag_and_scores_against_chance():
    config = MemoryConfig(tasks=("recall", "adding"), lags=(4,), steps=80, eval_size=256)
    seen = []
    results = run_benchmark(config, seen.append)
    assert seen == results and [(r.task, r.cell) for r in results] == [(t, c) for t in ("recall", "adding")
                                                                      for c in CELLS]
    for result in results:
        if result.task == "recall":
            assert result.metric == "accuracy" and result.chance == 1 / 8
            assert result.skill == pytest.approx((result.score - 1 / 8) / (1 - 1 / 8))
            assert result.score > 0.3, result  # chance is 0.125
        else:  # the chance error is the variance of a sum of two uniform values: 1/6
            assert result.metric == "mse" and result.chance == pytest.approx(1 / 6, abs=0.03)
            assert result.skill == pytest.approx(1 - result.score / result.chance)


def test_summaries_span_the_seeds_and_bridging_stops_at_the_first_lag_below_half_skill():
    def summary(cell, lag, skill):
        return Summary("recall", cell, lag, "accuracy", skill, skill, skill, 0.5, skill, skill, skill)

    summaries = [summary("rnn", 10, 0.9), summary("rnn", 30, 0.2), summary("rnn", 100, 0.7),
                 summary("lstm", 10, 1.0), summary("lstm", 30, 0.5), summary("lstm", 100, 0.6),
                 summary("gru", 10, 0.1), summary("gru", 30, 0.9)]
    assert bridged_lags(summaries) == {"recall": {"rnn": 10, "lstm": 100, "gru": None}}
    config = MemoryConfig(tasks=("recall",), cells=("rnn",), lags=(3,), steps=2, hidden_size=4, seeds=(0, 1),
                          eval_size=16)
    (grouped,) = summarize(run_benchmark(config))
    assert grouped.skill_min <= grouped.skill <= grouped.skill_max
    assert grouped.score_min <= grouped.score <= grouped.score_max


# --- the command ----------------------------------------------------------------------------------

def test_memory_prints_json_and_draws_the_plot(tmp_path, capsys):
    plot = tmp_path / "memory.png"
    assert main(["memory", "--tasks", "recall", "--cells", "rnn", "lstm", "--lags", "2", "5", "--steps", "20",
                 "--hidden", "8", "--seeds", "0", "1", "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["results"]) == 8 and len(result["summary"]) == 4
    assert {(r["cell"], r["lag"], r["seed"]) for r in result["results"]} == {
        (c, lag, s) for c in ("rnn", "lstm") for lag in (2, 5) for s in (0, 1)}
    assert set(result["bridged"]["recall"]) == {"rnn", "lstm"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_prints_a_table_of_scores_beside_chance(capsys):
    assert main(["memory", "--tasks", "reber", "--cells", "gru", "--lags", "5", "--steps", "5", "--hidden", "4"]) == 0
    captured = capsys.readouterr()
    assert "T=5" in captured.out and "50.0%" in captured.out and re.search(r"reber\s+│\s+gru", captured.out)
    assert "reber gru lag 5 seed 0: accuracy" in captured.err


def test_plot_without_matplotlib_is_a_one_line_error_before_any_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["memory", "--quick", "--plot", str(tmp_path / "m.png")]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("textgen: error: --plot needs matplotlib, an optional dependency; install it "
                                    "with pip install 'textgen[plot]' (or pip install matplotlib)")


# --- the plain RNN through the whole pipeline ----------------------------------------------------

def tiny_rnn(**overrides):
    torch.manual_seed(0)
    settings = dict(cell="rnn", num_layers=2, hidden_size=16, embed_size=16, vocab_size=12, dropout=0.0,
                    output_dropout=0.0)
    return LanguageModel(ModelConfig(**{**settings, **overrides})).eval()


def test_the_rnn_cell_is_a_tanh_network_whose_state_continues_the_text_exactly():
    model = tiny_rnn()
    assert isinstance(model.rnn, torch.nn.RNN) and model.rnn.nonlinearity == "tanh" and model.tied
    ids = torch.randint(0, 12, (2, 10))
    whole, state = model(ids)
    assert state.shape == (2, 2, 16)
    first, state = model(ids[:, :4])
    second, _ = model(ids[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


@pytest.mark.parametrize("layers", [1, 2])
def test_rnn_steps_equal_one_forward_pass_and_int8_steps_nearly_so(layers):
    model = tiny_rnn(num_layers=layers, hidden_size=64, embed_size=64)
    ids = torch.randint(0, 12, (3, 30), generator=torch.Generator().manual_seed(1))
    exact, int8 = Stepper(model), Stepper(model, int8=True)
    with torch.inference_mode():
        whole, _ = model(ids)
        logits, state = model(ids[:, :1])
        steps, int8_state = [logits[:, 0]], state
        for position in range(1, ids.size(1)):
            logits, state = exact(ids[:, position], state)
            int8_logits, int8_state = int8(ids[:, position], int8_state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), whole, atol=1e-5, rtol=0)
    assert not torch.equal(int8_logits, logits)
    assert (int8_logits.softmax(-1) - logits.softmax(-1)).abs().sum(-1).max() < 0.05


@pytest.mark.slow
def test_cell_rnn_trains_checkpoints_samples_and_classifies_through_the_cli(corpus, tmp_path, capsys):
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    words = ("the lazy dog", "the quick fox")  # characters the language model's vocabulary holds
    rows = [{"text": f"{words[i % 2]} {'and ' * (i % 3)}jumps", "label": i % 2} for i in range(64)]
    for split, part in (("train", rows[:48]), ("validation", rows[48:])):
        (reviews / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    lm_run, clf_run = tmp_path / "lm", tmp_path / "clf"
    assert main(["train", "--corpus", str(corpus), "--preset", "tiny", "--cell", "rnn", "--out", str(lm_run),
                 "--max-steps", "6", "--device", "cpu", "--precision", "fp32"]) == 0
    model, _, _ = load_language_model(lm_run, "cpu")
    assert model.config.cell == "rnn" and isinstance(model.rnn, torch.nn.RNN)
    capsys.readouterr()
    for extra in ([], ["--quantize", "int8"]):
        assert main(["sample", "--model", str(lm_run), "--prompt", "the ", "--length", "25", "--seed", "0",
                     "--device", "cpu", *extra]) == 0
        out = capsys.readouterr().out
        assert out.startswith("the ") and len(out) == len("the ") + 25 + 1
    assert main(["train", "--task", "classify", "--corpus", str(reviews), "--init-from", str(lm_run), "--out",
                 str(clf_run), "--max-steps", "4", "--eval-interval", "2", "--batch-size", "8", "--device", "cpu",
                 "--precision", "fp32"]) == 0
    classifier, _, _ = load_classifier(clf_run, "cpu")
    assert classifier.model_config.cell == "rnn" and isinstance(classifier.rnn, torch.nn.RNN)
    capsys.readouterr()
    assert main(["classify", "--model", str(clf_run), "--json", "the quick fox", "the lazy dog"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(line["label"] in classifier.config.label_names for line in lines)


# --- the worked example in docs/memory.md (once in the README, hence the test's name) ---------------

def test_the_readme_lstm_continues_1_to_5_with_6_to_10():
    section = MEMORY_PAGE.read_text().split("## A plain-PyTorch example", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/memory.md", "exec"), namespace)
    continuation = namespace["sequence"][5:]
    assert len(continuation) == 5
    assert all(abs(value - target) < 0.5 for value, target in zip(continuation, [6, 7, 8, 9, 10])), continuation
