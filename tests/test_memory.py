import dataclasses
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from textgen.nn.checkpoint import load_classifier, load_language_model
from textgen.cli import main
from textgen.config import ModelConfig
from textgen.errors import ConfigError
from textgen.lab.cells import ArticleGRU, ArticleLSTM
from textgen.lab.memory import (CELLS, PROFILES, REBER_SYMBOLS, TASKS, LagModel, MemoryConfig, Result, adding_problem,
                            delayed_recall, embedded_reber, middle, reach, run_benchmark, score, skipped, summarize,
                            train_to_criterion, verdicts)
from textgen.nn.model import LanguageModel
from textgen.generate.sampling import Stepper

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
    (dict(tasks=("adding", "sorting")), "--tasks 'sorting' is not one of: adding, recall, reber"),
    (dict(cells=("lstm", "transformer")), "--cells 'transformer' is not one of: rnn, gru, lstm, article-lstm, "
                                          "article-gru"),
    (dict(budget=0), "--budget must be a whole number from 1 to 1,000,000,000, got 0"),
    (dict(budget=10), "--budget 10 is less than one step of 32 sequences; give 32 or more"),
    (dict(init="zeros"), "--init 'zeros' is not one of: chrono, chrono-forget, forget-1"),
    (dict(lr=0.0), "--lr must be above 0, got 0.0"),
    (dict(threads=0), "--threads must be a whole number from 1 to 64, got 0"),
])
def test_invalid_benchmark_options_give_one_clear_error(options, message):
    with pytest.raises(ConfigError) as error:
        MemoryConfig(**options)
    assert str(error.value) == message


# --- models, training and scoring ----------------------------------------------------------------

def total_bias(model: LagModel, cell: str, gate: str) -> torch.Tensor:
    rnn = model.rnn
    if cell == "article-gru":
        index = ArticleGRU.GATES.index(gate)
        return rnn.bias[index * 8:(index + 1) * 8]
    rows = slice(["input", "forget", "candidate", "output"].index(gate) * 8, None) if cell.endswith("lstm") else \
        slice(["reset", "update", "candidate"].index(gate) * 8, None)
    rows = slice(rows.start, rows.start + 8)
    return rnn.bias[rows] if cell == "article-lstm" else (rnn.bias_ih_l0 + rnn.bias_hh_l0)[rows]


@pytest.mark.parametrize("cell", ["lstm", "gru", "article-lstm", "article-gru"])
def test_gated_cells_start_keeping_memory_for_up_to_the_lag_and_the_controls_change_only_their_gates(cell):
    keeping = "update" if cell.endswith("gru") else "forget"
    torch.manual_seed(0)
    chrono = LagModel(cell, 4, 8, 1, lag=50)
    keep = total_bias(chrono, cell, keeping)
    assert (keep >= 0).all() and (keep <= math.log(50)).all() and keep.std() > 0
    plain = LagModel(cell, 4, 8, 1, lag=50, init="forget-1")
    torch.testing.assert_close(total_bias(plain, cell, keeping), torch.ones(8))
    if cell.endswith("lstm"):
        torch.testing.assert_close(total_bias(chrono, cell, "input"), -keep)
        torch.manual_seed(0)
        forget_only = LagModel(cell, 4, 8, 1, lag=50, init="chrono-forget")
        torch.testing.assert_close(total_bias(forget_only, cell, "forget"), keep)
        torch.testing.assert_close(total_bias(forget_only, cell, "input"), torch.zeros(8))
        torch.testing.assert_close(total_bias(plain, cell, "input"), torch.zeros(8))


def test_the_articles_lstm_output_gate_reads_the_new_cell_state_and_its_gru_keeps_a_cell_with_z():
    torch.manual_seed(0)
    inputs = torch.randn(3, 6, 4)
    lstm = ArticleLSTM(4, 8)
    before, _ = lstm(inputs)
    with torch.no_grad():
        lstm.weight_co.add_(1.0)  # only the output gate's view of c_t changes
    after, _ = lstm(inputs)
    assert before.shape == (3, 6, 8) and not torch.allclose(before, after)
    gru = ArticleGRU(4, 8)
    with torch.no_grad():
        gru.bias[:8] = 30.0  # z_t = 1: the cell keeps its zero start, so h_t = o_t * tanh(0) = 0
    outputs, _ = gru(inputs)
    assert outputs.shape == (3, 6, 8) and outputs.abs().max() < 1e-6


