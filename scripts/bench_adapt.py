"""Adapting as it reads (`textgen eval --adapt`, issue 31) and the public yardstick: bits per
character of each gutenberg validation book read in order by a model unchanged and adapting (the
figure `eval --adapt` gives, mixed with the trained model, and the adapting model alone); and
bits per byte of the raw alice29.txt of the Canterbury corpus (CRLF and all) for the model
zero-shot and adapting, beside xz -9e and bzip2 -9 measured in the same run.

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_adapt.py --model english [--books] [--alice]
    (both when neither is named; --split test scores the test books, once every choice is made)
"""

from __future__ import annotations

import bz2
import lzma
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from textgen.config import DataConfig  # noqa: E402
from textgen.data.corpus import load_corpus  # noqa: E402
from textgen.recipes.evaluate import run  # noqa: E402
from textgen.requests import ADAPT_DECAY, ADAPT_LR, EvalRequest  # noqa: E402


def main() -> None:
    parser = harness.parser(__doc__, threads=1)
    parser.add_argument("--model", default="english")
    parser.add_argument("--books", action="store_true", help="score the gutenberg books of --split")
    parser.add_argument("--alice", action="store_true", help="score alice29.txt of the Canterbury corpus")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--chars", type=int, default=None, help="the first this many characters of each book")
    parser.add_argument("--lr", type=float, default=ADAPT_LR)
    parser.add_argument("--decay", type=float, default=ADAPT_DECAY)
    args = harness.parse(parser, quick={"chars": 2000})
    both = not (args.books or args.alice)
    data = Path(os.environ.get("TEXTGEN_DATA", "../shared/corpora"))
    result: dict = {"model": args.model, "lr": args.lr, "decay": args.decay}
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "textgen-bench-adapt"
    folder.mkdir(exist_ok=True)
    if args.books or both:
        corpus = load_corpus(DataConfig(corpus="gutenberg", data_dir=str(data)), task="lm")
        result["books"] = []
        for row in corpus.splits[args.split]:
            path = folder / f"{row['gutenberg_id']}.txt"
            path.write_text(row["text"][:args.chars])
            started = time.perf_counter()
            scored = run(EvalRequest(model=args.model, corpus=str(path), adapt=True, adapt_lr=args.lr,
                                     adapt_decay=args.decay, device="cpu"))
            record = {"title": row["title"], "chars": len(row["text"][:args.chars]),
                      "unchanged": scored["bits_per_char_static"], "adapting": scored["bits_per_char"],
                      "gain": scored["gain"], "adapting_alone": scored["bits_per_char_adapting"],
                      "trained_share": scored["trained_share"], "seconds": round(time.perf_counter() - started, 1)}
            harness.progress(record)
            result["books"].append(record)
    if args.alice or both:
        path = data / "canterbury" / "alice29.txt"
        raw = path.read_bytes()
        scored = run(EvalRequest(model=args.model, corpus=str(path), adapt=True, adapt_lr=args.lr,
                                 adapt_decay=args.decay, device="cpu"))
        result["alice29"] = {
            "bytes": len(raw), "zero_shot_bits_per_byte": scored["bits_per_byte_static"],
            "adapting_bits_per_byte": scored["bits_per_byte"],
            "adapting_alone_bits_per_byte": scored["bits_per_byte_adapting"], "trained_share": scored["trained_share"],
            "xz_bits_per_byte": 8 * len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) / len(raw),
            "bzip2_bits_per_byte": 8 * len(bz2.compress(raw, 9)) / len(raw),
            "published": {"cmix v19": 1.645, "pythia-70M": 1.335}}  # Bellard's ts_zip table (canterbury README)
    harness.report(args, result)


if __name__ == "__main__":
    main()
