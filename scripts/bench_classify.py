"""Sentiment accuracy of the whole pipeline, timed: a classifier from scratch, and ULMFiT-style
(a language model pretrained on the target corpus's own training texts, then fine-tuned to classify).

Runs `textgen` as a user would and prints JSON. Needs TEXTGEN_DATA (or ./corpora) to hold the corpora.
Never pre-trains on one of rotten_tomatoes / sst2 and evaluates on the other: SST-2 was built from the
same reviews. Usage: python scripts/bench_classify.py [--corpus rotten_tomatoes] [--lm-budget 12m] ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from textgen.cli import main as textgen


def run(args: list[str]) -> float:
    """Seconds `textgen args` took; raises if it failed."""
    started = time.perf_counter()
    status = textgen(args)
    if status != 0:
        raise SystemExit(f"textgen {' '.join(args)} exited {status}")
    return time.perf_counter() - started


def best_accuracy(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(r["accuracy"] for r in records if "accuracy" in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="rotten_tomatoes")
    parser.add_argument("--tokenizer", default="sentencepiece")
    parser.add_argument("--vocab-size", default="4000")
    parser.add_argument("--layers", default="1", help="recurrent layers of the encoder (LSTM)")
    parser.add_argument("--hidden", default="384", help="units per layer, and the embedding width")
    parser.add_argument("--lm-budget", default="14m", help="language-model pre-training time")
    parser.add_argument("--classify-budget", default="6m", help="fine-tuning time (each classifier)")
    parser.add_argument("--eval-interval", default="90", help="classifier steps between evaluations "
                        "(90: three times an epoch of rotten_tomatoes at batch 32)")
    parser.add_argument("--skip-scratch", action="store_true")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(options.out or temporary)
        data = ["--corpus", options.corpus, "--tokenizer", options.tokenizer, "--vocab-size", options.vocab_size]
        encoder = ["--cell", "lstm", "--layers", options.layers, "--hidden", options.hidden, "--embed", options.hidden]
        # what regularizes a classifier on 8,530 short texts (measured, see the README)
        classify = ["--task", "classify", *data, "--batch-size", "32", "--lr", "2e-3", "--patience", "4",
                    "--eval-interval", options.eval_interval, "--time-budget", options.classify_budget,
                    "--embed-dropout", "0.3", "--head-dropout", "0.5", "--weight-decay", "0.1"]
        result = {"corpus": options.corpus, "tokenizer": f"{options.tokenizer} {options.vocab_size}",
                  "encoder": f"lstm {options.layers}x{options.hidden}"}

        if not options.skip_scratch:
            seconds = run(["train", *classify, *encoder, "--out", str(root / "scratch")])
            result["from_scratch"] = {"accuracy": best_accuracy(root / "scratch"), "seconds": round(seconds)}

        lm_seconds = run(["train", "--task", "lm", *data, *encoder, "--time-budget", options.lm_budget,
                          "--batch-size", "32", "--seq-len", "64", "--lr", "3e-3", "--dropout", "0.3",
                          "--output-dropout", "0.3", "--embed-dropout", "0.1", "--eval-interval", "250",
                          "--out", str(root / "lm")])
        classify_seconds = run(["train", *classify, "--init-from", str(root / "lm"), "--out", str(root / "ulmfit")])
        result["pretrained_lm_then_classifier"] = {
            "accuracy": best_accuracy(root / "ulmfit"), "lm_seconds": round(lm_seconds),
            "classify_seconds": round(classify_seconds), "total_seconds": round(lm_seconds + classify_seconds)}
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
