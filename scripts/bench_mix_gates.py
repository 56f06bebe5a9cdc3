"""Whether the encoder should overrule the n-grams on some kinds of text: a sentiment classifier's
parts mixed with one weight per part for each kind of text (`--groups`: one kind; with or without a
negation word; negation, a contrast word and short or long, eight kinds), fitted by log-likelihood
on half of the validation texts (rotten_tomatoes and IMDb) and scored on the other half, both ways
round, with the tuning templates among the fitted rows at a weight (`--template-weights`, their
share of the validation rows' weight; 0: none). The held-out templates are labelled by the weights
fitted on all validation texts. `--encoder RUN` adds another classifier's encoder to the mix.

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_mix_gates.py --model sentiment
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import harness

from textgen.classify.behaviour import cases, unique
from textgen.classify.predict import ngram_logits, text_buckets
from textgen.classify.stacking import _recurrent_logits
from textgen.config import DataConfig
from textgen.data.corpus import load_corpus
from textgen.data.ngrams import NEGATIONS, words
from textgen.recipes.models import load

CONTRASTS = frozenset({"but", "however", "although", "though", "yet"})
SHORT_WORDS = 60  # rotten_tomatoes' sentences are shorter, IMDb's reviews longer


def kind_of(text: str, groups: str) -> int:
    """Which weights a text is mixed with under `groups`."""
    found = words(text)
    negated = any(word in NEGATIONS for word in found) or any(f"n{quote}t" in text.lower() for quote in "'\u2019")
    if groups == "one":
        return 0
    if groups == "negation":
        return int(negated)
    return int(negated) + 2 * int(any(word in CONTRASTS for word in found)) + 4 * int(len(found) < SHORT_WORDS)


def fit(parts: np.ndarray, labels: np.ndarray, kinds: np.ndarray, weights: np.ndarray, count: int) -> np.ndarray:
    """(kinds, parts) mixing weights of the parts' logit differences, by weighted log-likelihood."""
    x, y, w = (torch.tensor(array, dtype=torch.float64) for array in (parts, labels, weights))
    k = torch.as_tensor(kinds)
    mix = torch.full((count, parts.shape[1]), 1.0 / parts.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([mix], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        losses = F.binary_cross_entropy_with_logits((x * mix[k]).sum(1), y, reduction="none")
        loss = (w * losses).sum() / w.sum() + 1e-4 * mix.pow(2).sum()  # a kind with no rows stays near 0
        loss.backward()
        return loss
    optimizer.step(closure)
    return mix.detach().numpy()


def main() -> None:
    parser = harness.parser(__doc__, threads=1, seed=0)
    parser.add_argument("--model", default="sentiment", help="a classifier with n-grams: bundled name, run or .pt")
    parser.add_argument("--encoder", action="append", default=[], help="another classifier whose encoder joins")
    parser.add_argument("--groups", default="one,negation,all")
    parser.add_argument("--template-weights", default="0,0.03,0.1,0.3")
    parser.add_argument("--limit", type=int, default=0, help="texts of each validation split (0: all)")
    args = harness.parse(parser, quick={"limit": 100, "groups": "one,all", "template_weights": "0,0.1"})
    texts, labels, sources, capabilities = [], [], [], []
    for corpus_name in ("rotten_tomatoes", "imdb"):
        corpus = load_corpus(DataConfig(corpus=corpus_name), task="classify", evaluate="validation")
        rows = corpus.splits["validation"]
        count = args.limit or len(rows)
        names = list(corpus.label_names)
        texts += list(rows[corpus.text_column][:count])
        labels += [int(names[label] == "pos") for label in rows[corpus.label_column][:count]]
        sources += [corpus_name] * count
        capabilities += [""] * count
    for part in ("tuning", "held_out"):
        found = unique(cases(part))[:args.limit * 10 or None]
        texts += [case.text for case in found]
        labels += [int(case.label == "pos") for case in found]
        sources += [part] * len(found)
        capabilities += [case.capability for case in found]
    labels, sources, capabilities = np.array(labels), np.array(sources), np.array(capabilities)
    classifier = load(args.model)
    with torch.no_grad():
        ngrams = ngram_logits(classifier.model, text_buckets(classifier.model.config, texts)).float().numpy()
    columns = []
    for run in [args.model, *args.encoder]:
        encoder = classifier if run == args.model else load(run)
        columns.append(_recurrent_logits(encoder.model, encoder.tokenizer, texts, torch.device("cpu"), "bf16"))
        harness.progress({"encoder": run, "texts": len(texts)})
    parts = np.stack([logits[:, 1] - logits[:, 0] for logits in [*columns, ngrams]], 1)

    validation = np.flatnonzero(np.isin(sources, ["rotten_tomatoes", "imdb"]))
    tuning, held_out = np.flatnonzero(sources == "tuning"), np.flatnonzero(sources == "held_out")
    halves = np.random.default_rng(args.seed).permutation(validation)
    halves = [halves[::2], halves[1::2]]
    results = []
    for groups in args.groups.split(","):
        kinds = np.array([kind_of(text, groups) for text in texts])
        count = int(kinds.max()) + 1
        for template_weight in map(float, args.template_weights.split(",")):
            def fitted(rows: np.ndarray) -> np.ndarray:
                extra = tuning if template_weight else tuning[:0]
                weights = np.r_[np.ones(len(rows)), np.full(len(extra), template_weight * len(rows) / max(len(extra), 1))]
                chosen = np.r_[rows, extra]
                return fit(parts[chosen], labels[chosen], kinds[chosen], weights, count)

            def right(mix: np.ndarray, rows: np.ndarray) -> np.ndarray:
                return ((parts[rows] * mix[kinds[rows]]).sum(1) > 0) == (labels[rows] == 1)

            correct = np.zeros(len(texts), bool)
            for fit_half, score_half in (halves, halves[::-1]):
                correct[score_half] = right(fitted(fit_half), score_half)
            mix = fitted(validation)
            passed = right(mix, held_out)
            results.append({
                "groups": groups, "template_weight": template_weight,
                **{f"{name}_accuracy": round(float(correct[sources == name].mean()), 4) for name in ("rotten_tomatoes", "imdb")},
                "held_out": {name: round(float(passed[capabilities[held_out] == name].mean()), 3)
                             for name in dict.fromkeys(capabilities[held_out])},
                "weights": mix.round(3).tolist()})
            harness.progress(results[-1])
    harness.report(args, {"model": args.model, "encoders": [args.model, *args.encoder], "results": results})


if __name__ == "__main__":
    main()
