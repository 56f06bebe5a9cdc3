"""Kill -9 soak: train a tiny model, SIGKILL it at random moments (also inside checkpoint and
token-cache writes) and resume, again and again; then check that no file was ever half written and
that the final weights are bit-identical to those of an uninterrupted run with the same seed.
tests/test_reliability.py runs a short soak of 2 kills; the long one is run by hand.

Prints JSON; exits 1 if a file was corrupt or the weights differ. Usage (one core, as the numbers in
docs/reliability.md were measured):
    OMP_NUM_THREADS=1 taskset -c 0 python tests/soak.py [--kills 30] [--max-steps 200] [--seed 0]

Each kill is one of: a random moment of the process's life (imports and tokenizing included), a
random training step plus a random fraction of a step, or the first moment a checkpoint or token-cache
temporary file appears. After every fourth kill the token cache is emptied, so that its writes are killed too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from textgen.nn.checkpoint import load_checkpoint
from textgen.errors import CheckpointError

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards box and hum near "
         "old stone walls under grey skies").split()
CHECKPOINTS = ("last.pt", "best.pt")


def write_corpus(path: Path, chars: int, seed: int) -> None:
    """A deterministic text of about `chars` characters, big enough that tokenizing it takes a while."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + ".\n"
        lines.append(line)
        size += len(line)
    path.write_text("".join(lines))


def train_command(args, corpus: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "textgen", "train", "--corpus", str(corpus), "--out", str(out),
            "--preset", "tiny", "--hidden", "32", "--embed", "32", "--batch-size", "8", "--seq-len", "32",
            "--max-steps", str(args.max_steps), "--checkpoint-interval", str(args.checkpoint_interval),
            "--eval-interval", str(args.eval_interval), "--eval-tokens", "2048", "--log-interval", "1",
            "--seed", str(args.seed), "--precision", "fp32", "--device", "cpu", *(["--resume"] if resume else [])]


