"""Three ways for hashed n-grams to read negation, each trained alone the same way (NB-scaled
logistic regression on binarized buckets, Adam, 2 epochs, texts of rotten_tomatoes and IMDb
training rows): plain (no scopes), marked (`--negation`: a negated word hashed as another word,
"¬bad"), and signed (a negated word's own buckets counted against it: "not bad" reads as minus
"bad", so what the n-grams know of every word carries over to its negation: `--negation
--negation-sign`). Reports validation accuracy on both corpora and the held-out behaviour templates
(textgen/classify/behaviour.py). Needs the reviews_mixed folder that tools/build_models.py writes.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_negation_signs.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import harness

from textgen.classify.behaviour import cases, unique
from textgen.data.ngrams import ngram_buckets

BUCKETS, LONGEST, SUBWORDS = 1 << 19, 3, 5  # the bundled sentiment's n-gram settings
EPOCHS, BATCH, LR = 2, 64, 0.05
RT_VALIDATION = 1066  # reviews_mixed's validation rows: rotten_tomatoes' first, then IMDb's


def features(text: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """A text's buckets and their signs under `mode` (textgen's own hashing: `ngram_buckets`)."""
    found = ngram_buckets(text, BUCKETS, LONGEST, SUBWORDS, negation=mode != "plain", negation_sign=mode == "signed")
    return np.where(found < 0, -1 - found, found), np.where(found < 0, -1.0, 1.0).astype(np.float32)


def rows(path: Path) -> tuple[list[str], np.ndarray]:
    """Texts and labels (1: pos) of a jsonl file."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["text"] for r in records], np.array([int(r["label"] == "pos") for r in records])


def main() -> None:
    parser = harness.parser(__doc__, threads=1, seed=0)
    parser.add_argument("--data", type=Path, default=Path("runs/bundled/data/reviews_mixed"))
    parser.add_argument("--modes", default="plain,marked,signed")
    parser.add_argument("--limit", type=int, default=None, help="training texts (default: all)")
    args = harness.parse(parser, quick={"limit": 500, "modes": "signed"})
    train_texts, train_labels = rows(args.data / "train.jsonl")
    train_texts, train_labels = train_texts[:args.limit], train_labels[:args.limit]
    validation_texts, validation_labels = rows(args.data / "validation.jsonl")
    held_out = unique(cases("held_out"))
    results = {}
    for mode in args.modes.split(","):
        train = [features(text, mode) for text in train_texts]
        # NB-SVM's ratios, a negated occurrence counting for the other class
        counts = np.ones((2, BUCKETS))
        for (buckets, signs), label in zip(train, train_labels):
            counts[label, buckets[signs > 0]] += 1
            counts[1 - label, buckets[signs < 0]] += 1
        shares = counts / counts.sum(1, keepdims=True)
        ratios = torch.tensor(np.log(shares[1] / shares[0]), dtype=torch.float32)
        table = torch.nn.EmbeddingBag(BUCKETS, 1, mode="sum")
        torch.nn.init.zeros_(table.weight)
        bias = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.Adam([table.weight, bias], lr=LR)

        def logits(bags: list[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
            ids = torch.from_numpy(np.concatenate([bag[0] for bag in bags]))
            signs = torch.from_numpy(np.concatenate([bag[1] for bag in bags]))
            offsets = torch.from_numpy(np.cumsum([0] + [len(bag[0]) for bag in bags[:-1]]).astype(np.int64))
            sizes = torch.tensor([max(len(bag[0]), 1) for bag in bags], dtype=torch.float32)
            return table(ids, offsets, per_sample_weights=signs * ratios[ids]).squeeze(1) / sizes.sqrt() + bias

        for epoch in range(EPOCHS):
            order = np.random.default_rng([args.seed, epoch]).permutation(len(train))
            for start in range(0, len(order), BATCH):
                batch = order[start:start + BATCH]
                loss = F.binary_cross_entropy_with_logits(logits([train[i] for i in batch]),
                                                          torch.tensor(train_labels[batch], dtype=torch.float32))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            said = (logits([features(text, mode) for text in validation_texts]) > 0).numpy().astype(int)
            behaviour = torch.sigmoid(logits([features(case.text, mode) for case in held_out])).numpy()
        passed: dict[str, list[bool]] = {}
        for case, probability in zip(held_out, behaviour):
            passed.setdefault(case.capability, []).append(bool(probability > 0.5) == (case.label == "pos"))
        results[mode] = {
            "rotten_tomatoes": round(float((said[:RT_VALIDATION] == validation_labels[:RT_VALIDATION]).mean()), 4),
            "imdb": round(float((said[RT_VALIDATION:] == validation_labels[RT_VALIDATION:]).mean()), 4),
            "held_out": {name: round(float(np.mean(values)), 3) for name, values in passed.items()}}
        harness.progress({"mode": mode, **results[mode]})
    harness.report(args, {"ngrams_alone": results})


if __name__ == "__main__":
    main()
