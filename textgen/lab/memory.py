"""Long-term memory, measured: synthetic tasks whose answer lies a controlled lag T back.

The adding problem and the embedded Reber grammar follow Hochreiter and Schmidhuber (1997),
experiments 4 and 1; delayed recall is the plainest lag task. Every (task, cell, lag, seed) trains
a fresh one-layer network on sequences generated on the fly from the seed until it meets the
paper's criterion on held-out sequences or spends its budget of sequences, checking every so often;
what it reports is the number of sequences it needed, as the paper does. All cells see the same
sequences.

Skill puts every task on one scale: 0 is chance (guessing, or always predicting the mean), 1 is
perfect. Two criteria: a model *beats the baseline* at skill `BEATS_BASELINE` or more, and *solves* a
task when every held-out answer is right (for the adding problem: off by under `ADDING_TOLERANCE`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from textgen.lab.cells import ArticleGRU, ArticleLSTM
from textgen.config import ModelConfig
from textgen.config import check_value
from textgen.errors import ConfigError
from textgen.requests import MEMORY_CELLS, MEMORY_INITS, MEMORY_SETTINGS, MemoryRequest
from textgen.nn.model import GATE_COUNT, check_memory, gate_rows, recurrent_layers

CELLS, INITS = MEMORY_CELLS, MEMORY_INITS
BEATS_BASELINE = 0.5  # halfway from chance to perfect: clearly remembering, though not yet solved
ADDING_TOLERANCE = 0.04  # the paper's: an adding answer is right when off by less than this
RECALL_SYMBOLS = 8
GRAD_CLIP = 1.0  # a plain RNN's gradients explode over long lags without it

# (batch, lag, generator) -> inputs (batch, time, features) and targets (batch,)
Generate = Callable[[int, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def adding_problem(batch: int, lag: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """T values in [0, 1), each with a marker channel; the target is the sum of the two marked values.

    As in the paper, one marked value lies in the first tenth and the other in the first half, so
    each must be held for at least T/2 steps.
    """
    values = torch.rand(batch, lag, generator=generator)
    first = torch.randint(0, max(1, lag // 10), (batch,), generator=generator)
    # the other position is drawn from the first half without the first one
    second = torch.randint(0, lag // 2 - 1, (batch,), generator=generator)
    second = second + (second >= first).long()
    markers = torch.zeros(batch, lag)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=2), targets


def delayed_recall(batch: int, lag: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One of 8 symbols, T distractors (8 other symbols), then a recall cue; the target is the symbol."""
    symbols = torch.randint(0, RECALL_SYMBOLS, (batch,), generator=generator)
    distractors = torch.randint(RECALL_SYMBOLS, 2 * RECALL_SYMBOLS, (batch, lag), generator=generator)
    cue = torch.full((batch, 1), 2 * RECALL_SYMBOLS)
    ids = torch.cat([symbols[:, None], distractors, cue], dim=1)
    return F.one_hot(ids, 2 * RECALL_SYMBOLS + 1).float(), symbols


REBER_SYMBOLS = "BTPSXVE"
# The Reber grammar as (symbol, next state) per state; state 5 only ends the string with E.
REBER_EDGES = (((1, 1), (2, 2)),  # T, P
               ((3, 1), (4, 3)),  # S (loop), X
               ((1, 2), (5, 4)),  # T (loop), V
               ((4, 2), (3, 5)),  # X, S
               ((2, 3), (5, 5)))  # P, V


@functools.lru_cache(maxsize=16)
def _reber_moves(path_length: int) -> tuple[np.ndarray, np.ndarray]:
    """symbol[step, state, coin] and next_state[step, state, coin] on a path of exactly
    `path_length` symbols to the end state 5: the coin's edge when both can still end on time,
    else the one that can."""
    # reachable[r][state]: state 5 can be reached from `state` in exactly r symbols
    reachable = [[state == 5 for state in range(6)]]
    for _ in range(path_length):
        reachable.append([any(reachable[-1][nxt] for _, nxt in edges) for edges in REBER_EDGES] + [False])
    symbols = np.zeros((path_length, len(REBER_EDGES), 2), dtype=np.int64)
    next_states = np.zeros_like(symbols)
    for step in range(path_length):
        for state, edges in enumerate(REBER_EDGES):
            ok = [reachable[path_length - step - 1][nxt] for _, nxt in edges]
            if not any(ok):  # a state that cannot end on time is never visited at this step
                continue
            for coin in (0, 1):
                symbols[step, state, coin], next_states[step, state, coin] = edges[coin if all(ok) else ok.index(True)]
    return symbols, next_states


