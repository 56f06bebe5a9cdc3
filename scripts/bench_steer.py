"""How well labels steer a conditioned language model, judged by the bundled sentiment classifier.

For each label of the conditioned model (--model, trained with --condition label on imdb), N samples
generated under that label, and N unconditioned samples from the model it was fine-tuned from
(--baseline) and from the conditioned model with no label; the judge (--judge) labels them all.
Reports the share judged as the requested label, the judge's own accuracy on real IMDb validation
reviews (whole, and cut to the samples' length), and bits per character on IMDb validation of both
models (the conditioned one with the label withheld, and with it). Prints one JSON report (each
guidance's shares also on stderr as they are measured).

    python scripts/bench_steer.py --model runs/steer/reviews-label --samples 200 --length 400 --guidance 0,1,2
"""

from __future__ import annotations

import argparse

import harness
import numpy as np

import textgen
from textgen.data.batches import StreamBatches, label_array, token_array
from textgen.config import DataConfig, SampleConfig
from textgen.data.corpus import count_chars, load_corpus
from textgen.training.validation import language_model_metrics
from textgen.generate.sampling import generate


def judged(judge, texts: list[str]) -> list[str]:
    """The judge's label of each text."""
    return [prediction.label for prediction in judge.classify(texts)]


def samples(generator, count: int, length: int, temperature: float, seed: int, label: str | None,
            guidance: float = 0.0) -> list[str]:
    """`count` samples of `length` characters, under `label` (None: no label) with `guidance`."""
    settings = dict(num_samples=count, length=length, temperature=temperature, seed=seed, guidance=guidance)
    config = SampleConfig(label=(label,) if label else (), **settings)
    return [sample.text for sample in generate(generator.model, generator.tokenizer, "", config, generator.device)]


def bits_per_char(generator, tokens, labels, chars_per_token: float, max_windows: int | None) -> dict:
    """Bits per character on IMDb validation: without labels, and for a conditioned model with them."""
    streams = StreamBatches(tokens, 16, 256, labels=labels)
    device = generator.device
    result = {"no_label": language_model_metrics(generator.model, streams, chars_per_token, device,
                                                 max_windows=max_windows)["bits_per_char"]}
    if generator.model.config.label_names:
        result["with_label"] = language_model_metrics(generator.model, streams, chars_per_token, device,
                                                      max_windows=max_windows, with_labels=True)["bits_per_char"]
    return result


def main() -> None:
    parser = harness.parser(__doc__, seed=0)
    parser.add_argument("--model", default="runs/steer/reviews-label", help="the conditioned language model")
    parser.add_argument("--baseline", default="reviews", help="the unconditioned model it was fine-tuned from")
    parser.add_argument("--judge", default="sentiment", help="the classifier that labels the samples")
    parser.add_argument("--samples", type=int, default=200, help="samples per label (and unconditioned)")
    parser.add_argument("--length", type=int, default=400, help="characters per sample")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--guidance", type=lambda text: [float(value) for value in text.split(",")], default=[0.0],
                        help="comma-separated --guidance values to measure steering at (default: 0)")
    parser.add_argument("--val-windows", type=int, default=None,
                        help="windows of 16 x 256 tokens of IMDb validation to score (default: all)")
    parser.add_argument("--judge-reviews", type=int, default=None, help="validation reviews the judge reads "
                                                                       "(default: all)")
    parser.add_argument("--stages", default="steer,judge,bits",
                        help="what to measure, comma-separated: steer (the samples), judge (its accuracy on real "
                             "reviews), bits (bits per character)")
    args = harness.parse(parser, quick={"model": "reviews-label", "samples": 2, "length": 40, "val_windows": 1,
                                        "judge_reviews": 8})
    conditioned = textgen.load(args.model, "cpu", "language_model")
    baseline = textgen.load(args.baseline, "cpu", "language_model")
    judge = textgen.load(args.judge, "cpu", "classifier")
    names = list(conditioned.model.config.label_names)
    result = {"model": args.model, "baseline": args.baseline, "judge": args.judge, "labels": names,
              "samples_per_label": args.samples, "length": args.length, "temperature": args.temperature,
              "seed": args.seed}

    stages = set(args.stages.split(","))
    if "steer" in stages:
        steer(args, conditioned, baseline, judge, names, result)
    corpus = load_corpus(DataConfig(corpus="imdb"), task="lm", condition=conditioned.model.config.condition)
    if "judge" in stages:
        rows = corpus.splits["validation"]
        if args.judge_reviews:
            rows = rows.select(range(0, len(rows), max(1, len(rows) // args.judge_reviews)))
        reviews, truth = list(rows[corpus.text_column]), [names[i] for i in rows[corpus.label_column]]
        for name, texts in (("judge_accuracy_whole_reviews", reviews),
                            ("judge_accuracy_first_chars", [text[:args.length] for text in reviews])):
            result[name] = float(np.mean([a == b for a, b in zip(judged(judge, texts), truth)]))
        result["judge_reviews"] = len(reviews)
    if "bits" in stages:
        tokens = token_array(corpus, "validation", conditioned.tokenizer)
        labels = label_array(corpus, "validation", conditioned.tokenizer)
        chars_per_token = count_chars(corpus, "validation") / len(tokens)
        result["val_windows"] = args.val_windows or "all"
        result["bits_per_char_conditioned"] = bits_per_char(conditioned, tokens, labels, chars_per_token,
                                                            args.val_windows)
        result["bits_per_char_baseline"] = bits_per_char(baseline, tokens, labels, chars_per_token,
                                                         args.val_windows)["no_label"]
        result["bits_per_char_no_label_minus_baseline"] = (result["bits_per_char_conditioned"]["no_label"]
                                                           - result["bits_per_char_baseline"])
    harness.report(args, result)


def steer(args: argparse.Namespace, conditioned, baseline, judge, names: list[str], result: dict) -> None:
    """The judged shares of samples under each label (at each guidance) and of unconditioned ones."""
    result["steered_share"] = {}  # guidance -> label -> share of its samples the judge gives that label
    for guidance in args.guidance:
        steered = {}
        for label in names:
            texts = samples(conditioned, args.samples, args.length, args.temperature, args.seed, label, guidance)
            steered[label] = sum(verdict == label for verdict in judged(judge, texts)) / len(texts)
        steered["mean"] = sum(steered.values()) / len(names)
        result["steered_share"][str(guidance)] = steered
        harness.progress({"guidance": guidance, **steered})
    for name, generator, label in (("baseline", baseline, None), ("no_label", conditioned, None)):
        verdicts = judged(judge, samples(generator, args.samples, args.length, args.temperature, args.seed, label))
        result[f"{name}_judged_share"] = {label: verdicts.count(label) / len(verdicts) for label in names}


if __name__ == "__main__":
    main()
