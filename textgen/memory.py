"""Long-term memory, measured: synthetic tasks whose answer lies a controlled lag T back.

The adding problem and the embedded Reber grammar follow Hochreiter and Schmidhuber (1997),
experiments 4 and 1; delayed recall is the plainest lag task. Every (task, cell, lag, seed) trains
a fresh one-layer network for the same number of steps on sequences generated on the fly from the
seed, then is scored on held-out sequences against chance. All cells see the same sequences.

Skill puts every task on one scale: 0 is chance (guessing, or always predicting the mean), 1 is
perfect. A cell bridges a lag when its skill there is at least `BRIDGED`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from textgen.config import ModelConfig
from textgen.errors import ConfigError
from textgen.model import GATE_COUNT, check_memory, gate_rows, recurrent_layers

CELLS = ("rnn", "gru", "lstm")
BRIDGED = 0.5  # halfway from chance to perfect: clearly remembering, though not yet solved
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
    """The benchmark: which tasks, cells and lags, and each model's size and training budget."""

    tasks: tuple[str, ...] = tuple(TASKS)
    """tasks to run: adding, recall, reber"""
    cells: tuple[str, ...] = CELLS
    """recurrent cells to compare"""
    lags: tuple[int, ...] = (10, 30, 100, 300, 1000)
    """lags T: steps between the information and the answer"""
    steps: int = 300
    """training steps per model (the budget)"""
    hidden_size: int = 16
    """units in each model's recurrent layer"""
    seeds: tuple[int, ...] = (0,)
    """a full run per seed; several give a spread"""
    batch_size: int = 32
    """sequences per training step"""
    lr: float = 1e-2
    """Adam learning rate"""
    eval_size: int = 512
    """held-out sequences scored per model"""

    def __post_init__(self) -> None:
        self.tasks, self.cells, self.lags, self.seeds = map(tuple, (self.tasks, self.cells, self.lags, self.seeds))
        for flag, values, allowed in (("--tasks", self.tasks, tuple(TASKS)), ("--cells", self.cells, CELLS)):
            unknown = [v for v in values if v not in allowed]
            if unknown or not values:
                raise ConfigError(f"{flag} {' '.join(unknown) or '(none)'}: choose from {', '.join(allowed)}")
        for flag, name in (("--steps", "steps"), ("--hidden", "hidden_size"), ("batch_size", "batch_size"),
                           ("eval_size", "eval_size")):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{flag} must be positive, got {getattr(self, name)}")
        if not self.seeds or not self.lags:
            raise ConfigError("--seeds and --lags need at least one value each")
        for task in self.tasks:
            shortest = TASKS[task].min_lag
            if min(self.lags) < shortest:
                raise ConfigError(f"--lags {min(self.lags)} is too short for {task}, which needs {shortest} or "
                                  f"more ({TASKS[task].what}); drop it or raise it")


QUICK = {"lags": (10, 30, 100)}
"""--quick: the short lags only, a tenth of the default's time (the time grows with the lag)."""


class LagModel(nn.Module):
    """One recurrent layer of the chosen cell (the language model's own) and a linear readout of
    its last output.

    Gated cells start with chrono initialisation (Tallec and Ollivier 2018) for dependencies up to
    `lag` steps: each unit's forget (LSTM) or update (GRU) gate bias is log U(1, lag), so it first
    keeps its memory for between 1 and `lag` steps, and an LSTM's input gate bias is its negative.
    With the language model's forget bias of 1 (memory for a few steps), neither gated cell learned
    delayed recall at T=30 in 1,000 steps; a plain RNN has no gate to set.
    """

    def __init__(self, cell: str, features: int, hidden_size: int, outputs: int, lag: int):
        super().__init__()
        self.rnn = recurrent_layers(ModelConfig(cell=cell, num_layers=1, hidden_size=hidden_size,
                                                embed_size=features, dropout=0.0, tie_weights=False))
        self.readout = nn.Linear(hidden_size, outputs)
        if cell != "rnn":
            keep = torch.empty(hidden_size).uniform_(1.0, max(2.0, lag)).log()
            memory = gate_rows(cell, "forget" if cell == "lstm" else "update", hidden_size)
            with torch.no_grad():
                self.rnn.bias_ih_l0[memory] = keep
                self.rnn.bias_hh_l0[memory] = 0.0
                if cell == "lstm":
                    self.rnn.bias_ih_l0[gate_rows(cell, "input", hidden_size)] = -keep
                    self.rnn.bias_hh_l0[gate_rows(cell, "input", hidden_size)] = 0.0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Outputs (batch, outputs) after reading `inputs` (batch, time, features)."""
        outputs, _ = self.rnn(inputs)
        return self.readout(outputs[:, -1])


def _loss(task: Task, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task.classes is None:
        return F.mse_loss(outputs.squeeze(1), targets)
    return F.cross_entropy(outputs, targets)


@dataclass
class Result:
    """One trained model's score on held-out sequences."""

    task: str
    cell: str
    lag: int
    seed: int
    metric: str
    """accuracy, or mse (mean squared error)"""
    score: float
    chance: float
    """accuracy of guessing, or the mse of always predicting the mean"""
    skill: float
    """0 at chance, 1 perfect"""
    seconds: float


