"""How much validation text a fine-tune needs to be trusted: the standard error of validation bits
per character, and of the difference between two models scored on the same text, for validation
carves of several sizes (the first N characters of a text; block bootstrap over 250-character
blocks, 2,000 draws). Two models: the one a run started from and the run.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_validation_noise.py --text VALIDATION.txt \\
        --models english,runs/bench_transfer/runs/jekyll-100k-english-10m
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import harness

from textgen.recipes.models import load
from textgen.training.adapt import read_from_the_start

BLOCK, DRAWS = 250, 2000


def bits_per_char(generator, text: str) -> np.ndarray:
    """The bits each character of `text` costs `generator`'s model, read from the start."""
    model, _, ids = read_from_the_start(generator.model, generator.tokenizer, text, torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(ids[None, :-1]), None)
        return F.cross_entropy(logits[0].float(), torch.as_tensor(ids[1:]), reduction="none").numpy() / np.log(2)


def standard_error(values: np.ndarray, rng: np.random.Generator) -> float:
    """The bootstrap standard error of the mean of `values`, resampling whole blocks."""
    blocks = values[:len(values) // BLOCK * BLOCK].reshape(-1, BLOCK).mean(1)
    return float(np.std([blocks[rng.integers(0, len(blocks), len(blocks))].mean() for _ in range(DRAWS)]))


def main() -> None:
    parser = harness.parser(__doc__, threads=1, seed=0)
    parser.add_argument("--text", required=True, help="a text neither model trained on")
    parser.add_argument("--models", required=True, help="two models, by comma: the start and the run")
    parser.add_argument("--sizes", default="5000,10000,20000,38000", help="validation characters")
    args = harness.parse(parser, quick={"sizes": "1000"})
    text = open(args.text, encoding="utf-8").read()
    generators = [load(name, "cpu") for name in args.models.split(",")]
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in map(int, args.sizes.split(",")):
        part = text[:size]
        first, second = (bits_per_char(generator, part) for generator in generators)
        rows.append({"chars": len(part), "bits_per_char": [round(float(first.mean()), 4), round(float(second.mean()), 4)],
                     "standard_error": [round(standard_error(first, rng), 4), round(standard_error(second, rng), 4)],
                     "difference": round(float((second - first).mean()), 4),
                     "difference_standard_error": round(standard_error(second - first, rng), 4)})
        harness.progress(rows[-1])
    harness.report(args, {"models": args.models.split(","), "sizes": rows})


if __name__ == "__main__":
    main()