def launch(command: list[str], cache: Path, log) -> subprocess.Popen:
    """The training process, in a process group of its own so that the kill reaches every child."""
    env = {**os.environ, "TEXTGEN_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)


def temp_files(run: Path, cache: Path) -> dict[str, tuple]:
    """Every temporary file of a checkpoint or cache write, with what tells one write from another."""
    found = {}
    for path in [*run.glob("*.tmp"), *cache.glob("*.tmp")]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        found[str(path)] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return found


def logged_steps(metrics: Path, offset: int) -> int:
    """The last training step in metrics.jsonl after byte `offset` (0 if none)."""
    if not metrics.exists():
        return 0
    with open(metrics, "rb") as file:
        file.seek(offset)
        lines = file.read().decode("utf-8", "replace").splitlines()
    steps = [0]
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the line being appended when the kill came
            continue
        if "loss" in record and "split" not in record:
            steps.append(record["step"])
    return max(steps)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_files(run: Path, cache: Path, reference_cache: dict[str, str]) -> tuple[int, list[str]]:
    """Corrupt files now: a checkpoint that does not load, or a cache file unlike the reference's."""
    corrupt = []
    for name in CHECKPOINTS:
        if (run / name).exists():
            try:
                load_checkpoint(run / name)
            except CheckpointError as error:
                corrupt.append(f"{name}: {error}")
    for path in cache.iterdir():
        if not path.name.endswith(".tmp") and reference_cache.get(path.name) != digest(path):
            corrupt.append(f"cache {path.name} differs from the uninterrupted run's")
    return len(corrupt), corrupt


def kill_moment(process: subprocess.Popen, mode: str, rng: random.Random, run: Path, cache: Path, temps: dict,
                offset: int, target_step: int, remaining_seconds: float, step_seconds: float) -> bool:
    """Wait for this kill's moment; False if the process ended first. The moment comes before the
    run's estimated end (`remaining_seconds`), else the kill would often come too late. `temps`: the
    temporary files at the start, which a write changes."""
    latest = time.monotonic() + 0.8 * remaining_seconds
    if mode == "time":
        latest = time.monotonic() + rng.uniform(0.0, 0.8 * remaining_seconds)
    while process.poll() is None and time.monotonic() < latest:
        if mode == "step" and logged_steps(run / "metrics.jsonl", offset) >= target_step:
            time.sleep(rng.uniform(0.0, step_seconds))
            break
        if mode == "write" and temp_files(run, cache) != temps:
            break  # a checkpoint or cache write has begun (or just ended: one core runs either it or us)
        time.sleep(0.0005 if mode == "write" else 0.005)
    return process.poll() is None


def final_weights_equal(first: Path, second: Path) -> bool:
    a, b = load_checkpoint(first)["model"], load_checkpoint(second)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--checkpoint-interval", type=int, default=2)
    parser.add_argument("--eval-interval", type=int, default=25)
    parser.add_argument("--corpus-chars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the training run and of the kill moments")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    work = Path(args.keep or tempfile.mkdtemp(prefix="textgen-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, log_path = work / "corpus.txt", work / "soak.log"
    write_corpus(corpus, args.corpus_chars, args.seed)
    reference, run = work / "reference", work / "run"
    reference_cache, cache = work / "reference-cache", work / "cache"
    cache.mkdir(exist_ok=True)
    started = time.monotonic()
    with open(log_path, "ab") as log:
        before = time.monotonic()
        uninterrupted = launch(train_command(args, corpus, reference, resume=False), reference_cache, log)
        if uninterrupted.wait() != 0:
            raise SystemExit(f"the uninterrupted run failed; see {log_path}")
        life_seconds = time.monotonic() - before
        records = (reference / "metrics.jsonl").read_text().splitlines()
        training_seconds = json.loads(records[-1])["elapsed"]  # the stop record: time inside the training loop
        startup_seconds = life_seconds - training_seconds
        step_seconds = training_seconds / args.max_steps
        cache_digests = {path.name: digest(path) for path in reference_cache.iterdir()}
        # kill steps spread over the run in order, so that every kill finds the run still going
        planned_steps = sorted(rng.randint(1, args.max_steps - 1) for _ in range(args.kills))

        kills = resumes = fresh_starts = cache_rebuilds = steps_redone = most_lost = 0
        in_checkpoint_write = in_cache_write = 0
        corrupt_files, corrupt_notes, modes = 0, [], {"time": 0, "step": 0, "write": 0}
        runs_completed, runs_identical, best_identical, failed_runs = 0, 0, 0, 0
        while True:
            resume = (run / "last.pt").exists()
            resumes += resume
            fresh_starts += not resume
            if kills and kills % 4 == 0 and any(cache.iterdir()):
                shutil.rmtree(cache)
                cache.mkdir()
                cache_rebuilds += 1
            metrics = run / "metrics.jsonl"
            offset = metrics.stat().st_size if resume and metrics.exists() else 0
            saved = load_checkpoint(run / "last.pt")["step"] if resume else 0
            process = launch(train_command(args, corpus, run, resume), cache, log)
            mode = rng.choice(list(modes))
            temps_before = temp_files(run, cache)
            remaining = startup_seconds + (args.max_steps - saved) * step_seconds
            if kills == args.kills or not kill_moment(process, mode, rng, run, cache, temps_before, offset,
                                                      planned_steps[min(kills, args.kills - 1)], remaining,
                                                      step_seconds):
                # the run ran to its end: check it, and start another if kills are left
                completed = process.wait() == 0 and load_checkpoint(run / "last.pt")["step"] == args.max_steps
                runs_completed += completed
                failed_runs += not completed
                runs_identical += completed and final_weights_equal(reference / "last.pt", run / "last.pt")
                best_identical += completed and final_weights_equal(reference / "best.pt", run / "best.pt")
                if kills == args.kills or not completed:
                    break
                shutil.rmtree(run)
                planned_steps[kills:] = sorted(rng.randint(1, args.max_steps - 1) for _ in planned_steps[kills:])
                continue
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            modes[mode] += 1
            changed = {path for path, key in temp_files(run, cache).items() if temps_before.get(path) != key}
            in_checkpoint_write += any(path.endswith(".pt.tmp") for path in changed)
            in_cache_write += any(not path.endswith(".pt.tmp") for path in changed)
            reached = logged_steps(metrics, offset)
            kept = load_checkpoint(run / "last.pt")["step"] if (run / "last.pt").exists() else 0
            lost = max(0, reached - kept)
            steps_redone += lost
            most_lost = max(most_lost, lost)
            count, notes = check_files(run, cache, cache_digests)
            corrupt_files += count
            corrupt_notes += notes
        result = {
            "kills": kills, "kills_by_moment": modes,
            "kills_inside_checkpoint_write": in_checkpoint_write, "kills_inside_token_cache_write": in_cache_write,
            "resumes": resumes, "fresh_starts": fresh_starts, "token_cache_rebuilds": cache_rebuilds,
            "steps_redone": steps_redone, "most_steps_lost_by_one_kill": most_lost,
            "corrupt_files_found": corrupt_files, "corrupt": corrupt_notes[:5],
            "stale_cache_temp_files": len(list(cache.glob("*.tmp"))),
            "runs_completed": runs_completed, "runs_failed": failed_runs,
            "final_weights_identical": runs_identical == runs_completed > 0 and not failed_runs,
            "best_weights_identical": best_identical == runs_completed > 0 and not failed_runs,
            "max_steps": args.max_steps, "checkpoint_interval": args.checkpoint_interval,
            "uninterrupted_run_seconds": round(life_seconds, 1),
            "seconds": round(time.monotonic() - started, 1),
        }
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(work)
    sys.exit(0 if corrupt_files == 0 and result["final_weights_identical"] else 1)


if __name__ == "__main__":
    main()
