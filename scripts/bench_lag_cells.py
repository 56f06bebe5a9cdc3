"""Training speed of each cell `textgen memory` can train, torch's and the article's (cells.py,
plain autograd over a Python loop), on the adding problem: milliseconds of CPU time per training
step of 32 sequences at each lag, one thread, median of --steps steps after a warm-up, all in one
run. CPU time, which other work on the same core barely moves, rather than wall time.

Prints JSON; never asserts on time. Usage (docs/memory.md's figures):
    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_lag_cells.py [--lags 100] [--steps 20]
"""

from __future__ import annotations

import time

import harness
import torch

from textgen.lab.memory import CELLS, TASKS, LagModel, _loss


def step_ms(cell: str, lag: int, steps: int) -> float:
    """Median milliseconds of one Adam step of 32 adding sequences at `lag`."""
    task = TASKS["adding"]
    torch.manual_seed(0)
    model = LagModel(cell, task.features, 16, 1, lag)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + 3):
        inputs, targets = task.generate(32, lag, data)
        start = time.process_time()
        loss = _loss(task, model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 3:  # the first steps warm the allocator up
            times.append(1000 * (time.process_time() - start))
    return harness.median(times)


def main() -> None:
    parser = harness.parser(__doc__, threads=1)
    parser.add_argument("--lags", type=int, nargs="+", default=[100])
    parser.add_argument("--steps", type=int, default=20, help="steps timed after the warm-up; the median is reported")
    args = harness.parse(parser, quick={"lags": [10], "steps": 2})
    result = {"ms_per_step": {}, "times_torchs_cell": {}}
    for lag in args.lags:
        times = {cell: round(step_ms(cell, lag, args.steps), 2) for cell in CELLS}
        result["ms_per_step"][f"T={lag}"] = times
        result["times_torchs_cell"][f"T={lag}"] = {
            "article-lstm / lstm": round(times["article-lstm"] / times["lstm"], 2),
            "article-gru / gru": round(times["article-gru"] / times["gru"], 2)}
    harness.report(args, result)


if __name__ == "__main__":
    main()