def embedded_reber(batch: int, lag: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """B, T or P, then a Reber string of exactly T symbols (B ... E) drawn at random from the grammar;
    the target is the second symbol (T: 0, P: 1), which the embedded grammar repeats next."""
    path_length = lag - 2  # the Reber string less its B and E
    symbols, next_states = _reber_moves(path_length)
    coins = torch.randint(0, 2, (path_length, batch), generator=generator).numpy()
    state, path = np.zeros(batch, dtype=np.int64), np.empty((batch, path_length), dtype=np.int64)
    for step in range(path_length):  # numpy, whose small calls cost far less than torch's
        path[:, step] = symbols[step, state, coins[step]]
        state = next_states[step, state, coins[step]]
    targets = torch.randint(0, 2, (batch,), generator=generator)
    begin, end = torch.zeros(batch, 1, dtype=torch.long), torch.full((batch, 1), 6)
    ids = torch.cat([begin, (targets + 1)[:, None], begin, torch.from_numpy(path), end], dim=1)
    return F.one_hot(ids, len(REBER_SYMBOLS)).float(), targets


@dataclass(frozen=True)
class Task:
    """A lag task: how its sequences are made and how its answers are scored."""

    generate: Generate
    features: int
    classes: int | None  # None: a regression scored by mean squared error
    min_lag: int
    what: str  # the smallest lag's reason, for the error message


TASKS = {
    "adding": Task(adding_problem, 2, None, 4, "two marked values in the first half"),
    "recall": Task(delayed_recall, 2 * RECALL_SYMBOLS + 1, RECALL_SYMBOLS, 1, "one distractor"),
    "reber": Task(embedded_reber, len(REBER_SYMBOLS), 2, 5, "the shortest Reber string"),
}


@dataclass
class MemoryConfig:
    """The benchmark: which tasks, cells and lags, each model's size, and its budget of sequences."""

    tasks: tuple[str, ...] = tuple(TASKS)
    """tasks to run: adding, recall, reber"""
    cells: tuple[str, ...] = ("rnn", "gru", "lstm")
    """recurrent cells to compare: rnn, gru, lstm (torch's), article-lstm, article-gru (cells.py)"""
    lags: tuple[int, ...] = (10, 30, 100)
    """lags T: steps between the information and the answer"""
    budget: int = 200_000
    """training sequences per model at most; it stops earlier once solved"""
    check_every: int = 1_600
    """sequences between two checks on the held-out set"""
    hidden_size: int = 16
    """units in each model's recurrent layer"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """a full run per seed; the table shows the median and range"""
    batch_size: int = 32
    """sequences per training step"""
    lr: float = 1e-2
    """Adam learning rate"""
    eval_size: int = 512
    """held-out sequences scored at each check"""
    init: str = "chrono"
    """gate biases at the start: chrono, chrono-forget (input gate bias 0), forget-1"""
    threads: int = 1
    """torch threads; these models are too small for more to help"""

    def __post_init__(self) -> None:
        for name in MEMORY_SETTINGS:  # the bounds and choices a user may type are the request's, checked alike
            setattr(self, name, check_value(MemoryRequest, name, getattr(self, name)))
        self.lags = tuple(sorted(set(self.lags)))  # shortest first: a cell that fails one lag skips the longer
        for flag, name in (("batch_size", "batch_size"), ("eval_size", "eval_size")):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{flag} must be positive, got {getattr(self, name)}")
        if not (self.tasks and self.cells and self.seeds and self.lags):
            raise ConfigError("--tasks, --cells, --seeds and --lags need at least one value each")
        if self.budget < self.batch_size:
            raise ConfigError(f"--budget {self.budget} is less than one step of {self.batch_size} sequences; "
                              f"give {self.batch_size} or more")
        for task in self.tasks:
            shortest = TASKS[task].min_lag
            if min(self.lags) < shortest:
                raise ConfigError(f"--lags {min(self.lags)} is too short for {task}, which needs {shortest} or "
                                  f"more ({TASKS[task].what}); drop it or raise it")

    @property
    def models(self) -> int:
        """How many models the benchmark trains."""
        return len(self.tasks) * len(self.cells) * len(self.lags) * len(self.seeds)


PROFILES = {
    "quick": {"lags": (10, 30, 100), "budget": 12_800, "seeds": (0,), "check_every": 1_600, "eval_size": 256},
    "default": {},  # under 20 minutes on one core
    # the literature's budgets: Hochreiter and Schmidhuber (1997) needed up to 853,000 sequences
    # (adding, T=1000) and tested on 2,560; hours on a CPU
    "paper": {"lags": (100, 500, 1000), "budget": 1_000_000, "check_every": 10_000, "eval_size": 2_560},
}
"""--profile NAME: overrides of MemoryConfig's defaults (the default profile); flags override them in turn."""


class LagModel(nn.Module):
    """One recurrent layer of the chosen cell (the language model's own, or the article's from
    cells.py) and a linear readout of its last output.

    Gated cells start with chrono initialisation (Tallec and Ollivier 2018) for dependencies up to
    `lag` steps: each unit's forget (LSTM) or update (GRU) gate bias is log U(1, lag), so it first
    keeps its memory for between 1 and `lag` steps, and an LSTM's input gate bias is its negative
    (`init` "chrono"); "chrono-forget" leaves the input gate bias at 0, and "forget-1" sets the
    keeping gate's bias to 1 as the language models do (memory for a few steps). A plain RNN has
    no gate to set.
    """

    def __init__(self, cell: str, features: int, hidden_size: int, outputs: int, lag: int, init: str = "chrono"):
        super().__init__()
        if cell == "article-lstm":
            self.rnn = ArticleLSTM(features, hidden_size)
        elif cell == "article-gru":
            self.rnn = ArticleGRU(features, hidden_size)
        else:
            self.rnn = recurrent_layers(ModelConfig(cell=cell, num_layers=1, hidden_size=hidden_size,
                                                    embed_size=features, dropout=0.0, tie_weights=False))
        self.readout = nn.Linear(hidden_size, outputs)
        if cell == "rnn":
            return
        keep = torch.empty(hidden_size).uniform_(1.0, max(2.0, lag)).log() if init != "forget-1" else torch.ones(hidden_size)
        memory, writing = ("update", None) if cell.endswith("gru") else ("forget", "input")
        self._set_bias(cell, memory, keep)
        if writing:
            self._set_bias(cell, writing, -keep if init == "chrono" else torch.zeros(hidden_size))

    def _set_bias(self, cell: str, gate: str, value: torch.Tensor) -> None:
        """Make `gate`'s total bias `value`."""
        size = len(value)
        with torch.no_grad():
            if cell == "article-gru":
                index = ArticleGRU.GATES.index(gate)
                self.rnn.bias[index * size:(index + 1) * size] = value
            elif cell == "article-lstm":
                self.rnn.bias[gate_rows("lstm", gate, size)] = value
            else:
                self.rnn.bias_ih_l0[gate_rows(cell, gate, size)] = value
                self.rnn.bias_hh_l0[gate_rows(cell, gate, size)] = 0.0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (batch, outputs) after reading `inputs` (batch, time, features)."""
        outputs, _ = self.rnn(inputs)
        return self.readout(outputs[:, -1])


def _loss(task: Task, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task.classes is None:
        return F.mse_loss(outputs.squeeze(1), targets)
    return F.cross_entropy(outputs, targets)


@dataclass
class Check:
    """One look at the held-out set during training."""

    sequences: int
    """training sequences seen so far"""
    score: float
    skill: float
    solved: bool


def score(task: Task, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, float, float, bool]:
    """(score, chance, skill, solved) of `outputs` for `targets`: accuracy against guessing, or the
    mean squared error against always predicting the mean; solved when every answer is right."""
    if task.classes is None:
        errors = outputs.squeeze(1) - targets
        mse, chance = float(errors.pow(2).mean()), float(targets.var(unbiased=False))
        return mse, chance, 1.0 - mse / chance, bool((errors.abs() < ADDING_TOLERANCE).all())
    right = outputs.argmax(1) == targets
    accuracy, chance = float(right.float().mean()), 1.0 / task.classes
    return accuracy, chance, (accuracy - chance) / (1.0 - chance), bool(right.all())


@dataclass
class Result:
    """One model trained to the criterion (or its budget): what it needed, and its final score."""

    task: str
    cell: str
    lag: int
    seed: int
    metric: str
    """accuracy, or mse (mean squared error)"""
    score: float
    """at the last check"""
    chance: float
    """accuracy of guessing, or the mse of always predicting the mean"""
    skill: float
    """at the last check: 0 at chance, 1 perfect"""
    beat_at: int | None
    """training sequences seen at the first check with skill >= BEATS_BASELINE (None: not within the budget)"""
    solved_at: int | None
    """training sequences seen at the first check where every held-out answer was right"""
    sequences: int
    """training sequences seen in all"""
    seconds: float
    checks: list[Check] = dataclasses.field(default_factory=list)


def train_to_criterion(task_name: str, cell: str, lag: int, seed: int, config: MemoryConfig) -> Result:
    """Train a fresh model on `task_name` at `lag`, checking the held-out set every `check_every`
    sequences, until it solves the task or has seen `budget` sequences."""
    task = TASKS[task_name]
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = LagModel(cell, task.features, config.hidden_size, task.classes or 1, lag, config.init)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data = torch.Generator().manual_seed(seed)
    # held-out sequences from a stream the training never draws from
    held_inputs, held_targets = task.generate(config.eval_size, lag, torch.Generator().manual_seed(2**31 + seed))
    seen, next_check, checks, beat_at, solved_at = 0, config.check_every, [], None, None
    while solved_at is None and seen < config.budget:
        inputs, targets = task.generate(config.batch_size, lag, data)
        loss = _loss(task, model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        seen += config.batch_size
        if seen >= next_check or seen >= config.budget:
            next_check += config.check_every
            with torch.no_grad():
                outputs = model.eval()(held_inputs)
            model.train()
            value, chance, skill, solved = score(task, outputs, held_targets)
            checks.append(Check(seen, value, skill, solved))
            beat_at = beat_at if beat_at is not None or skill < BEATS_BASELINE else seen
            solved_at = seen if solved else None
    last = checks[-1]
    return Result(task_name, cell, lag, seed, "mse" if task.classes is None else "accuracy", last.score, chance,
                  last.skill, beat_at, solved_at, seen, time.perf_counter() - start, checks)


def run_benchmark(config: MemoryConfig, on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Every (task, cell, lag, seed) of `config`, trained to the criterion, from the shortest lag up;
    a cell that no seed taught to beat the baseline at one lag is not trained at longer ones
    (`skipped` lists them). `on_result` sees each result as it ends."""
    rows = max(config.batch_size, config.eval_size)  # sequences of lag steps through gates kept for backward
    check_memory(4.0 * rows * (max(config.lags) + 10) * config.hidden_size * (2 * GATE_COUNT["lstm"] + 2),
                 f"--lags {max(config.lags)} with --hidden {config.hidden_size}", "lower them")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    results = []
    try:
        for task in config.tasks:
            for cell in config.cells:
                for lag in config.lags:
                    runs = []
                    for seed in config.seeds:
                        runs.append(train_to_criterion(task, cell, lag, seed, config))
                        if on_result:
                            on_result(runs[-1])
                    results += runs
                    if all(run.beat_at is None for run in runs):  # longer lags would only burn their budgets
                        break
    finally:
        torch.set_num_threads(threads)
    return results


def skipped(config: MemoryConfig, results: list[Result]) -> list[tuple[str, str, int]]:
    """(task, cell, lag) that `run_benchmark` did not train because a shorter lag failed every seed."""
    done = {(r.task, r.cell, r.lag) for r in results}
    return [(task, cell, lag) for task in config.tasks for cell in config.cells for lag in config.lags
            if (task, cell, lag) not in done]


def middle(values: list[int | None]) -> int | None:
    """The median of sequence counts where None (not within the budget) counts as more than any
    number; of an even count, the higher of the two middle values."""
    ranked = sorted(values, key=lambda value: math.inf if value is None else value)
    return ranked[len(ranked) // 2]


@dataclass
class Summary:
    """One (task, cell, lag) over its seeds."""

    task: str
    cell: str
    lag: int
    metric: str
    seeds: int
    beat: int
    """seeds that beat the baseline within the budget"""
    beat_median: int | None
    """median sequences to beat the baseline (None: not within the budget)"""
    beat_min: int | None
    beat_max: int | None
    solved: int
    """seeds that solved the task within the budget"""
    solved_median: int | None
    solved_min: int | None
    solved_max: int | None
    chance: float
    skill: float
    """median over seeds, at each model's last check"""
    skill_min: float
    skill_max: float
    score: float
    """median over seeds"""


def summarize(results: list[Result]) -> list[Summary]:
    """The results grouped over seeds, in the order they were run."""
    groups: dict[tuple[str, str, int], list[Result]] = {}
    for result in results:
        groups.setdefault((result.task, result.cell, result.lag), []).append(result)
    summaries = []
    for (task, cell, lag), group in groups.items():
        spans = []
        for counts in ([r.beat_at for r in group], [r.solved_at for r in group]):
            met = [count for count in counts if count is not None]
            spans += [len(met), middle(counts), min(met, default=None), max(met, default=None)]
        skills = sorted(r.skill for r in group)
        summaries.append(Summary(task, cell, lag, group[0].metric, len(group), *spans,
                                 statistics.fmean(r.chance for r in group), skills[len(skills) // 2], skills[0],
                                 skills[-1], sorted(r.score for r in group)[len(group) // 2]))
    return summaries


def reach(summaries: list[Summary], criterion: str = "solved") -> dict[str, dict[str, int | None]]:
    """task -> cell -> the longest lag at which most seeds met `criterion` ("solved" or "beat"),
    before the first lag where most did not (None: not even the shortest)."""
    longest: dict[str, dict[str, int | None]] = {}
    failed: set[tuple[str, str]] = set()
    for summary in sorted(summaries, key=lambda s: s.lag):
        cells = longest.setdefault(summary.task, {})
        cells.setdefault(summary.cell, None)
        if (summary.task, summary.cell) in failed:
            continue
        if getattr(summary, f"{criterion}_median") is not None:
            cells[summary.cell] = summary.lag
        else:
            failed.add((summary.task, summary.cell))
    return longest


# the default profile's budget: within it the gated cells solved every task up to T=100 on every
# seed, the slowest after 126,400 sequences (docs/memory.md); a cell that runs out of a smaller
# budget may yet solve its task, so its failure is not called
DECISIVE_BUDGET = 200_000


@dataclass
class Verdict:
    """How far one cell got on one task: the longest lag it solved, from the shortest up."""

    task: str
    cell: str
    solved_to: int | None
    """the longest lag most seeds solved, before the first they did not (None: not even the shortest)"""
    stopped_at: int | None
    """the first lag most seeds did not solve within the budget (None: they solved every lag)"""
    undecided: bool
    """it stopped within a budget under DECISIVE_BUDGET, too small to call that a failure"""


def verdicts(config: MemoryConfig, summaries: list[Summary]) -> list[Verdict]:
    """Each (task, cell)'s verdict, in the order of `reach`."""
    found = []
    for task, cells in reach(summaries, "solved").items():
        for cell, solved_to in cells.items():
            stopped_at = next((lag for lag in config.lags if solved_to is None or lag > solved_to), None)
            found.append(Verdict(task, cell, solved_to, stopped_at,
                                 stopped_at is not None and config.budget < DECISIVE_BUDGET))
    return found


def check_plot_path(path: str) -> None:
    """Raise a one-line error, before any training, when `--plot path` cannot be written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ConfigError("--plot needs matplotlib, an optional dependency; install it with pip install "
                          "'textgen[plot]' (or pip install matplotlib)") from error
    if not Path(path).parent.is_dir():
        raise ConfigError(f"--plot {path}: the folder {Path(path).parent} does not exist; create it first")


def plot(summaries: list[Summary], path: str) -> None:
    """Skill against lag, one panel per task and one line per cell (a band spans the seeds), to `path`."""
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(s.task for s in summaries))
    figure = Figure(figsize=(4.2 * len(tasks), 3.6), layout="constrained")
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for axis, task in zip(axes, tasks):
        for cell in dict.fromkeys(s.cell for s in summaries if s.task == task):
            rows = sorted((s for s in summaries if s.task == task and s.cell == cell), key=lambda s: s.lag)
            lags = [s.lag for s in rows]
            (line,) = axis.plot(lags, [s.skill for s in rows], marker="o", label=cell)
            axis.fill_between(lags, [s.skill_min for s in rows], [s.skill_max for s in rows],
                              color=line.get_color(), alpha=0.2)
        axis.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        axis.set(xscale="log", ylim=(-0.1, 1.05), xlabel="lag T", title=task)
        axis.set_ylabel("skill (0 chance, 1 perfect)")
        axis.legend()
    figure.savefig(path, dpi=120)


def to_json(config: MemoryConfig, results: list[Result]) -> dict:
    """The config, every run with its checks, the summaries over seeds, the longest lags solved and
    beaten and each cell's verdict, as plain data."""
    summaries = summarize(results)
    return {"config": dataclasses.asdict(config), "results": [dataclasses.asdict(r) for r in results],
            "summary": [dataclasses.asdict(s) for s in summaries], "solved": reach(summaries, "solved"),
            "beat": reach(summaries, "beat"), "verdicts": [dataclasses.asdict(v) for v in verdicts(config, summaries)],
            "skipped": [{"task": task, "cell": cell, "lag": lag} for task, cell, lag in skipped(config, results)]}
