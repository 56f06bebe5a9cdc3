"""Stacking hashed word n-grams on a trained classifier: the recurrent part stays as it is, a
fastText-style bag of hashed n-grams (Naive-Bayes weighted, as Wang and Manning's NB-SVM) learns the
strong lexical cues from the training texts, and the weight that mixes the two parts' logits and
each part's temperature are fitted on the validation texts, which the recurrent part never trained
on. Cheap: the encoder reads only the validation texts, once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from textgen.nn.checkpoint import save_checkpoint
from textgen.classify.predict import ngram_logits, predict, text_buckets
from textgen.config import FEATURES, ClassifierConfig, DataConfig, to_dict
from textgen.data.corpus import load_corpus
from textgen.metrics import expected_calibration_error, match_labels
from textgen.nn.model import Classifier, lead
from textgen.data.ngrams import pack_bags
from textgen.data.tokenizer import Tokenizer

log = logging.getLogger("textgen")

NB_SMOOTHING = 1.0  # NB-SVM's alpha: a count added to each bucket of each class
# Adam on the n-gram table: measured on rotten_tomatoes + IMDb, where validation accuracy peaks within
# two or three epochs (the best one is kept)
NGRAM_LR, NGRAM_BATCH, NGRAM_EPOCHS = 0.05, 64, 3
# Runs over other shuffles, averaged: the average of linear models is one table of the same size, and
# four of them scored 0.4-0.6 points above one run on both validation splits (docs/sentiment.md)
NGRAM_RUNS = 4
MIX_GRID = np.linspace(0.0, 1.0, 51)  # n-gram weights tried for --features both


@dataclasses.dataclass
class Fitted:
    """What stacking fitted on validation, and what each part scores there."""

    ngram_weight: float
    temperatures: tuple[float, float, float]
    decisive_margin: float
    metrics: dict[str, float]


def nb_ratios(bags: list[np.ndarray], labels: np.ndarray, buckets: int) -> torch.Tensor:
    """Per bucket, NB-SVM's log-count ratio log(p/|p|) - log(q/|q|) of texts of class 1 against the
    others (binary labels; for more classes, each bucket's largest such ratio over the classes)."""
    classes = max(int(labels.max()) + 1, 2)
    counts = np.full((classes, buckets), NB_SMOOTHING)
    for bag, label in zip(bags, labels):
        counts[label, bag[bag >= 0]] += 1.0
        # a negated word (--negation-sign, held as -(bucket + 1)) is evidence for the other classes
        against = -1 - bag[bag < 0]
        for other in range(classes):
            if other != label:
                counts[other, against] += 1.0 / (classes - 1)
    shares = counts / counts.sum(axis=1, keepdims=True)
    ratios = [np.log(shares[c] / np.delete(shares, c, axis=0).mean(axis=0)) for c in range(len(shares))]
    ratio = ratios[1] if len(shares) == 2 else np.abs(np.stack(ratios)).max(axis=0)
    return torch.tensor(ratio, dtype=torch.float32)


def train_ngrams(model: Classifier, train_bags: list[np.ndarray], train_labels: np.ndarray,
                 val_bags: list[np.ndarray], judge: Callable[[torch.Tensor], dict[str, float]], seed: int,
                 epochs: int = NGRAM_EPOCHS, runs: int = NGRAM_RUNS) -> dict:
    """Fit the n-gram part (NB-weighted logistic regression on binarized hashed n-grams, by Adam;
    `runs` runs over other shuffles, their weights averaged epoch by epoch), keeping the epoch whose
    validation logits `judge` gives the lowest "val_loss"; the NB ratios are then folded into its
    weights, so the checkpoint needs nothing else. Returns the best epoch's figures."""
    scale = nb_ratios(train_bags, train_labels, model.config.ngram_buckets)
    parameters = [model.ngrams.weight, model.ngram_bias]
    labels = torch.from_numpy(train_labels)
    sums = [[torch.zeros_like(p) for p in parameters] for _ in range(epochs)]
    for run in range(runs):
        with torch.no_grad():
            for parameter in parameters:
                parameter.zero_()
        optimizer = torch.optim.Adam(parameters, lr=NGRAM_LR)
        rng = np.random.default_rng([seed, run])
        log.info("n-grams, run %d of %d: %d epochs", run + 1, runs, epochs)
        for epoch in range(epochs):
            for rows in np.array_split(rng.permutation(len(train_bags)), max(1, len(train_bags) // NGRAM_BATCH)):
                loss = F.cross_entropy(model.ngram_logits(*pack_bags([train_bags[row] for row in rows]), scale),
                                       labels[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            for total, parameter in zip(sums[epoch], parameters):
                total += parameter.detach() / runs
    best: dict[str, Any] = {"val_loss": float("inf")}
    for epoch, averaged in enumerate(sums, start=1):
        with torch.no_grad():
            for parameter, mean in zip(parameters, averaged):
                parameter.copy_(mean)
            figures = judge(ngram_logits(model, val_bags, scale))
        log.info("n-grams, epoch %d, validation: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
        if figures["val_loss"] < best["val_loss"]:
            best = {**figures, "epoch": epoch, "weights": [p.detach().clone() for p in parameters]}
    with torch.no_grad():
        model.ngrams.weight.copy_(best["weights"][0] * scale[:, None])
        model.ngram_bias.copy_(best["weights"][1])
    return {"ngram_epoch": best["epoch"]}


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises the negative log-likelihood of `labels` (Guo et al. 2017)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def fit_mixture(recurrent: torch.Tensor, ngram: torch.Tensor, labels: torch.Tensor) -> Fitted:
    """The n-gram weight of `both` and each choice's temperature, by validation log-likelihood,
    with each choice's accuracy and calibration error (ECE, 15 bins) before and after its temperature."""
    def nll(logits: torch.Tensor) -> float:
        return float(F.cross_entropy(logits, labels))

    mixes = [(weight, (1 - weight) * recurrent + weight * ngram) for weight in MIX_GRID]
    fitted = [(weight, fit_temperature(logits, labels), logits) for weight, logits in mixes]
    weight, _, _ = min(fitted, key=lambda item: nll(item[2] / item[1]))
    both = (1 - weight) * recurrent + weight * ngram
    metrics: dict[str, float] = {}
    temperatures = []
    for name, logits in zip(FEATURES, (recurrent, ngram, both)):
        temperature = fit_temperature(logits, labels)
        temperatures.append(temperature)
        numpy_labels = labels.numpy()
        metrics[f"{name}_accuracy"] = float((logits.argmax(1) == labels).float().mean())
        metrics[f"{name}_ece_raw"] = expected_calibration_error(torch.softmax(logits, 1).numpy(), numpy_labels)
        metrics[f"{name}_ece"] = expected_calibration_error(torch.softmax(logits / temperature, 1).numpy(),
                                                             numpy_labels)
    metrics["accuracy"] = metrics["both_accuracy"]
    metrics["val_examples"] = len(labels)
    metrics["val_loss"] = nll(both / temperatures[2])
    # Beyond the widest spread the recurrent part's share of the mix gave any validation text, it
    # cannot overturn the n-grams' answer (on validation, provably): such texts skip the encoder.
    # (At least a hair above 0, which means "read every text": with weight 1 the encoder counts for nothing.)
    margin = max(float(((1 - weight) * (recurrent.max(1).values - recurrent.min(1).values)).max()), 1e-6)
    metrics["decisive_margin"] = margin
    metrics["decisive_share"] = float((lead(weight * ngram) > margin).float().mean())
    return Fitted(float(weight), tuple(temperatures), margin, metrics)


def stack_ngrams(base: Classifier, tokenizer: Tokenizer, data: DataConfig, classifier_config: ClassifierConfig,
                 seed: int, configs: dict[str, Any], run_dir: Path, device: torch.device, precision: str
                 ) -> dict[str, float]:
    """A classifier of `base`'s recurrent part with hashed n-grams (`classifier_config`'s buckets and
    longest n-gram) trained on `data`'s training texts, the mix and temperatures fitted on its
    validation texts; written to `run_dir` (best.pt, last.pt). Returns the validation figures."""
    started = time.perf_counter()
    corpus = load_corpus(data, task="classify")
    names = list(base.config.label_names)
    to_classifier, note = match_labels(list(corpus.label_names), names)
    if note:
        log.info("%s", note)
    config = dataclasses.replace(base.config, features="recurrent", ngram_buckets=classifier_config.ngram_buckets,
                                 ngram_max=classifier_config.ngram_max, char_ngrams=classifier_config.char_ngrams,
                                 negation=classifier_config.negation,
                                 negation_words=classifier_config.negation_words,
                                 negation_sign=classifier_config.negation_sign,
                                 max_len=classifier_config.max_len,
                                 long_text=classifier_config.long_text)
    model = Classifier(base.model_config, config)
    kept = {name: value for name, value in base.state_dict().items() if not name.startswith("ngram")}
    model.load_state_dict(kept, strict=False)
    texts, labels, bags = {}, {}, {}
    for split in ("train", "validation"):
        rows = corpus.splits[split]
        texts[split] = list(rows[corpus.text_column])
        labels[split] = to_classifier[np.asarray(rows[corpus.label_column])]
        bags[split] = text_buckets(config, texts[split])
    subwords = f" and their words' character 3-{config.char_ngrams}-grams" if config.char_ngrams else ""
    subwords += (", negated words counted against themselves," if config.negation_sign else
                 ", negation scopes marked,") if config.negation else ""
    log.info("hashed the word 1-%d-grams%s of %s training and %s validation texts into %s buckets", config.ngram_max,
             subwords, f"{len(texts['train']):,}", f"{len(texts['validation']):,}", f"{config.ngram_buckets:,}")
    log.info("reading the %s validation texts with the recurrent encoder", f"{len(texts['validation']):,}")
    recurrent = torch.from_numpy(_recurrent_logits(model, tokenizer, texts["validation"], device, precision)).float()
    truth = torch.from_numpy(labels["validation"])

    def judge(ngram: torch.Tensor) -> dict[str, float]:  # the epoch is chosen by what ships: both parts mixed
        figures = fit_mixture(recurrent, ngram.float(), truth).metrics
        return {"val_loss": figures["val_loss"], "ngram_accuracy": figures["ngram_accuracy"],
                "both_accuracy": figures["both_accuracy"]}

    torch.manual_seed(seed)
    found = train_ngrams(model, bags["train"], labels["train"], bags["validation"], judge, seed)
    model.eval()
    with torch.no_grad():
        ngram = ngram_logits(model, bags["validation"])
    fitted = fit_mixture(recurrent, ngram.float(), truth)
    model.config = dataclasses.replace(config, features=classifier_config.features, ngram_weight=fitted.ngram_weight,
                                       temperatures=fitted.temperatures, decisive_margin=fitted.decisive_margin)
    metrics = {**fitted.metrics, **found, "ngram_weight": fitted.ngram_weight,
               **{f"{name}_temperature": t for name, t in zip(FEATURES, fitted.temperatures)}}
    log.info("validation: %s", ", ".join(f"{key} {value:,}" if isinstance(value, int) else f"{key} {value:.4f}"
                                         for key, value in metrics.items()))
    payload = {"kind": "classifier", "configs": {**configs, "classifier": to_dict(model.config)},
               "model_config": to_dict(model.model_config), "classifier_config": to_dict(model.config),
               "tokenizer": tokenizer.to_data(), "model": model.state_dict(), "step": found["ngram_epoch"],
               "elapsed": time.perf_counter() - started, "metrics": metrics, "best_metrics": metrics}
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("best.pt", "last.pt"):
        save_checkpoint(run_dir / name, payload)
    return metrics


def _recurrent_logits(model: Classifier, tokenizer: Tokenizer, texts: list[str], device: torch.device,
                      precision: str) -> np.ndarray:
    """The recurrent part's logits (texts, classes): log-probabilities at temperature 1 differ from
    logits by a per-text constant, which neither the softmax nor the fits see."""
    recurrent = dataclasses.replace(model.config, features="recurrent", temperatures=(1.0, 1.0, 1.0))
    saved, model.config = model.config, recurrent
    try:
        return np.log(np.clip(predict(model.to(device), tokenizer, texts, device, precision=precision), 1e-12, 1.0))
    finally:
        model.config = saved
        model.cpu()
