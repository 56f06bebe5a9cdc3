"""Resident memory (RSS) of `textgen sample --length 10000000` and of `textgen classify --file` on
files of 10 MB to 1 GB, each command in a process of its own, its RSS read from /proc (Linux) every
half second while the answers stream out: a flat line means the command streams in bounded memory.
For contrast, the same commands where the whole text must be kept (`sample --json`, whose one JSON
object holds the text) or the whole input is read first (`classify` from standard input).
A command still running after --watch seconds is stopped there; its figures cover what it did so far.
Each command runs on one thread (OMP_NUM_THREADS=1 in its environment).

Prints JSON. Usage (the README's figures: one core of a 2-core AVX2 CPU):
    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_memory.py [--length 10000000] [--watch 180]
        [--file-mb 10 100 1000] [--contrast-mb 10 100]
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness

from textgen import cli

WORDS = ("good bad film plot acting slow lovely dull superb awful witty long short story cast score music "
         "scene ending").split()


def rss_mb(pid: int) -> tuple[float, float]:
    """The process's resident memory now and at its peak so far (VmRSS, VmHWM), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(round(int(fields[name].split()[0]) / 1024, 1) for name in ("VmRSS", "VmHWM"))


def watch(argv: list[str], watch_seconds: float, stdin: Path | None = None, points: int = 6) -> dict:
    """Run `textgen ARGV`, counting the bytes and lines it prints while sampling its RSS; stop it
    after `watch_seconds`. The RSS at `points` moments spread over the run, and the peak."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(stdin or os.devnull, "rb") as source:
        process = subprocess.Popen([sys.executable, "-m", "textgen", *argv], stdin=source, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=env)
    printed = {"bytes": 0, "lines": 0}

    def count() -> None:
        while chunk := process.stdout.read1(1 << 16):
            printed["bytes"] += len(chunk)
            printed["lines"] += chunk.count(b"\n")

    reader = threading.Thread(target=count)
    reader.start()
    started = time.monotonic()
    samples, peak = [], 0.0
    while process.poll() is None:
        elapsed = time.monotonic() - started
        try:
            now, peak = rss_mb(process.pid)
        except (FileNotFoundError, KeyError, ProcessLookupError):  # it just ended
            break
        samples.append({"seconds": round(elapsed, 1), "rss_mb": now, **printed})
        if elapsed > watch_seconds:
            process.kill()
            break
        time.sleep(0.5)
    status = process.wait()
    reader.join()
    seconds = time.monotonic() - started
    if status not in (0, -9):
        raise SystemExit(f"textgen {' '.join(argv)} failed with status {status}")
    # from the first answer on (start-up is imports and loading), else the second half of the run
    shown = [sample for sample in samples if sample["bytes"]] or samples[len(samples) // 2:]
    spread = [shown[round(i * (len(shown) - 1) / (points - 1))] for i in range(points)] if shown else []
    return {"finished": status == 0, "seconds": round(seconds, 1), "printed_bytes": printed["bytes"],
            "printed_lines": printed["lines"], "peak_rss_mb": peak, "rss_over_time": spread}


def write_texts(path: Path, megabytes: float, seed: int = 0) -> int:
    """A file of one short review per line, `megabytes` large; the number of lines."""
    rng = random.Random(seed)
    block = "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "\n" for _ in range(20_000))
    lines_per_block, target = block.count("\n"), int(megabytes * 1e6)
    written = lines = 0
    with open(path, "w") as file:
        while written < target:
            file.write(block)
            written += len(block)
            lines += lines_per_block
    return lines


def main() -> None:
    parser = harness.parser(__doc__, thread_option=False)
    parser.add_argument("--length", type=int, default=10_000_000, help="sample --length")
    parser.add_argument("--watch", type=float, default=180, help="seconds after which a command is stopped")
    parser.add_argument("--file-mb", type=float, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--contrast-mb", type=float, nargs="+", default=[10, 100])
    parser.add_argument("--batch-size", type=int, default=256, help="classify --batch-size")
    args = harness.parse(parser, quick={"length": 20_000, "watch": 20, "file_mb": [1], "contrast_mb": [1]})

    work = Path(tempfile.mkdtemp(prefix="textgen-memory-"))
    try:
        corpus, reviews = work / "corpus.txt", work / "reviews.csv"
        write_texts(corpus, 0.2)
        rng = random.Random(1)
        reviews.write_text("text,label\n" + "".join(
            f"{' '.join(rng.choice(WORDS) for _ in range(8))},{rng.choice(['neg', 'pos'])}\n" for _ in range(400)))
        small = ["--layers", "1", "--hidden", "32", "--embed", "32", "--max-steps", "5", "--device", "cpu",
                 "--precision", "fp32"]
        for argv in (["train", "--corpus", str(corpus), "--preset", "tiny", "--out", str(work / "lm"), *small],
                     ["train", "--task", "classify", "--corpus", str(reviews), "--out", str(work / "clf"), *small]):
            if cli.main(argv) != 0:
                raise SystemExit(f"could not train the benchmark's model: textgen {' '.join(argv)}")

        sample = ["sample", "--model", str(work / "lm"), "--length", str(args.length), "--seed", "0", "--device", "cpu"]
        result: dict = {"model": "LSTM 1x32 (language model and classifier)", "watch_seconds": args.watch,
                        "sample": {"length": args.length, **watch(sample, args.watch)},
                        "sample_json_keeps_the_text": {"length": args.length, **watch([*sample, "--json"], args.watch)},
                        "classify_file": [], "classify_stdin_reads_all_first": []}
        classify = ["classify", "--model", str(work / "clf"), "--json", "--batch-size", str(args.batch_size),
                    "--device", "cpu"]
        for megabytes in sorted(set(args.file_mb) | set(args.contrast_mb)):
            path = work / f"texts-{megabytes:g}mb.txt"
            lines = write_texts(path, megabytes)
            if megabytes in args.file_mb:
                result["classify_file"].append({"file_mb": megabytes, "texts": lines,
                                                **watch([*classify, "--file", str(path)], args.watch)})
            if megabytes in args.contrast_mb:
                result["classify_stdin_reads_all_first"].append({"file_mb": megabytes, "texts": lines,
                                                                 **watch(classify, args.watch, stdin=path)})
            path.unlink()
        harness.report(args, result)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
