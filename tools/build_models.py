"""Rebuild the bundled models: train each with `textgen train`, export half-precision weights into
textgen/pretrained/, measure what the export costs, and write each model card.

    python tools/build_models.py                      # train and pack all (hours on a laptop CPU)
    python tools/build_models.py --only shakespeare   # one model
    python tools/build_models.py --pack-only          # pack runs that are already trained
    python tools/build_models.py --only sentiment --from-stage sentiment-ngrams
        # that stage (and any after it) from the bundled file: new n-grams on the shipped encoder
    python tools/build_models.py --only sentiment --plan   # the stages it would train, as JSON; trains nothing

The corpora other than the bundled tiny_shakespeare come from the data folder ($TEXTGEN_DATA).
Prints one JSON object per model.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "bundled"
PRETRAINED = ROOT / "textgen" / "pretrained"
BEHAVIOUR_ROWS = 1500  # template sentences per capability added to the sentiment stages' training rows
BEHAVIOUR_REVIEWS = 4000  # IMDb reviews beside them and rotten_tomatoes in the short encoder stage
SENTENCES = 8530  # rotten_tomatoes' training rows, first in reviews_mixed

# name -> how it is trained, what it is scored on, and what its card says about it.
MODELS = {
    "shakespeare": {
        "train": ["--corpus", "tiny_shakespeare", "--time-budget", "12m"],
        "scores": [["tiny_shakespeare", "validation"], ["tiny_shakespeare", "test"]],
        "about": "A character-level LSTM language model of Shakespeare's plays: `textgen sample` "
                 "uses it when no --model is given.",
        "data": "tiny_shakespeare, bundled with textgen (train split, 1,003,854 characters)",
    },
    "reviews": {
        "train": ["--corpus", "imdb", "--lm-splits", "train,unsupervised", "--tokenizer", "sentencepiece",
                  "--vocab-size", "4000", "--layers", "2", "--hidden", "384", "--embed", "384",
                  "--dropout", "0.1", "--embed-dropout", "0.05", "--output-dropout", "0.1",
                  "--batch-size", "64", "--seq-len", "96", "--lr", "3e-3", "--eval-interval", "500",
                  "--eval-tokens", "200000", "--checkpoint-interval", "250", "--time-budget", "55m"],
        # then resumed for longer: a warm restart of the schedule at a lower peak
        "resume": [["--time-budget", "140m", "--lr", "2e-3"]],
        "scores": [["imdb", "validation"]],
        "about": "A SentencePiece LSTM language model of movie reviews (IMDb's training and unlabelled "
                 "reviews), to fine-tune classifiers from: `textgen train --task classify --init-from reviews`.",
        "data": "imdb train (less the 10% stratified validation rows, seed 0) + unsupervised: 72,500 reviews, "
                "about 96 million characters, HTML line breaks turned into newlines",
    },
    "reviews-label": {
        # the bundled reviews fine-tuned with each review's label fed as context (docs/steering.md)
        "train": ["--corpus", "imdb", "--lm-splits", "train", "--init-from", "reviews", "--condition", "label",
                  "--lr", "1e-3", "--warmup-steps", "50", "--eval-interval", "250", "--checkpoint-interval", "250",
                  "--eval-tokens", "200000", "--time-budget", "70m"],
        "scores": [["imdb", "validation"]],
        "about": "The `reviews` language model fine-tuned to write under a sentiment label: "
                 "`textgen sample --model reviews-label --label pos` (or neg; no --label: unconditioned).",
        "data": "imdb train less its 10% stratified validation rows (seed 0): 22,500 labelled reviews, each token "
                "read with its review's label (withheld from 20% of training rows: label dropout)",
    },
    "english": {
        # gutenberg alone for 80 minutes, resumed to 165 (a warm restart at a lower peak); then 12 minutes
        # on gutenberg with IMDb reviews beside it (2:1), which taught it modern English and the keyboard's
        # straight quotes (IMDb validation 3.56 -> 1.96 bits/char) at no cost on gutenberg validation; then
        # the same mix with each book typed several ways (tools/typeset.py), so that how a text was typed
        # costs next to nothing (issue 31)
        "before": {"english": [["--corpus", "gutenberg", "--layers", "2", "--hidden", "512", "--embed", "512",
                                "--batch-size", "32", "--seq-len", "128", "--lr", "2e-3", "--eval-interval", "500",
                                "--checkpoint-interval", "250", "--time-budget", "80m"],
                               ["--time-budget", "165m", "--lr", "1e-3"]],
                   "english-mix": ["--corpus", "runs/bundled/data/english_mix", "--init-from", "runs/bundled/english",
                                   "--lr", "5e-4", "--warmup-steps", "50", "--dropout", "0.1", "--output-dropout", "0.1",
                                   "--embed-dropout", "0", "--batch-size", "32", "--seq-len", "128", "--eval-interval",
                                   "250", "--checkpoint-interval", "250", "--time-budget", "12m"]},
        "run": "english-typeset",
        "train": ["--corpus", "runs/bundled/data/english_typeset", "--init-from", "runs/bundled/english-mix", "--lr",
                  "5e-4", "--warmup-steps", "50", "--dropout", "0.1", "--output-dropout", "0.1", "--embed-dropout", "0",
                  "--batch-size", "32", "--seq-len", "128", "--eval-interval", "250", "--checkpoint-interval", "250",
                  "--time-budget", "110m"],
        "prepare": ["english_mix", "english_typeset"],
        "scores": [["gutenberg", "validation"], ["gutenberg", "test"], ["tiny_shakespeare", "validation"],
                   ["imdb", "validation"]],
        "about": "A general English character-level LSTM language model (books of the 19th and early 20th "
                 "century, and movie reviews), to fine-tune on your own text: "
                 "`textgen train --corpus my.txt --init-from english`.",
        "data": "gutenberg train: 18 public-domain books, 13,360,573 characters (validation: 3 other books, "
                "380,197 characters; test: 3 more, 557,553 characters; split by whole books); in the last stage "
                "with 6,682,511 characters of IMDb training reviews beside them (shuffled with seed 0, HTML line "
                "breaks turned into newlines), written by this script to runs/bundled/data/english_mix; then the "
                "same books each typed several ways (tools/typeset.py: quotes, wrapping, indents, sentence gaps, CRLF; "
                "seed 0, validation books seed 1) beside the same reviews, as JSON lines in "
                "runs/bundled/data/english_typeset",
    },
    "sentiment": {
        # first whole reviews and sentences together, then the sentences alone, which were 3% of the
        # first stage's tokens, then one gentle epoch of both: the recurrent part; then hashed word
        # n-grams stacked on it, with their mixing weight and the temperatures fitted on both corpora's
        # validation rows
        "before": {"sentiment": ["--task", "classify", "--corpus", "runs/bundled/data/reviews_mixed", "--init-from",
                                 "runs/bundled/reviews", "--max-len", "400", "--embed-dropout", "0.3",
                                 "--head-dropout", "0.5", "--weight-decay", "0.1", "--batch-size", "32",
                                 "--lr", "2e-3", "--eval-interval", "400", "--patience", "4", "--time-budget", "35m"],
                   "sentiment-rt2": ["--task", "classify", "--corpus", "rotten_tomatoes", "--init-from",
                                     "runs/bundled/sentiment", "--unfreeze-every", "0", "--lr", "2e-3", "--batch-size",
                                     "32", "--eval-interval", "90", "--patience", "5", "--embed-dropout", "0.3",
                                     "--head-dropout", "0.5", "--weight-decay", "0.1", "--time-budget", "5m"],
                   # one epoch of both at a quarter of the rate, all layers alike, on the last 400 tokens
                   # as the classifier reads them: the sentences' stage had left IMDb 3 points behind
                   "sentiment-mixed": ["--task", "classify", "--corpus", "runs/bundled/data/reviews_mixed",
                                       "--init-from", "runs/bundled/sentiment-rt2", "--unfreeze-every", "0",
                                       "--layer-lr-decay", "1", "--lr", "5e-4", "--warmup-steps", "50",
                                       "--min-lr-ratio", "0", "--max-steps", "970", "--eval-interval", "970",
                                       "--batch-size", "32", "--max-len", "400", "--long-text", "tail",
                                       "--embed-dropout", "0.3", "--head-dropout", "0.5", "--weight-decay",
                                       "0.1"]},
        "run": "sentiment-ngrams",
        "train": ["--task", "classify", "--corpus", "runs/bundled/data/reviews_mixed", "--init-from",
                  "runs/bundled/sentiment-mixed", "--features", "both", "--ngram-buckets", "524288", "--char-ngrams",
                  "5", "--max-len", "400", "--long-text", "tail"],
        # --from-stage sentiment-ngrams skips the "before" stages and stacks on the bundled model's recurrent part
        "stacked": True,
        "scores": [["rotten_tomatoes", "validation"], ["imdb", "validation"]],
        "features": ["recurrent", "ngram", "both"],
        "about": "An English sentiment classifier (neg/pos) for review snippets and whole reviews alike: a "
                 "recurrent encoder fine-tuned from the `reviews` language model, and hashed word 1-3-grams "
                 "and character 3-5-grams of words beside it (fastText, Naive-Bayes weighted), their logits "
                 "mixed: `textgen classify` uses it when no --model is given; `--features recurrent` or `ngram` "
                 "uses one part alone.",
        "data": "first rotten_tomatoes train (8,530 sentences) + imdb train less its validation rows (22,500 "
                "whole reviews), written by this script to runs/bundled/data/reviews_mixed (validation: both "
                "corpora's validation rows, 1,066 + 2,500); then rotten_tomatoes train alone; then one epoch of "
                "reviews_mixed again, the last 400 tokens of each text; the n-grams on "
                "reviews_mixed's training rows, their weight and the temperatures on its validation rows. No SST-2.",
        "prepare": ["reviews_mixed"],
    },
}


def write_reviews_mixed(folder: Path) -> None:
    """rotten_tomatoes and imdb labelled rows together (labels neg/pos), each corpus's own validation
    rows (imdb's carved as textgen carves it) kept for validation."""
    from textgen.config import DataConfig
    from textgen.data.corpus import load_corpus

    folder.mkdir(parents=True, exist_ok=True)
    corpora = [load_corpus(DataConfig(corpus=name), task="classify") for name in ("rotten_tomatoes", "imdb")]
    for split in ("train", "validation"):
        with open(folder / f"{split}.jsonl", "w") as file:
            for corpus in corpora:
                rows = corpus.splits[split]
                for text, label in zip(rows[corpus.text_column], rows[corpus.label_column]):
                    file.write(json.dumps({"text": text, "label": corpus.label_names[label]}) + "\n")


def write_reviews_behaviour(folder: Path) -> None:
    """reviews_mixed with the tuning part of the behaviour templates' sentences among its training rows
    (textgen/classify/behaviour.py: negation, contrast, intensifiers; never a held-out template);
    validation as reviews_mixed's, real reviews only. Beside it, in folder-short, the same with only
    BEHAVIOUR_REVIEWS of the IMDb reviews (shuffled, seed 0): an encoder stage a tenth as long."""
    from textgen.classify.behaviour import training_rows

    write_reviews_mixed(folder)
    added = [json.dumps({"text": text, "label": label}) for text, label in training_rows(BEHAVIOUR_ROWS)]
    with open(folder / "train.jsonl", "a") as file:
        file.write("\n".join(added) + "\n")
    short = folder.with_name(folder.name + "-short")
    short.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "validation.jsonl", short / "validation.jsonl")
    rows = (folder / "train.jsonl").read_text().splitlines()
    sentences, reviews = rows[:SENTENCES], rows[SENTENCES:-len(added)]
    random.Random(0).shuffle(reviews)
    (short / "train.jsonl").write_text("\n".join(sentences + reviews[:BEHAVIOUR_REVIEWS] + added) + "\n")


