"""Your own text: fine-tuning the bundled `english` model against training from scratch, at equal time.

A user's corpus is cut from a book that no textgen model has seen: the first 20, 100 or 500 KB
train, and the next 100 KB of the same book (or all that is left) validate. Each method trains on
it for the same wall time; the figure is the validation bits per character of its best checkpoint,
and the copy share of its samples (temperature 0.8: the share of sampled characters inside spans of
50 or more found verbatim in the training slice). `english` zero-shot is scored beside them.

Books: the three gutenberg validation books (never a test book: those are reported once, in the
model card) and tiny_shakespeare (verse, another register); `jekyll-ascii` is Jekyll with the straight
quotes a keyboard types. Run it pinned to one core, alone:

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_transfer.py --books jekyll,darkness \\
        --sizes 100 --minutes 10 --methods english,scratch_default,scratch_small

Prints one JSON report: every run (each also on stderr as it ends) and a summary; needs TEXTGEN_DATA
to hold the gutenberg corpus. The slices and runs are kept in --runs-dir.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

import harness


# what each method adds to `textgen train --corpus SLICE --time-budget T`; each keeps its own defaults
# (evaluation interval included), as a user gets them
METHODS = {
    "english": ["--init-from", "english"],  # fine-tuned, with the fine-tuning defaults
    # the same without early stopping: the whole time budget, to see what stopping early gives up
    "english_no_patience": ["--init-from", "english", "--patience", "0"],
    "scratch_default": ["--init-from", "none"],  # preset auto from scratch (compact under 300 KB, else small)
    "scratch_compact": ["--preset", "compact"],  # 2x256, dropout 0.3
    "scratch_small": ["--preset", "small"],  # 2x384, dropout 0.1: the default before preset auto
    # compact with heavier regularisation, a candidate for the best from-scratch setting on ~100 KB
    "scratch_regularised": ["--preset", "compact", "--dropout", "0.5", "--output-dropout", "0.5",
                            "--embed-dropout", "0.1", "--weight-decay", "0.1"],
}
VALIDATION_CHARS = 100_000


# what a book looks like typed on a keyboard: most people's own text has straight quotes, the
# gutenberg editions curly ones (which is all `english` saw, unless IMDb's reviews join its training)
KEYBOARD_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def book_text(name: str, data_dir: Path) -> str:
    """The whole text of a gutenberg validation book (by a word of its title) or of tiny_shakespeare;
    NAME-ascii is the book with straight quotes."""
    if name.endswith("-ascii"):
        return book_text(name.removesuffix("-ascii"), data_dir).translate(KEYBOARD_QUOTES)
    if name == "shakespeare":
        return "".join((data_dir / "tiny_shakespeare" / f"{split}.txt").read_text()
                       for split in ("train", "validation", "test"))
    for line in (data_dir / "gutenberg" / "validation.jsonl").read_text().splitlines():
        row = json.loads(line)
        if name.lower() in row["title"].lower():
            return row["text"]
    raise SystemExit(f"no gutenberg validation book has {name!r} in its title")


def write_slice(text: str, kilobytes: int, folder: Path) -> dict:
    """train.txt (the first `kilobytes` KB) and validation.txt (what follows) in `folder`."""
    train_chars = kilobytes * 1000
    if len(text) < train_chars + 10_000:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(text[:train_chars])
    (folder / "validation.txt").write_text(text[train_chars:train_chars + VALIDATION_CHARS])
    return {"train_chars": train_chars, "validation_chars": len(text[train_chars:train_chars + VALIDATION_CHARS])}


def copy_share(run: Path, samples: int) -> dict:
    """The copy check of `samples` samples of 400 characters at temperature 0.8."""
    lines = harness.captured(["sample", "--model", str(run), "--length", "400", "--temperature", "0.8", "--seed", "0",
                      "--num-samples", str(samples), "--json", "--check-copy"]).splitlines()
    records = [json.loads(line) for line in lines]
    return {"copied_share": statistics.mean(r["copied_share"] for r in records),
            "longest_copied": max(r["longest_copied"] for r in records)}


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--books", default="jekyll,darkness,wallpaper,shakespeare")
    parser.add_argument("--sizes", default="20,100,500", help="training slices in KB")
    parser.add_argument("--minutes", default="2,5,10", help="wall time of each training run")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--english", default="english", help="the model fine-tuned (bundled name, run, .pt)")
    parser.add_argument("--extra", default="", help="flags added to every fine-tuning run, e.g. '--lr 2e-3'")
    parser.add_argument("--samples", type=int, default=4, help="samples per run for the copy check")
    parser.add_argument("--runs-dir", default="runs/bench_transfer", help="where the slices and runs are kept")
    args = harness.parse(parser, quick={"books": "jekyll", "sizes": "20", "minutes": "0.1",
                                        "methods": "english,scratch_default", "samples": 1})
    data_dir = Path(os.environ.get("TEXTGEN_DATA", "corpora"))
    out = Path(args.runs_dir)
    records, results = [], []  # every record; the training runs
    for book in args.books.split(","):
        text = book_text(book, data_dir)
        for size in map(int, args.sizes.split(",")):
            folder = out / "data" / f"{book}-{size}k"
            sizes = write_slice(text, size, folder)
            if not sizes:
                records.append({"book": book, "kb": size, "skipped": f"the book has {len(text):,} characters"})
                harness.progress(records[-1])
                continue
            zero_shot = json.loads(harness.captured(["eval", "--model", args.english, "--corpus", str(folder),
                                             "--split", "validation", "--json"]))
            records.append({"book": book, "kb": size, "method": "english_zero_shot",
                            "bits_per_char": zero_shot["bits_per_char"], **sizes})
            harness.progress(records[-1])
            for minutes in map(float, args.minutes.split(",")):
                for method in args.methods.split(","):
                    flags = [flag if flag != "english" else args.english for flag in METHODS[method]]
                    if method.startswith("english"):
                        flags += args.extra.split()
                    tag = "-" + "_".join(args.extra.split()) if args.extra and method.startswith("english") else ""
                    run = out / "runs" / f"{book}-{size}k-{method}-{minutes:g}m{tag}"
                    shutil.rmtree(run, ignore_errors=True)  # a fresh run each time
                    started = time.perf_counter()
                    harness.captured(["train", "--corpus", str(folder), "--out", str(run), "--time-budget", f"{minutes:g}m",
                              *flags])
                    train_s = time.perf_counter() - started
                    bits, step = harness.best_bits_per_char(run)
                    record = {"book": book, "kb": size, "minutes": minutes, "method": method, "flags": flags,
                              "bits_per_char": bits, "best_step": step, **copy_share(run, args.samples),
                              "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - started, 1),
                              **sizes}
                    results.append(record)
                    records.append(record)
                    harness.progress(record)
    summary = {}
    for record in results:
        summary.setdefault(f"{record['book']}-{record['kb']}k-{record['minutes']:g}m", {})[record["method"]] = \
            round(record["bits_per_char"], 4)
    harness.report(args, {"runs": records, "summary": summary})


if __name__ == "__main__":
    main()
