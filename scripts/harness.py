"""What the benchmarks in scripts/ share: the common options, the machine a figure was measured on,
and one JSON report on stdout (and in --out). A benchmark reads:

    parser = harness.parser(__doc__, repeats=3)
    parser.add_argument("--length", type=int, default=2000)          # its own options
    args = harness.parse(parser, quick={"length": 200, "repeats": 1})
    ...
    harness.report(args, {"chars_per_s": harness.median(rates)})

Progress, and the records a long run yields one by one, go to stderr as JSON lines (`progress`), so
stdout holds the one report. Run a script from the repository root: `python scripts/NAME.py --help`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from textgen.nn.precision import cpu_has_native_bf16, cpu_name


def parser(doc: str, *, repeats: int | None = None, seed: int | None = None, threads: int | None = None,
           thread_option: bool = True) -> argparse.ArgumentParser:
    """A parser with --quick and --out, --threads unless the script sets threads itself
    (`thread_option=False`), and --repeats and --seed where the script gives them a default."""
    summary, _, usage = doc.partition("\n\n")  # --help shows the docstring: what it measures, then how to run it
    made = argparse.ArgumentParser(description=summary, epilog=usage or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("--quick", action="store_true", help="the smallest settings: a smoke run, not a figure")
    made.add_argument("--out", type=Path, metavar="FILE.json", help="also write the report here")
    if thread_option:
        made.add_argument("--threads", type=int, default=threads, dest="torch_threads",
                          help=f"torch threads in this process (default: {threads or 'torch default'})")
    if repeats is not None:
        made.add_argument("--repeats", type=int, default=repeats, help="runs of each measurement; the median is "
                                                                       "reported (default: %(default)s)")
    if seed is not None:
        made.add_argument("--seed", type=int, default=seed, help="random seed (default: %(default)s)")
    return made


_STARTED = {"seconds": time.monotonic(), "load": os.getloadavg()[0]}  # for the report: this run's time and load


def parse(made: argparse.ArgumentParser, quick: dict | None = None, argv: list[str] | None = None
          ) -> argparse.Namespace:
    """The options; with --quick, `quick` replaces the defaults (options given still win). Sets the
    torch threads and seeds torch, numpy and random."""
    if made.parse_args(argv).quick:
        made.set_defaults(**(quick or {}))
    args = made.parse_args(argv)
    if getattr(args, "torch_threads", None):
        torch.set_num_threads(args.torch_threads)
    if getattr(args, "seed", None) is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
    _STARTED.update(seconds=time.monotonic(), load=os.getloadavg()[0])
    return args


def machine() -> dict:
    """What a figure depends on: the CPU, bf16 hardware, torch, threads, the cores allowed, and the
    1-minute load average when the run began and ended (other work on the machine)."""
    return {"cpu": cpu_name(), "native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cores_allowed": len(os.sched_getaffinity(0)),
            "load_average_1min": [round(_STARTED["load"], 2), round(os.getloadavg()[0], 2)]}


def median(values, digits: int | None = None) -> float:
    """The median of `values`, rounded to `digits` when given."""
    middle = statistics.median(values)
    return middle if digits is None else round(middle, digits)


def progress(record: dict) -> None:
    """One JSON line on stderr, at once: what a long run has done so far."""
    print(json.dumps(record), file=sys.stderr, flush=True)


def report(args: argparse.Namespace, result: dict) -> None:
    """Print the report, `result` after what the run was and where it ran, and write it to --out."""
    options = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    whole = {"benchmark": Path(sys.argv[0]).stem, "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "command": shlex.join(["python", *sys.argv]), "options": options, "machine": machine(),
             "run_seconds": round(time.monotonic() - _STARTED["seconds"], 1), **result}
    text = json.dumps(whole, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def captured(args: list[str]) -> str:
    """stdout of `textgen args`, run in this process; raises if it failed."""
    import contextlib
    import io

    from textgen.cli import main as textgen

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = textgen(args)
    if status != 0:
        raise RuntimeError(f"textgen {' '.join(args)} exited {status}")
    return out.getvalue()


def best_bits_per_char(run: Path) -> tuple[float, int]:
    """The lowest validation bits per character a training run logged, and the step it was reached at."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = min((r for r in records if r.get("split") == "validation"), key=lambda r: r["bits_per_char"])
    return best["bits_per_char"], best["step"]