def english_mix() -> tuple[list[str], list[str], list[str]]:
    """gutenberg's training books, IMDb training reviews (shuffled, seed 0) half as long as the books,
    and gutenberg's validation books."""
    from textgen.config import DataConfig
    from textgen.data.corpus import load_corpus

    gutenberg = load_corpus(DataConfig(corpus="gutenberg"), task="lm")
    imdb = load_corpus(DataConfig(corpus="imdb"), task="lm")
    books = list(gutenberg.splits["train"][gutenberg.text_column])
    reviews, length, half = list(imdb.splits["train"][imdb.text_column]), 0, sum(len(book) + 2 for book in books) // 2
    random.Random(0).shuffle(reviews)
    chosen = []
    while length < half:
        chosen.append(reviews.pop())
        length += len(chosen[-1]) + 2
    return books, chosen, list(gutenberg.splits["validation"][gutenberg.text_column])


def write_english_mix(folder: Path) -> None:
    """The books and then the reviews of `english_mix` as one text; the validation books validate."""
    books, reviews, validation = english_mix()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n\n".join(books) + "\n\n" + "\n\n".join(reviews))
    (folder / "validation.txt").write_text("\n\n".join(validation))


def write_english_typeset(folder: Path) -> None:
    """`english_mix` with each book typed several ways (tools/typeset.py; seed 0, validation books
    seed 1), as JSON lines, which keep CRLF line ends (a .txt file is read with universal newlines)."""
    from typeset import typeset

    books, reviews, validation = english_mix()
    folder.mkdir(parents=True, exist_ok=True)
    for split, texts, seed in (("train", books, 0), ("validation", validation, 1)):
        rng = random.Random(seed)
        with open(folder / f"{split}.jsonl", "w") as file:
            for text in texts:
                file.write(json.dumps({"text": typeset(text, rng)}) + "\n")
            if split == "train":
                file.write(json.dumps({"text": "\n\n".join(reviews)}) + "\n")


