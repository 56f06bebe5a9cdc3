"""Time to first text: how long a new user waits for `textgen sample` and `textgen classify` with the
bundled models, measured from outside the process as a user sees it. Median of --runs runs.

    python scripts/bench_first_contact.py --runs 5

Prints JSON (seconds): interpreter start plus the imports `textgen sample` needs, loading the bundled
model, the first character of `textgen sample`, and the answer of `textgen classify "..."`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPORTS = ("import textgen.cli, textgen.nn.checkpoint, textgen.generate.sampling, textgen.classify.predict, textgen.nn.model")
LOAD = ("import time; from textgen.nn.checkpoint import load_language_model, load_classifier; t = time.perf_counter(); "
        "load_language_model('shakespeare'); load_classifier('sentiment'); print(time.perf_counter() - t)")


def first_output(command: list[str], cwd: str, env: dict) -> tuple[float, float]:
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if key != "TEXTGEN_DATA"}
    textgen = [sys.executable, "-m", "textgen"]
    samples = {"imports": [], "model_load": [], "sample_first_char": [], "classify_answer": []}
    with tempfile.TemporaryDirectory() as empty:  # a user's fresh folder: no corpora, no runs
        for _ in range(args.runs):
            samples["imports"].append(first_output([sys.executable, "-c", IMPORTS + "; print(1)"], empty, env)[1])
            result = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, cwd=empty, env=env)
            samples["model_load"].append(float(result.stdout))
            samples["sample_first_char"].append(
                first_output([*textgen, "sample", "--length", "200", "--seed", "0"], empty, env)[0])
            samples["classify_answer"].append(
                first_output([*textgen, "classify", "a gorgeous, moving film", "dull and lifeless"], empty, env)[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    print(json.dumps({"runs": args.runs, "cpu": cpu, "cores": os.cpu_count(),
                      "median_seconds": {name: round(statistics.median(values), 3) for name, values in samples.items()},
                      "all_seconds": {name: [round(v, 3) for v in values] for name, values in samples.items()}}))


if __name__ == "__main__":
    main()
