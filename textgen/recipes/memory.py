"""The memory benchmark: each cell trained on tasks whose answer lies T steps back, until solved or
out of budget; the results, their summary, and with `plot` a chart."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from textgen.data.files import check_output, image_formats
from textgen.lab.memory import (PROFILES, MemoryConfig, Result, Summary, check_plot_path, plot, run_benchmark,
                                summarize, to_json)
from textgen.requests import MemoryRequest

log = logging.getLogger("textgen")


@dataclass
class Benchmark:
    """The settings, what they train in words, and (unless a dry run) the results and summaries."""

    config: MemoryConfig
    plan: str
    results: list[Result] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)


def plan_of(config: MemoryConfig) -> str:
    return (f"{config.models} models ({' '.join(config.tasks)}; {' '.join(config.cells)}; lags "
            f"{' '.join(map(str, config.lags))}; seeds {' '.join(map(str, config.seeds))}), each trained on at most "
            f"{config.budget:,} sequences until solved, checked every {config.check_every:,} on {config.eval_size:,} "
            f"held-out ones; {config.hidden_size} units, Adam lr {config.lr:g}, batch {config.batch_size}, "
            f"init {config.init}, {config.threads} thread{'s' if config.threads > 1 else ''}")


def run(request: MemoryRequest, report: Callable[[Result], None] | None = None) -> Benchmark:
    """The benchmark run (`report` is told each model's result as it ends); a dry run trains nothing."""
    config = MemoryConfig(**{**PROFILES["quick" if request.quick else request.profile], **request.overrides()})
    if request.plot:
        check_output("--plot", request.plot, [], image_formats())
        check_plot_path(request.plot)
    benchmark = Benchmark(config, plan_of(config))
    if request.dry_run:
        return benchmark
    log.info("training %s", benchmark.plan)
    started = time.perf_counter()
    benchmark.results = run_benchmark(config, report or (lambda result: None))
    benchmark.summaries = summarize(benchmark.results)
    log.info("trained %d models in %.0f s", len(benchmark.results), time.perf_counter() - started)
    return benchmark


def draw(request: MemoryRequest, benchmark: Benchmark) -> None:
    """The chart, after the results are shown: a plot that cannot be written loses nothing."""
    plot(benchmark.summaries, request.plot)
    log.info("wrote %s", request.plot)


def as_dict(benchmark: Benchmark) -> dict:
    return {"config": dataclasses.asdict(benchmark.config), "models": benchmark.config.models}