def textgen(*args: str) -> str:
    """Run the textgen CLI; its stdout."""
    command = [sys.executable, "-m", "textgen", *args]
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout


def score(model: Path, corpus: str, split: str, kind: str, features: str | None = None) -> dict:
    """The model's validation figure on a corpus split (bits per char, or accuracy and calibration
    error, in fp32, with the `features` given or the classifier's own)."""
    if kind == "classifier":
        chosen = ["--features", features] if features else []
        result = json.loads(textgen("classify", "--model", str(model), "--eval", "--corpus", corpus,
                                    "--split", split, "--json", "--precision", "fp32", *chosen))
        return {"corpus": corpus, "split": split, "features": result["features"], "accuracy": result["accuracy"],
                "macro_f1": result["macro_f1"], "ece": result["ece"]}
    result = json.loads(textgen("eval", "--model", str(model), "--corpus", corpus, "--split", split, "--json"))
    return {"corpus": corpus, "split": split, "nats_per_char": result["bits_per_char"] * math.log(2),
            "bits_per_char": result["bits_per_char"], "nats_per_token": result["loss"]}


def features_section(fitted: dict, full: list[dict], half: list[dict]) -> str:
    """A stacked classifier's figures for each part alone and both: accuracy and calibration error per
    corpus, and what the stacking fitted on validation."""
    rows = "\n".join(f"| {f['corpus']} {f['split']} | `--features {f['features']}` | {f['accuracy']:.4f} | "
                     f"{h['accuracy']:.4f} | {h['ece']:.4f} |" for f, h in zip(full, half))
    calibration = "\n".join(
        f"| {name} | {fitted[name + '_accuracy']:.4f} | {fitted[name + '_ece_raw']:.4f} | "
        f"{fitted[name + '_temperature']:.3f} | {fitted[name + '_ece']:.4f} |" for name in ("recurrent", "ngram", "both"))
    return f"""
## Each part alone and both (accuracy; ECE: expected calibration error, 15 bins, after the temperature)

| split | features | float32 run | float16 (shipped) | ECE (shipped) |
| --- | --- | ---: | ---: | ---: |
{rows}

## What stacking fitted (both validation splits together, {fitted['val_examples']:,} texts)

`--features both` labels with (1 - w) x recurrent logits + w x n-gram logits, w = {fitted['ngram_weight']:.2f}
(fitted with each temperature by validation log-likelihood); the n-grams kept epoch {fitted['ngram_epoch']} of 3.
A text whose weighted n-gram logits lead by more than {fitted['decisive_margin']:.2f}, the widest spread of the
recurrent part's share on any validation text, is labelled by the n-grams alone (at their temperature)
without being read by the encoder: {fitted['decisive_share']:.1%} of the validation texts, none of whose answers
that changes.

| features | accuracy | ECE at temperature 1 | temperature | ECE after it |
| --- | ---: | ---: | ---: | ---: |
{calibration}
"""


