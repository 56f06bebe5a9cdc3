"""How fast `textgen classify --eval` labels whole reviews: IMDb's 2,500 validation reviews, then all
25,000 of its training reviews (train and the validation rows carved from it), with each --features
choice of a classifier. Prints one JSON line, then one per run: texts/s by wall clock and by this process's
CPU time (which a busy machine inflates less), with the load average, so a figure measured on a
shared core can be told from one measured alone. Needs TEXTGEN_DATA to hold imdb.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_classify_speed.py --features ngram,both
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from textgen.cli import main as textgen
from textgen.config import DataConfig
from textgen.corpus import load_corpus


def write_all_reviews(folder: Path) -> int:
    """All of IMDb's labelled training reviews as folder/test.jsonl; how many."""
    corpus = load_corpus(DataConfig(corpus="imdb"), task="classify")
    count = 0
    with open(folder / "test.jsonl", "w") as file:
        for split in ("train", "validation"):
            rows = corpus.splits[split]
            for text, label in zip(rows[corpus.text_column], rows[corpus.label_column]):
                file.write(json.dumps({"text": text, "label": corpus.label_names[label]}) + "\n")
                count += 1
    return count


def timed_eval(model: str, corpus: str, split: str, features: str, precision: str, reading: list[str]) -> dict:
    """`textgen classify --eval` in this process: its metrics with wall and CPU seconds and the load."""
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = textgen(["classify", "--model", model, "--eval", "--corpus", corpus, "--split", split, "--json",
                          "--features", features, "--precision", precision, *reading])
    if status != 0:
        raise SystemExit(f"textgen classify --eval failed ({status})")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    metrics = json.loads(out.getvalue())
    return {"split": split, "features": features, "precision": precision, "reading": " ".join(reading),
            "texts": metrics["examples"],
            "accuracy": metrics["accuracy"], "ece": metrics["ece"], "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "texts_per_s_wall": round(metrics["examples"] / wall, 1),
            "texts_per_s_cpu": round(metrics["examples"] / cpu, 1),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--features", default="ngram,both", help="comma-separated --features choices")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--skip-all", action="store_true", help="only the 2,500 validation reviews")
    parser.add_argument("--max-len", help="--max-len for classify (default: the classifier's)")
    parser.add_argument("--long-text", help="--long-text for classify (default: the classifier's)")
    args = parser.parse_args()
    reading = [*(["--max-len", args.max_len] if args.max_len else []),
               *(["--long-text", args.long_text] if args.long_text else [])]
    print(json.dumps({"model": args.model, "cpu": platform.processor() or platform.machine(),
                      "cores_allowed": len(os.sched_getaffinity(0))}), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        count = 0 if args.skip_all else write_all_reviews(Path(folder))
        # the 2,500 first, each choice, then the 25,000: one JSON line per run, as it ends
        corpora = [("imdb", "validation")] + ([(folder, "test")] if count else [])
        for corpus, split in corpora:
            for features in args.features.split(","):
                print(json.dumps(timed_eval(args.model, corpus, split, features, args.precision, reading)),
                      flush=True)


if __name__ == "__main__":
    main()