@pytest.mark.parametrize("cell", ["article-lstm", "article-gru"])
def test_the_articles_cells_train_a_step_with_a_gradient_on_every_weight(cell):
    torch.manual_seed(0)
    model = LagModel(cell, 17, 8, 8, lag=5)
    inputs, targets = delayed_recall(16, 5, torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_adding_is_solved_only_when_every_answer_is_off_by_under_0_04_and_recall_when_every_one_is_right():
    targets = torch.tensor([0.5, 1.0, 1.5, 0.2])
    close, one_off = targets[:, None] + 0.039, (targets + torch.tensor([0.0, 0.0, 0.05, 0.0]))[:, None]
    mse, chance, skill, solved = score(TASKS["adding"], close, targets)
    assert solved and mse == pytest.approx(0.039 ** 2) and chance == pytest.approx(float(targets.var(unbiased=False)))
    assert skill == pytest.approx(1 - mse / chance)
    assert not score(TASKS["adding"], one_off, targets)[3]
    logits = torch.nn.functional.one_hot(torch.tensor([1, 2, 3, 0]), 8).float()
    assert score(TASKS["recall"], logits, torch.tensor([1, 2, 3, 0]))[2:] == (1.0, True)
    accuracy, _, skill, solved = score(TASKS["recall"], logits, torch.tensor([1, 2, 3, 4]))
    assert (accuracy, solved) == (0.75, False) and skill == pytest.approx((0.75 - 1 / 8) / (1 - 1 / 8))


def test_training_checks_every_k_sequences_and_stops_once_solved_else_at_the_budget():
    config = MemoryConfig(tasks=("recall",), cells=("lstm",), lags=(3,), budget=6400, check_every=320, seeds=(0,),
                          eval_size=128)
    solved = train_to_criterion("recall", "lstm", 3, 0, config)
    assert solved.solved_at is not None and solved.sequences == solved.solved_at < config.budget
    assert solved.beat_at is not None and solved.beat_at <= solved.solved_at
    assert [check.sequences for check in solved.checks] == list(range(320, solved.sequences + 1, 320))
    assert solved.checks[-1].solved and not any(check.solved for check in solved.checks[:-1])
    first_beat = next(check.sequences for check in solved.checks if check.skill >= 0.5)
    assert solved.beat_at == first_beat and solved.skill == solved.checks[-1].skill == 1.0
    unsolved = train_to_criterion("adding", "rnn", 20, 0, dataclasses.replace(config, budget=100, check_every=64))
    # a budget that is not a whole number of steps ends with the step that crosses it, and a last check
    assert unsolved.solved_at is None and unsolved.sequences == 128
    assert [check.sequences for check in unsolved.checks] == [64, 128]


def test_the_median_counts_a_seed_not_within_the_budget_as_more_than_any_number():
    assert middle([3200, None, 1600]) == 3200
    assert middle([None, None, 1600]) is None
    assert middle([4800, 1600]) == 4800  # of an even count, the higher: never flatters

    def result(seed, beat, solved, skill):
        return Result("recall", "lstm", 30, seed, "accuracy", 0.5, 0.125, skill, beat, solved, 6400, 1.0)

    (summary,) = summarize([result(0, 1600, 4800, 1.0), result(1, 3200, None, 0.6), result(2, 1600, 3200, 1.0)])
    assert (summary.seeds, summary.beat, summary.beat_median, summary.beat_min, summary.beat_max) == (3, 3, 1600, 1600, 3200)
    assert (summary.solved, summary.solved_median, summary.solved_min, summary.solved_max) == (2, 4800, 3200, 4800)
    assert (summary.skill, summary.skill_min, summary.skill_max) == (1.0, 0.6, 1.0)
    (unsolved,) = summarize([result(0, None, None, 0.1), result(1, 1600, None, 0.7), result(2, None, None, 0.0)])
    assert unsolved.beat_median is None and unsolved.beat == 1 and unsolved.beat_min == unsolved.beat_max == 1600
    assert unsolved.solved_median is None and unsolved.solved_min is None


def test_reach_is_the_longest_lag_most_seeds_solved_before_the_first_they_did_not():
    def result(cell, lag, seed, solved):
        return Result("recall", cell, lag, seed, "accuracy", 1.0, 0.125, 1.0, solved, solved, 6400, 1.0)

    results = [result("lstm", lag, seed, 1600 if (lag, seed) != (100, 0) else None) for lag in (10, 30, 100)
               for seed in (0, 1, 2)]
    results += [result("gru", lag, seed, 1600 if lag != 30 or seed == 0 else None) for lag in (10, 30, 100)
                for seed in (0, 1, 2)]
    results += [result("rnn", 10, seed, None) for seed in (0, 1, 2)]
    assert reach(summarize(results)) == {"recall": {"lstm": 100, "gru": 10, "rnn": None}}


def test_a_cell_that_fails_a_lag_on_every_seed_is_not_trained_at_longer_lags():
    config = MemoryConfig(tasks=("adding",), cells=("rnn",), lags=(30, 5), budget=64, check_every=32, seeds=(0, 1),
                          eval_size=16)
    results = run_benchmark(config)
    assert config.lags == (5, 30) and {r.lag for r in results} == {5} and len(results) == 2
    assert skipped(config, results) == [("adding", "rnn", 30)]


def test_the_benchmark_runs_on_the_threads_asked_for_and_gives_the_callers_back():
    before = torch.get_num_threads()
    seen = []
    config = MemoryConfig(tasks=("recall",), cells=("rnn",), lags=(2,), budget=32, check_every=32, seeds=(0,),
                          eval_size=8, threads=2)
    run_benchmark(config, lambda result: seen.append(torch.get_num_threads()))
    assert seen == [2] and torch.get_num_threads() == before


def test_a_tiny_budget_trains_every_cell_to_recall_over_a_short_lag_and_scores_against_chance():
    config = MemoryConfig(tasks=("recall", "adding"), cells=CELLS, lags=(4,), budget=2560, check_every=640,
                          seeds=(0,), eval_size=256)
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


# --- the command ----------------------------------------------------------------------------------

def test_memory_prints_json_with_every_check_and_draws_the_plot(tmp_path, capsys):
    plot = tmp_path / "memory.png"
    assert main(["memory", "--tasks", "recall", "--cells", "rnn", "lstm", "--lags", "2", "5", "--budget", "320",
                 "--check-every", "160", "--hidden", "8", "--seeds", "0", "1", "--lr", "0.02", "--json",
                 "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"config", "results", "summary", "solved", "beat", "verdicts", "skipped"}
    assert result["config"]["lr"] == 0.02 and result["config"]["hidden_size"] == 8 and result["config"]["threads"] == 1
    ran = {(r["cell"], r["lag"], r["seed"]) for r in result["results"]}
    assert ran | {(s["cell"], s["lag"], seed) for s in result["skipped"] for seed in (0, 1)} == {
        (c, lag, s) for c in ("rnn", "lstm") for lag in (2, 5) for s in (0, 1)}
    for run in result["results"]:
        assert run["checks"] and run["checks"][-1]["sequences"] == run["sequences"] <= 320
        assert run["solved_at"] in (None, run["sequences"])
    assert {s["lag"] for s in result["summary"]} <= {2, 5} and set(result["solved"]["recall"]) == {"rnn", "lstm"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_prints_a_table_of_sequences_needed_and_the_settings(capsys):
    assert main(["memory", "--tasks", "reber", "--cells", "gru", "--lags", "5", "--budget", "64", "--check-every",
                 "32", "--hidden", "4", "--seeds", "0", "-v"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"reber\s+│\s+gru\s+│\s+5", captured.out) and "not within 0.064k" in captured.out
    assert "4 units, Adam lr 0.01, batch 32, init chrono, budget 64 sequences" in captured.out
    assert "reber gru lag 5 seed 0: beat the baseline after" in captured.err


def test_memory_logs_a_few_lines_and_each_model_only_with_v(capsys):
    # issue 32: --quick logged a wrapped line per model, 71 lines before the table
    argv = ["memory", "--tasks", "recall", "reber", "--cells", "rnn", "gru", "--lags", "5", "10", "--budget", "64",
            "--check-every", "32", "--hidden", "4", "--seeds", "0", "1"]
    assert main(argv) == 0
    quiet = capsys.readouterr().err
    assert main([*argv, "-v"]) == 0
    verbose = capsys.readouterr().err
    assert "seed 0: beat the baseline after" not in quiet and quiet.startswith("INFO     training 16 models")
    assert re.search(r"trained \d+ models in \d+ s", quiet) and quiet.count("INFO") == 2
    assert verbose.count("seed 1: beat the baseline after") == verbose.count("seed 0: beat the baseline after") >= 4


def memory_results(budget: int, lstm_solves_at_100: bool) -> list[Result]:
    """recall, three seeds: the gru solves every lag; the lstm T=10 and 30, and T=100 as told; the rnn nothing."""
    def result(cell, lag, seed, solved):
        return Result("recall", cell, lag, seed, "accuracy", 1.0, 0.125, 1.0 if solved else 0.0, solved, solved,
                      solved or budget, 1.0)

    return ([result("gru", lag, seed, 1600) for lag in (10, 30, 100) for seed in (0, 1, 2)]
            + [result("lstm", lag, seed, 1600 if lag < 100 or lstm_solves_at_100 else None) for lag in (10, 30, 100)
               for seed in (0, 1, 2)]
            + [result("rnn", 10, seed, None) for seed in (0, 1, 2)])


def test_a_lag_not_solved_within_a_budget_under_the_default_is_undecided_not_failed(capsys):
    from textgen.terminal.render import print_memory

    quick = MemoryConfig(tasks=("recall",), cells=("rnn", "gru", "lstm"), **PROFILES["quick"])
    summaries = summarize(memory_results(quick.budget, lstm_solves_at_100=False))
    found = {v.cell: (v.solved_to, v.stopped_at, v.undecided) for v in verdicts(quick, summaries)}
    assert found == {"gru": (100, None, False), "lstm": (30, 100, True), "rnn": (None, 10, True)}
    print_memory(quick, summaries, memory_results(quick.budget, False))
    out = capsys.readouterr().out
    assert "with a budget of 12,800 sequences per model: too few sequences to call a failure" in out
    assert ("  recall: gru solved to T=100; lstm solved to T=30, T=100 undecided within the quick budget; "
            "rnn T=10 undecided within the quick budget") in out

    default = MemoryConfig(tasks=("recall",), cells=("rnn", "gru", "lstm"))
    results = memory_results(default.budget, lstm_solves_at_100=True)
    print_memory(default, summarize(results), results)
    out = capsys.readouterr().out
    assert "undecided" not in out and "too few" not in out
    assert "  recall: gru solved to T=100; lstm solved to T=100; rnn not T=10 within 200k" in out


def test_the_paper_profile_dry_run_shows_its_budget_without_training(capsys):
    assert main(["memory", "--profile", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would train 81 models") and "at most 1,000,000 sequences" in out and "lags 100 500 1000" in out
    assert main(["memory", "--quick", "--seeds", "4", "5", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["config"]["lags"] == list(PROFILES["quick"]["lags"]) and plan["config"]["seeds"] == [4, 5]
    assert plan["models"] == 3 * 3 * 3 * 2


@pytest.mark.parametrize("argv, message", [
    (["--quick", "--profile", "paper"], "--quick is --profile quick; drop one of --quick and --profile paper"),
    (["--budget", "16"], "--budget 16 is less than one step of 32 sequences; give 32 or more"),
    (["--lr", "0"], "--lr must be above 0, got 0.0"),
])
def test_bad_memory_options_are_one_line_errors_before_any_training(argv, message, capsys):
    assert main(["memory", *argv]) == 1
    assert capsys.readouterr().err.strip() == f"textgen: error: {message}"


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


# --- threads for small models ---------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["sample", "--model", "shakespeare", "--length", "3", "--device", "cpu"],
                                  ["inspect", "--model", "shakespeare", "--text", "to be", "--json"]])
def test_one_text_runs_on_one_thread_unless_omp_num_threads_says_otherwise(argv, monkeypatch, capsys):
    threads = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        assert main(argv) == 0 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(2)
        assert main(argv) == 0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_seed_given_twice_is_refused_not_counted_as_a_spread(capsys):
    from textgen.cli import main

    assert main(["memory", "--seeds", "0", "0", "0", "--dry-run"]) == 1
    assert "--seeds 0 0 0 repeats an item; give each once" in capsys.readouterr().err