def card(name: str, spec: dict, command: str, info: dict, full: list[dict], half: list[dict], sha256: str,
         size: int, extra: str = "") -> str:
    """The model card in Markdown."""
    from textgen.nn.precision import cpu_name
    packing = ", an\nn-gram table relative to its first class" if spec.get("stacked") else ""
    # the shipped file holds what every stage before the stacking trained, so restacking alone is always sound
    restack = (f"; `--from-stage {spec['run']}` stacks the n-grams afresh on the shipped encoder"
               if spec.get("stacked") else "")
    metric = "accuracy" if info["kind"] == "classifier" else "bits_per_char"
    rows = "\n".join(f"| {f['corpus']} {f['split']} | {f[metric]:.4f} | {h[metric]:.4f} | {h[metric] - f[metric]:+.4f} |"
                     for f, h in zip(full, half) if f.get("features") in (None, "both"))
    return f"""# {name}

{spec['about']}

| | |
| --- | --- |
| kind | {info['kind']} |
| tokenizer | {info['tokenizer']} |
| parameters | {info['parameters']:,} |
| weights | float16, {size / 1e6:.1f} MB, sha256 `{sha256}` |
| training data | {spec['data']} |
| trained (last stage) | {info['last_stage']}, {datetime.date.today().isoformat()}, on {cpu_name()} |

## How it was trained

{command}

then packed with `python tools/build_models.py --pack-only --only {name}` (weights cast to float16{packing}; no
optimizer state). `python tools/build_models.py --only {name}` trains every stage again and packs the result{restack}.

## Figures ({'accuracy' if metric == 'accuracy' else 'bits per character'})

| split | float32 run | float16 (shipped) | change |
| --- | ---: | ---: | ---: |
{rows}
{extra}"""


