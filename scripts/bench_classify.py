"""Sentiment accuracy of the whole pipeline, timed, beside the baseline a user would reach for.

Stages (pick with --stages; each runs `textgen` as a user would and adds to one JSON object):
- baseline: TF-IDF word and bigram features with logistic regression (scikit-learn, the `bench` extra);
- rt: rotten_tomatoes, fine-tuned ULMFiT-style from the pre-trained review language model (--lm);
- rt_scratch: the same classifier from scratch;
- imdb: IMDb whole reviews, fine-tuned from the review language model;
- imdb_scratch: the same from scratch;
- rt_char, rt_char_scratch: rotten_tomatoes per character, from a character language model of the
  reviews (--char-lm) and from scratch.

Accuracy is on validation splits carved from training data only (rotten_tomatoes has its own).
Never pre-trains on one of rotten_tomatoes / sst2 and evaluates on the other: SST-2 was built from the
same reviews; IMDb text may serve both. Needs TEXTGEN_DATA to hold the corpora.

    python scripts/bench_classify.py --stages baseline,rt,rt_scratch --lm runs/bundled/reviews

Prints one JSON report (and each stage on stderr as it ends).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import harness

from textgen.cli import main as textgen
from textgen.config import DataConfig
from textgen.data.corpus import load_corpus

# What regularizes a classifier fine-tuned on a few thousand texts (measured; see the README).
REGULARIZED = ["--embed-dropout", "0.3", "--head-dropout", "0.5", "--weight-decay", "0.1"]
# The encoder of the review language model, for classifiers trained from scratch to match it.
ENCODER = ["--cell", "lstm", "--layers", "2", "--hidden", "384", "--embed", "384",
           "--tokenizer", "sentencepiece", "--vocab-size", "4000"]
STAGES = {
    "rt": ["--corpus", "rotten_tomatoes", "--lm-finetune-steps", "300", "--batch-size", "32", "--lr", "2e-3",
           "--eval-interval", "90", "--patience", "5", *REGULARIZED, "--time-budget", "12m"],
    "rt_scratch": ["--corpus", "rotten_tomatoes", *ENCODER, "--batch-size", "32", "--lr", "2e-3",
                   "--eval-interval", "90", "--patience", "5", *REGULARIZED, "--time-budget", "6m"],
    "imdb": ["--corpus", "imdb", "--batch-size", "32", "--lr", "3e-3", "--warmup-steps", "100", "--max-len", "400",
             "--eval-interval", "350", "--patience", "4", *REGULARIZED, "--time-budget", "55m"],
    # rotten_tomatoes from the IMDb classifier of the "imdb" stage (run it first, with the same --runs-dir)
    "rt_via_imdb": ["--corpus", "rotten_tomatoes", "--unfreeze-every", "0", "--batch-size", "32", "--lr", "2e-3",
                    "--eval-interval", "90", "--patience", "5", *REGULARIZED, "--time-budget", "6m"],
    "rt_char": ["--corpus", "rotten_tomatoes", "--lm-finetune-steps", "300", "--batch-size", "32", "--lr", "2e-3",
                "--head-norm", "--max-len", "512", "--eval-interval", "90", "--patience", "5", *REGULARIZED, "--time-budget", "12m"],
    "rt_char_scratch": ["--corpus", "rotten_tomatoes", "--cell", "lstm", "--layers", "2", "--hidden", "384",
                        "--embed", "384", "--tokenizer", "char", "--batch-size", "32", "--lr", "2e-3",
                        "--max-len", "512", "--eval-interval", "90", "--patience", "5", *REGULARIZED,
                        "--time-budget", "8m"],
    "imdb_scratch": ["--corpus", "imdb", *ENCODER, "--batch-size", "32", "--lr", "2e-3", "--max-len", "400",
                     "--eval-interval", "350", "--patience", "4", *REGULARIZED, "--time-budget", "15m"],
}


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


def tfidf_baseline(corpus_name: str) -> dict:
    """TF-IDF word unigrams and bigrams with logistic regression on the same train/validation split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    corpus = load_corpus(DataConfig(corpus=corpus_name), task="classify")
    train, validation = corpus.splits["train"], corpus.splits["validation"]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    features = vectorizer.fit_transform(train[corpus.text_column])
    model = LogisticRegression(C=4.0, max_iter=2000).fit(features, train[corpus.label_column])
    accuracy = model.score(vectorizer.transform(validation[corpus.text_column]), validation[corpus.label_column])
    return {"accuracy": round(float(accuracy), 4), "seconds": round(time.perf_counter() - started, 1),
            "validation_rows": len(validation)}


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--stages", default="baseline,rt,rt_scratch", help="comma-separated: baseline, "
                        + ", ".join(STAGES))
    parser.add_argument("--lm", default="reviews", help="the pre-trained review language model (run folder, "
                        ".pt or bundled name)")
    parser.add_argument("--char-lm", default="runs/char-reviews", help="a character language model of reviews, "
                        "for rt_char")
    parser.add_argument("--runs-dir", help="keep the run folders here (default: a temporary folder)")
    options = harness.parse(parser, quick={"stages": "rt_scratch"})
    result: dict = {"lm": options.lm}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(options.runs_dir or temporary)
        for stage in options.stages.split(","):
            if stage == "baseline":
                result["tfidf_logistic_regression"] = {name: tfidf_baseline(name)
                                                       for name in ("rotten_tomatoes", "imdb")}
                continue
            lm = options.char_lm if "char" in stage else options.lm
            pretrained = [] if stage.endswith("scratch") else ["--init-from", lm]
            if stage == "rt_via_imdb":
                pretrained = ["--init-from", str(root / "imdb")]
            arguments = ["train", "--task", "classify", *STAGES[stage], *pretrained, "--out", str(root / stage)]
            if options.quick:  # a few steps of each stage: the flags given last win
                arguments += ["--max-steps", "4", "--eval-interval", "2"]
            seconds = run(arguments)
            result[stage] = {"accuracy": best_accuracy(root / stage), "seconds": round(seconds),
                             "command": "textgen " + " ".join(arguments)}
            harness.progress({stage: result[stage]})
    harness.report(options, result)


if __name__ == "__main__":
    main()
