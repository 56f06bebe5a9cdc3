"""Torch threads against one thread for textgen's small-model commands, on a machine where other
work runs: `textgen memory` (models of 16 units), sampling one text and `textgen inspect` with the
bundled Shakespeare model. Each command runs in this process under torch.set_num_threads(N) for
every N of --threads, alternating, --repeats times; the median wall time of each.

To see what a busy machine does to threads without a second free core, pin this script to one core
that other work shares (`taskset -c 1`): N threads then contend with that work and each other, as
torch's default of one thread per core does when a core is busy.

Prints JSON; never asserts on time. Usage (docs/performance.md's figures):
    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_threads.py [--threads 1 2] [--repeats 3]
"""

from __future__ import annotations

import contextlib
import io
import time

import harness
import torch

from textgen import cli

TEXT = ("ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" * 25)[:2000]
COMMANDS = {
    "memory": ["memory", "--tasks", "recall", "--cells", "lstm", "gru", "--lags", "30", "--budget", "3200",
               "--seeds", "0", "--json"],
    "sample one text": ["sample", "--model", "shakespeare", "--length", "300", "--seed", "0", "--device", "cpu"],
    "inspect": ["inspect", "--model", "shakespeare", "--text", TEXT, "--json"],
}


def timed(argv: list[str], threads: int) -> float:
    """Wall seconds of `textgen ARGV` under `threads` torch threads (memory's own --threads too)."""
    torch.set_num_threads(threads)
    if argv[0] == "memory":
        argv = [*argv, "--threads", str(threads)]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if cli.main(argv) != 0:
            raise SystemExit(f"textgen {' '.join(argv[:3])} ... failed")
    return time.perf_counter() - start


def main() -> None:
    parser = harness.parser(__doc__, repeats=3, thread_option=False)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="the torch thread counts compared")
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    args = harness.parse(parser, quick={"repeats": 1, "commands": ["sample one text"]})
    result = {"seconds": {}}
    for name in args.commands:
        timed(COMMANDS[name], 1)  # warm-up: imports, the model's first load
        times = {threads: [] for threads in args.threads}
        for _ in range(args.repeats):
            for threads in args.threads:
                times[threads].append(timed(COMMANDS[name], threads))
        result["seconds"][name] = {f"{threads} threads": harness.median(values, 2) for threads, values in times.items()}
    harness.report(args, result)


if __name__ == "__main__":
    main()
