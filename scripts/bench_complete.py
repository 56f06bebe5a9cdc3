"""Latency of autocomplete (`textgen complete`): the top 5 completions of a 20-character prefix.

Per bundled model: "cold", a prefix that shares no start with the one before (the whole prefix is
read), and "keystroke", the prefix typed one character at a time from its 10th character (a
character model reads only the new one). The model is loaded once, as an editor would keep it.
Also the time of one 20-character forward pass, the baseline measured in the same run: a ratio
holds on a busy machine where milliseconds do not. One torch thread unless --threads says otherwise.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_complete.py
"""

from __future__ import annotations

import time

import harness
import torch

from textgen.nn.checkpoint import load_language_model
from textgen.generate.completion import complete

PREFIXES = {"english": "The quick brown fox j", "shakespeare": "ROMEO: I will not bre",
            "reviews": "This movie was absol"}


def milliseconds(call) -> float:
    started = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - started)


def main() -> None:
    parser = harness.parser(__doc__, repeats=9, threads=1)
    parser.add_argument("--models", nargs="+", default=list(PREFIXES), choices=list(PREFIXES))
    parser.add_argument("--top", type=int, default=5)
    args = harness.parse(parser, quick={"models": ["shakespeare"], "repeats": 2})
    result = {}
    for name in args.models:
        model, tokenizer, _ = load_language_model(name)
        prefix = PREFIXES[name]
        ids = torch.as_tensor(tokenizer.encode(prefix))[None]
        cold, keystroke, forward = [], [], []
        with torch.inference_mode():
            for repeat in range(args.repeats):
                complete(model, tokenizer, "Some other text " + "x" * repeat, args.top)
                cold.append(milliseconds(lambda: complete(model, tokenizer, prefix, args.top)))
                forward.append(milliseconds(lambda: model(ids)))
        for end in range(10, len(prefix) + 1):
            keystroke.append(milliseconds(lambda: complete(model, tokenizer, prefix[:end], args.top)))
        result[name] = {"prefix": prefix, "tokenizer": tokenizer.kind,
                        "cold_median_ms": harness.median(cold), "keystroke_median_ms": harness.median(keystroke),
                        "forward_median_ms": harness.median(forward),
                        "cold_over_forward": harness.median(cold) / harness.median(forward),
                        "completions": {c.text: round(c.probability, 4)
                                        for c in complete(model, tokenizer, prefix, args.top)}}
    harness.report(args, result)


if __name__ == "__main__":
    main()
