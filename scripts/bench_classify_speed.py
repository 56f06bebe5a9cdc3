"""How fast `textgen classify --eval` labels whole reviews: IMDb's 2,500 validation reviews, then all
25,000 of its training reviews (train and the validation rows carved from it), with each --features
choice of a classifier, and `both` with every text read by the encoder (`both:read-all`); with
--unlabelled, then IMDb's 50,000 unlabelled reviews. The bundled model's n-grams trained on 22,500 of
the 25,000, so more of those skip the encoder than of new reviews would: the validation and unlabelled
reviews tell how fast new reviews go. Prints one JSON report of every run (and each run on stderr as it
ends): texts/s by wall clock and by this process's CPU time (which a busy machine inflates less), with
the load average, so a figure measured on a shared core can be told from one measured alone. Needs
TEXTGEN_DATA to hold imdb.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_classify_speed.py --unlabelled
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import harness
import torch

from textgen.nn.checkpoint import load_classifier
from textgen.classify.predict import predict
from textgen.config import DataConfig
from textgen.data.corpus import load_corpus
from textgen.recipes.evaluate import evaluate_classifier
from textgen.nn.precision import resolve_precision

# `both` without the shortcut for texts the n-grams decide (ClassifierConfig.decisive_margin)
READ_ALL = ":read-all"


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


def load(model: str, features: str, reading: dict):
    """The classifier and its tokenizer for `features`, which may end in READ_ALL: `both` with every
    text read by the encoder, also those the n-grams decide."""
    classifier, tokenizer, _ = load_classifier(model, "cpu", features=features.removesuffix(READ_ALL), **reading)
    if features.endswith(READ_ALL):
        classifier.config = dataclasses.replace(classifier.config, decisive_margin=0.0)
    return classifier, tokenizer


def timed(run, texts: int, **fields) -> dict:
    """`fields` and what `run()` returns, with wall and CPU seconds, texts/s and the load around it."""
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {**fields, **result, "texts": texts, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "texts_per_s_wall": round(texts / wall, 1), "texts_per_s_cpu": round(texts / cpu, 1),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def timed_eval(model: str, corpus: str, split: str, features: str, precision: str, reading: dict) -> dict:
    """`classify --eval` on `corpus` `split` in this process: accuracy and ECE, timed."""
    def run() -> dict:
        classifier, tokenizer = load(model, features, reading)
        metrics = evaluate_classifier(classifier, DataConfig(corpus=corpus), split, "cpu", tokenizer=tokenizer,
                                      precision=precision)
        return {"accuracy": metrics["accuracy"], "ece": metrics["ece"]}

    texts = len(load_corpus(DataConfig(corpus=corpus), task="classify", evaluate=split).splits[split])
    return timed(run, texts, split=split, features=features, precision=precision,
                 reading=" ".join(f"{key} {value}" for key, value in reading.items()))


def timed_unlabelled(model: str, texts: list[str], features: str, precision: str, reading: dict) -> dict:
    """Labelling `texts` (reviews without labels), timed, with how many it calls positive."""
    def run() -> dict:
        classifier, tokenizer = load(model, features, reading)
        probabilities = predict(classifier, tokenizer, texts, torch.device("cpu"),
                                precision=resolve_precision(precision, torch.device("cpu")))
        return {"positive_share": round(float((probabilities.argmax(1) == 1).mean()), 4)}

    return timed(run, len(texts), split="unsupervised", features=features, precision=precision,
                 reading=" ".join(f"{key} {value}" for key, value in reading.items()))


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--features", default=f"ngram,both,both{READ_ALL}",
                        help=f"comma-separated --features choices; both{READ_ALL}: both, every text read by the "
                             f"encoder")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--skip-all", action="store_true", help="only the 2,500 validation reviews")
    parser.add_argument("--unlabelled", action="store_true",
                        help="then label IMDb's 50,000 unlabelled reviews (no part of the model trained on their "
                             "labels: they have none)")
    parser.add_argument("--max-len", help="--max-len for classify (default: the classifier's)")
    parser.add_argument("--long-text", help="--long-text for classify (default: the classifier's)")
    args = harness.parse(parser, quick={"skip_all": True, "features": "ngram"})
    reading = {**({"max_len": int(args.max_len)} if args.max_len else {}),
               **({"long_text": args.long_text} if args.long_text else {})}
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        count = 0 if args.skip_all else write_all_reviews(Path(folder))
        # the 2,500 first, each choice, then the 25,000: each run on stderr as it ends
        corpora = [("imdb", "validation")] + ([(folder, "test")] if count else [])
        for corpus, split in corpora:
            for features in args.features.split(","):
                runs.append(timed_eval(args.model, corpus, split, features, args.precision, reading))
                harness.progress(runs[-1])
    if args.unlabelled:
        corpus = load_corpus(DataConfig(corpus="imdb"), task="lm")
        texts = list(corpus.splits["unsupervised"][corpus.text_column])
        for features in args.features.split(","):
            runs.append(timed_unlabelled(args.model, texts, features, args.precision, reading))
            harness.progress(runs[-1])
    harness.report(args, {"model": args.model, "runs": runs})


if __name__ == "__main__":
    main()