def train_and_score(task_name: str, cell: str, lag: int, seed: int, config: MemoryConfig) -> Result:
    """Train a fresh model on `task_name` at `lag` for `config.steps` steps; its held-out score."""
    task = TASKS[task_name]
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = LagModel(cell, task.features, config.hidden_size, task.classes or 1, lag)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data = torch.Generator().manual_seed(seed)
    for _ in range(config.steps):
        inputs, targets = task.generate(config.batch_size, lag, data)
        loss = _loss(task, model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
    # held-out sequences from a stream the training never drew from
    inputs, targets = task.generate(config.eval_size, lag, torch.Generator().manual_seed(2**31 + seed))
    with torch.no_grad():
        outputs = model.eval()(inputs)
    if task.classes is None:
        score = float(F.mse_loss(outputs.squeeze(1), targets))
        chance = float(targets.var(unbiased=False))
        metric, skill = "mse", 1.0 - score / chance
    else:
        score = float((outputs.argmax(1) == targets).float().mean())
        chance = 1.0 / task.classes
        metric, skill = "accuracy", (score - chance) / (1.0 - chance)
    return Result(task_name, cell, lag, seed, metric, score, chance, skill, time.perf_counter() - start)


def run_benchmark(config: MemoryConfig, on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Every (task, cell, lag, seed) of `config`, trained and scored; `on_result` sees each as it ends."""
    rows = max(config.batch_size, config.eval_size)  # sequences of lag steps through gates kept for backward
    check_memory(4.0 * rows * (max(config.lags) + 10) * config.hidden_size * (2 * GATE_COUNT["lstm"] + 2),
                 f"--lags {max(config.lags)} with --hidden {config.hidden_size}", "lower them")
    results = []
    for task in config.tasks:
        for cell in config.cells:
            for lag in config.lags:
                for seed in config.seeds:
                    results.append(train_and_score(task, cell, lag, seed, config))
                    if on_result:
                        on_result(results[-1])
    return results


@dataclass
class Summary:
    """One (task, cell, lag) over its seeds."""

    task: str
    cell: str
    lag: int
    metric: str
    score: float
    """mean over seeds"""
    score_min: float
    score_max: float
    chance: float
    skill: float
    """mean over seeds"""
    skill_min: float
    skill_max: float


def summarize(results: list[Result]) -> list[Summary]:
    """The results grouped over seeds, in the order they were run."""
    groups: dict[tuple[str, str, int], list[Result]] = {}
    for result in results:
        groups.setdefault((result.task, result.cell, result.lag), []).append(result)
    summaries = []
    for (task, cell, lag), group in groups.items():
        scores, skills = [r.score for r in group], [r.skill for r in group]
        summaries.append(Summary(task, cell, lag, group[0].metric, sum(scores) / len(group), min(scores),
                                 max(scores), sum(r.chance for r in group) / len(group), sum(skills) / len(group),
                                 min(skills), max(skills)))
    return summaries


def bridged_lags(summaries: list[Summary]) -> dict[str, dict[str, int | None]]:
    """task -> cell -> the longest lag bridged before the first lag that is not (None: not even the
    shortest)."""
    bridged: dict[str, dict[str, int | None]] = {}
    failed: set[tuple[str, str]] = set()
    for summary in sorted(summaries, key=lambda s: s.lag):
        cells = bridged.setdefault(summary.task, {})
        cells.setdefault(summary.cell, None)
        if (summary.task, summary.cell) in failed:
            continue
        if summary.skill >= BRIDGED:
            cells[summary.cell] = summary.lag
        else:
            failed.add((summary.task, summary.cell))
    return bridged


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
    """The config, every run, the summaries over seeds and the bridged lags, as plain data."""
    summaries = summarize(results)
    return {"config": dataclasses.asdict(config), "results": [dataclasses.asdict(r) for r in results],
            "summary": [dataclasses.asdict(s) for s in summaries], "bridged": bridged_lags(summaries)}