def plan_stages(name: str, spec: dict, from_stage: str | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """The `textgen train` arguments of each stage that builds model `name`, and of the stages skipped:
    with `from_stage` (a run name), that stage and those after it run, the first from the bundled file
    in place of the runs before it."""
    run = RUNS / spec.get("run", name)
    # a rebuild starts each run again: --overwrite replaces what an earlier build left
    stages = []  # (run name, arguments)
    for out, before in spec.get("before", {}).items():
        # one stage, or a first stage and the resumed ones that followed it
        first, *resumed = before if isinstance(before[0], list) else [before]
        stages.append((out, [*first, "--out", str((RUNS / out).relative_to(ROOT)), "--overwrite"]))
        stages += [(out, [*extra, "--resume", "--out", str((RUNS / out).relative_to(ROOT))]) for extra in resumed]
    stages.append((run.name, [*spec["train"], "--out", str(run.relative_to(ROOT)), "--overwrite"]))
    stages += [(run.name, [*extra, "--resume", "--out", str(run.relative_to(ROOT))])
               for extra in spec.get("resume", [])]
    skipped = []
    if from_stage:
        names = [out for out, _ in stages]
        if from_stage not in names:
            raise ValueError(f"{name} has no stage {from_stage!r}; its stages: {', '.join(dict.fromkeys(names))}")
        skipped, stages = stages[:names.index(from_stage)], stages[names.index(from_stage):]
        first = stages[0][1]
        if skipped and "--init-from" not in first:
            raise ValueError(f"stage {from_stage!r} starts from nothing: build {name} whole")
        if skipped:
            # the bundled file holds what the skipped stages trained (a stacked classifier's n-grams
            # stay behind when its recurrent part trains on, and are stacked afresh)
            first[first.index("--init-from") + 1] = str((PRETRAINED / f"{name}.pt").relative_to(ROOT))
    return [stage for _, stage in stages], [stage for _, stage in skipped]


def skipped_intro(skipped: list[list[str]]) -> str:
    """The card's account of the stages a build started part-way did not run."""
    if not skipped:
        return ""
    return ("These stages were not rerun in this build; the bundled model kept what they trained:\n\n"
            + "".join(f"    textgen train {shlex.join(stage)}\n" for stage in skipped)
            + "\nthen, from the bundled model's file:\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(MODELS), action="append", help="build only these models")
    parser.add_argument("--pack-only", action="store_true", help="skip training; pack the existing runs")
    parser.add_argument("--from-stage", metavar="RUN",
                        help="start at this stage, from the bundled file in place of the runs before it, which are "
                             "not trained again: the file must hold what they trained, as a stacked model's does "
                             "for its last run (sentiment-ngrams: new n-grams on the shipped encoder)")
    parser.add_argument("--plan", action="store_true",
                        help="print each model's stages (and those --from-stage skips) as JSON; train nothing")
    args = parser.parse_args()
    plans = {}  # every plan before any training, so that a bad --from-stage stops the build at once
    for name in args.only or list(MODELS):
        try:
            plans[name] = plan_stages(name, MODELS[name], args.from_stage)
        except ValueError as error:
            parser.error(str(error))
    if args.plan:
        for name, (stages, skipped) in plans.items():
            print(json.dumps({"model": name, "stages": stages, "skipped": skipped}))
        return
    sys.path.insert(0, str(ROOT))
    from textgen.nn.checkpoint import describe_checkpoint, export_weights, load_checkpoint
    from textgen.classify.stacking import NGRAM_EPOCHS, NGRAM_RUNS

    for name, (stages, skipped) in plans.items():
        spec = MODELS[name]
        run = RUNS / spec.get("run", name)
        command = "\n".join("    textgen train " + shlex.join(stage) for stage in stages)
        if not args.pack_only:
            for data in spec.get("prepare", []):
                {"reviews_mixed": write_reviews_mixed, "reviews_behaviour": write_reviews_behaviour,
                 "english_mix": write_english_mix,
                 "english_typeset": write_english_typeset}[data](RUNS / "data" / data)
            for stage in stages:
                textgen("train", *stage)
        packed = export_weights(run, PRETRAINED / f"{name}.pt")
        info = describe_checkpoint(packed)
        last = load_checkpoint(run / "last.pt")
        minutes = last["elapsed"] / 60
        # a stacked run's "step" is the n-gram epoch it kept
        info["last_stage"] = (f"hashed n-grams stacked in {minutes:.1f} minutes ({NGRAM_RUNS} runs averaged, epoch "
                              f"{last['step']} of {NGRAM_EPOCHS} kept)" if spec.get("stacked") else
                              f"{last['step']:,} steps in {minutes:.0f} minutes")
        kind = "classifier" if info["kind"] == "classifier" else "language_model"
        choices = spec.get("features", [None])
        full = [score(run, corpus, split, kind, features) for corpus, split in spec["scores"] for features in choices]
        half = [score(packed, corpus, split, kind, features) for corpus, split in spec["scores"] for features in choices]
        sha256 = hashlib.sha256(packed.read_bytes()).hexdigest()
        extra = features_section(last["metrics"], full, half) if spec.get("features") else ""
        (PRETRAINED / f"{name}.md").write_text(card(name, spec, skipped_intro(skipped) + command, info, full, half, sha256,
                                                    packed.stat().st_size, extra))
        print(json.dumps({"model": name, "command": command, "float32": full, "float16": half,
                          "bytes": packed.stat().st_size, "sha256": sha256}), flush=True)


if __name__ == "__main__":
    main()
