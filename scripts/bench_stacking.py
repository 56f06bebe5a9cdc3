"""Hashed n-grams beside a trained encoder: stacked (what `textgen train --features both` does) against
trained together with the head, on one labelled corpus, the encoder frozen.

The encoder of --model reads each text once (its pooled features are then fixed); each variant trains
on the training texts and is scored on the validation texts:
- stacked: the model's head as it is, n-grams trained alone (four runs averaged, as stacking does),
  their mixing weight and temperature fitted on validation;
- together: the head and the n-gram table trained at once, their logits summed;
- residual: the n-gram table trained beside the fixed head, their logits summed;
- joined: a 16-wide n-gram vector joined with the pooled features before a new head.
Prints one JSON object.

    python scripts/bench_stacking.py --model sentiment --corpus rotten_tomatoes
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textgen.data.batches import LabelledBatches
from textgen.nn.checkpoint import load_classifier
from textgen.config import DataConfig
from textgen.data.corpus import load_corpus
from textgen.nn.model import Classifier, bag_logits
from textgen.data.ngrams import ngram_buckets, pack_bags
from textgen.nn.precision import autocast
from textgen.classify.stacking import NGRAM_BATCH, NGRAM_LR, fit_mixture, nb_ratios, train_ngrams

BUCKETS, WIDTH = 262144, 16


@torch.inference_mode()
def pooled_features(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """What the head reads (texts, 3 x width), the encoder in bf16, each text as the model reads it."""
    seen = []
    hook = model.head.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].float()))
    ids = [np.asarray(tokenizer.encode(text)) for text in texts]
    config = model.config
    batches = LabelledBatches(ids, np.zeros(len(ids)), 32, tokenizer.pad_id, max_len=config.max_len,
                              long_text=config.long_text, shuffle=False)
    order = []
    try:
        for rows in batches.batch_rows(0):
            batch, lengths, _ = batches.batch(rows)
            with autocast("bf16", torch.device("cpu")):
                model.recurrent_logits(batch, lengths)
            order.extend(rows.tolist())
    finally:
        hook.remove()
    features = torch.empty(len(texts), seen[0].shape[1])
    features[order] = torch.cat(seen)
    return features


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return round(float((logits.argmax(1) == labels).float().mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sentiment", help="the classifier whose encoder and head are used")
    parser.add_argument("--corpus", default="rotten_tomatoes", help="a labelled corpus with train and validation")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the variants trained together")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer, _ = load_classifier(args.model, "cpu")
    model.float().eval()
    corpus = load_corpus(DataConfig(corpus=args.corpus), task="classify")
    data = {}
    for split in ("train", "validation"):
        rows = corpus.splits[split]
        texts = list(rows[corpus.text_column])
        data[split] = (pooled_features(model, tokenizer, texts), torch.as_tensor(np.asarray(rows[corpus.label_column])),
                       [ngram_buckets(text, BUCKETS, 3) for text in texts])
    (train_x, train_y, train_bags), (val_x, val_y, val_bags) = data["train"], data["validation"]
    scale = nb_ratios(train_bags, train_y.numpy(), BUCKETS)
    classes = len(corpus.label_names)
    with torch.no_grad():
        head_logits = model.head(val_x)
    result = {"model": args.model, "corpus": args.corpus, "train": len(train_y), "validation": len(val_y),
              "recurrent": accuracy(head_logits, val_y)}

    def fit(head: nn.Module, width: int, train_head: bool, joined: bool, epochs: int):
        """Train the n-gram table beside `head` (and the head if `train_head`); validation logits after each epoch."""
        table = torch.zeros(BUCKETS, width, requires_grad=True)
        bias = torch.zeros(width, requires_grad=True)
        groups = [{"params": [table, bias], "lr": NGRAM_LR}]
        if train_head:
            groups.append({"params": list(head.parameters()), "lr": 1e-3})
        optimizer = torch.optim.Adam(groups)
        rng = np.random.default_rng(0)

        def logits(x, bags, training):
            ngrams = bag_logits(table, bias, *pack_bags(bags), scale)
            head.train(training)
            return head(torch.cat([x, ngrams], 1)) if joined else head(x) + ngrams

        per_epoch = []
        for _ in range(epochs):
            for rows in np.array_split(rng.permutation(len(train_y)), max(1, len(train_y) // NGRAM_BATCH)):
                loss = F.cross_entropy(logits(train_x[rows], [train_bags[r] for r in rows], True), train_y[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                per_epoch.append(logits(val_x, val_bags, False))
        return per_epoch

    # stacked: what `textgen train --features both` trains, each epoch's averaged n-grams mixed on validation
    result["stacked"] = []

    def judge(ngrams: torch.Tensor) -> dict[str, float]:
        fitted = fit_mixture(head_logits, ngrams.float(), val_y)
        result["stacked"].append({"ngram_epochs": len(result["stacked"]) + 1, "ngram": accuracy(ngrams, val_y),
                                  "ngram_weight": round(fitted.ngram_weight, 2),
                                  "both": round(fitted.metrics["both_accuracy"], 4)})
        return {"val_loss": fitted.metrics["val_loss"]}

    stacked = Classifier(model.model_config, dataclasses.replace(model.config, ngram_buckets=BUCKETS, char_ngrams=0))
    train_ngrams(stacked, train_bags, train_y.numpy(), val_bags, judge, seed=0)
    joined_head = nn.Sequential(nn.Dropout(0.5), nn.Linear(val_x.shape[1] + WIDTH, 64), nn.ReLU(), nn.Dropout(0.5),
                                nn.Linear(64, classes))
    variants = {"together": (copy.deepcopy(model.head), classes, True, False),
                "residual": (copy.deepcopy(model.head), classes, False, False),
                "joined": (joined_head, WIDTH, True, True)}
    for name, (head, width, train_head, joined) in variants.items():
        per_epoch = fit(head, width, train_head, joined, args.epochs)
        result[name] = [accuracy(logits, val_y) for logits in per_epoch]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
