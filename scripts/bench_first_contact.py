"""Time to first text: how long a new user waits for each quick `textgen` command with the bundled
models, measured from outside the process as a user sees it, as a ratio to `python -c "import torch"`
timed in the same run (the floor no command can go under). Median of --runs runs, commands
interleaved so that a noisy neighbour slows them all alike.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_first_contact.py --runs 7

Prints JSON: each command's median whole-process seconds and its ratio to the baseline, and for
`sample` the seconds to its first character (the CPU in the report's machine). `--quick`: one run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import harness

BASELINE = "import torch"
COMMANDS = {
    "sample": ["sample", "--length", "10", "--seed", "0"],
    "classify": ["classify", "x"],
    "complete": ["complete", "x"],
    "models": ["models"],
    "eval_text": ["eval", "--text", "x"],
    "help": ["--help"],
}


def timed(command: list[str], cwd: str, env: dict) -> tuple[float, float]:
    """Seconds until the first byte on stdout, and until the process ends."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd, env=env)
    process.stdout.read(1)
    first = time.perf_counter() - started
    process.stdout.read()
    process.wait()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit status {process.returncode}")
    return first, time.perf_counter() - started


def main() -> None:
    # no --threads: what is timed runs in child processes, with the environment's OMP_NUM_THREADS
    parser = harness.parser(__doc__, thread_option=False)
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command; the median is reported "
                                                            "(default: %(default)s)")
    args = harness.parse(parser, quick={"runs": 1})
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    env = {key: value for key, value in os.environ.items() if key != "TEXTGEN_DATA"}
    textgen = [sys.executable, "-m", "textgen"]
    seconds = {"import_torch": [], **{name: [] for name in COMMANDS}}
    sample_first_char = []
    with tempfile.TemporaryDirectory() as empty:  # a user's fresh folder: no corpora, no runs
        for name, argv in COMMANDS.items():  # one untimed run each: the bundled files in the page cache
            timed([*textgen, *argv], empty, env)
        for _ in range(args.runs):
            seconds["import_torch"].append(timed([sys.executable, "-c", BASELINE + "; print(1)"], empty, env)[1])
            for name, argv in COMMANDS.items():
                first, whole = timed([*textgen, *argv], empty, env)
                seconds[name].append(whole)
                if name == "sample":
                    sample_first_char.append(first)
    medians = {name: harness.median(values) for name, values in seconds.items()}
    harness.report(args, {
        "runs": args.runs, "baseline": f'python -c "{BASELINE}"',
        "commands": {name: "textgen " + " ".join(argv) for name, argv in COMMANDS.items()},
        "median_seconds": {name: round(value, 3) for name, value in medians.items()},
        "ratio_to_import_torch": {name: round(medians[name] / medians["import_torch"], 2) for name in COMMANDS},
        "sample_first_char_seconds": harness.median(sample_first_char, 3),
        "all_seconds": {name: [round(value, 3) for value in values] for name, values in seconds.items()},
    })


if __name__ == "__main__":
    main()
