"""Labelling texts with a trained classifier (scoring the labels against the truth is `evaluation`'s)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from textgen.data.batches import LabelledBatches, cut_to
from textgen.errors import ConfigError, TextgenError
from textgen.config import FEATURES, ClassifierConfig
from textgen.nn.model import Classifier, lead
from textgen.data.ngrams import ngram_buckets, pack_bags
from textgen.nn.precision import autocast
from textgen.data.tokenizer import MAX_PIECE_CHARS, Tokenizer, encode_long, word_gap

# Told how many more texts are done (a fraction when texts are read in independent chunks).
Progress = Callable[[float], None]


def text_pieces(tokenizer: Tokenizer, texts: list[str], max_len: int, long_text: str, offset: int = 0
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Token ids of each piece to classify, and which text each piece belongs to: one piece per
    text (whole, or its first or last max_len tokens), or consecutive max_len chunks whose
    probabilities are averaged."""
    check_texts(texts, offset)
    pieces, owners = [], []
    for index, text in enumerate(texts):
        ids = encode_long(tokenizer, read_part(text, max_len, long_text))
        if long_text == "chunk":
            chunks = [ids[start:start + max_len] for start in range(0, len(ids), max_len)]
        else:  # whole texts are read in chunks by the model itself
            chunks = [cut_to(ids, max_len, long_text)]
        pieces.extend(chunks)
        owners.extend([index] * len(chunks))
    return pieces, np.asarray(owners, dtype=np.int64)


def read_part(text: str, max_len: int, long_text: str) -> str:
    """The part of `text` that holds the tokens a classifier keeps of it: for "truncate" and "tail",
    a cut at a word gap well past its first or last `max_len` tokens, so that a huge text is not
    encoded whole to keep a few hundred tokens of it (the same tokens)."""
    span = max_len * MAX_PIECE_CHARS
    if long_text not in ("truncate", "tail") or len(text) <= 2 * span:
        return text
    if long_text == "truncate":
        return text[:word_gap(text, span, 2 * span)]
    return text[word_gap(text, len(text) - 2 * span, len(text) - span, last=True):]


def check_texts(texts: list[str], offset: int = 0) -> None:
    """Refuse an empty text (`offset`: texts before these, earlier groups of a stream, so the number is the user's)."""
    for index, text in enumerate(texts):
        if not text.strip():
            raise TextgenError(f"text {offset + index + 1} is empty; give each text some characters to classify")


@torch.inference_mode()
def predict(model: Classifier, tokenizer: Tokenizer, texts: list[str], device: torch.device,
            batch_size: int = 64, offset: int = 0, precision: str = "fp32",
            progress: Progress | None = None) -> np.ndarray:
    """Class probabilities (texts, classes), calibrated by the classifier's temperature; texts are
    batched by length (the answers keep the input order) and chunked texts average their chunks'
    probabilities. `precision` bf16 runs the encoder at half the cost where the CPU has bf16. With
    `--features both`, texts the n-grams decide alone (`ngram_decided`) are not read by the encoder."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}")
    model.eval()
    config = model.config
    probabilities = np.zeros((len(texts), len(config.label_names)))
    buckets = []
    if config.features != "recurrent":
        check_texts(texts, offset)
        buckets = text_buckets(config, texts)
    unread = np.arange(len(texts))
    if config.features == "both" and config.decisive_margin > 0 and texts:
        decided, decided_probabilities = ngram_decided(model, buckets, batch_size)
        probabilities[decided] = decided_probabilities
        unread = np.flatnonzero(~decided)
        if progress is not None and decided.any():
            progress(float(decided.sum()))
        if not len(unread):
            return probabilities
        texts, buckets = [texts[index] for index in unread], [buckets[index] for index in unread]
    if config.features == "ngram":  # no tokens to read: one pass of bags in input order
        pieces, owners = [np.zeros(1)] * len(texts), np.arange(len(texts))
    else:
        pieces, owners = text_pieces(tokenizer, texts, config.max_len, config.long_text, offset)
    batches = LabelledBatches(pieces, np.zeros(len(pieces)), batch_size, tokenizer.pad_id, shuffle=False)
    sums = np.zeros((len(texts), len(config.label_names)))
    for rows in batches.batch_rows(0):
        ids = lengths = bags = None
        if config.features != "ngram":
            ids, lengths, _ = batches.batch(rows)
            ids = ids.to(device)
        if buckets:
            bags = tuple(tensor.to(device) for tensor in pack_bags([buckets[owner] for owner in owners[rows]]))
        with autocast(precision, device):
            logits = model(ids, lengths, bags).float()
        np.add.at(sums, owners[rows], torch.softmax(logits / config.temperature, dim=1).cpu().numpy())
        if progress is not None:
            progress(len(rows) * len(texts) / len(pieces))
    probabilities[unread] = sums / np.bincount(owners, minlength=len(texts))[:, None]
    return probabilities


def text_buckets(config: ClassifierConfig, texts: list[str]) -> list[np.ndarray]:
    """Each text's `ngram_buckets` as the classifier's n-grams were trained to read them (its buckets,
    longest n-gram, character n-grams and negation scopes): the one place that reads those settings."""
    return [ngram_buckets(text, config.ngram_buckets, config.ngram_max, config.char_ngrams, config.negation,
                          config.negation_words, config.negation_sign) for text in texts]


def ngram_decided(model: Classifier, buckets: list[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which texts `--features both` labels by their n-grams alone (weighted, they lead by more than
    the recurrent part's share ever spread on validation, so reading them could not change the
    answer there), and those texts' probabilities at the n-grams' own temperature."""
    config = model.config
    logits = ngram_logits(model, buckets, batch_size=batch_size).float().cpu()
    decided = lead(config.ngram_weight * logits) > config.decisive_margin
    ngram_temperature = config.temperatures[FEATURES.index("ngram")]
    return decided.numpy(), torch.softmax(logits[decided] / ngram_temperature, dim=1).numpy()


def ngram_logits(model: Classifier, bags: list[np.ndarray], scale: torch.Tensor | None = None,
                 batch_size: int = 512) -> torch.Tensor:
    """The n-gram part's logits (texts, classes) of `ngram_buckets` bags, `batch_size` texts at a time,
    with each bucket's row scaled by `scale` (NB ratios, while stacking)."""
    device = model.ngrams.weight.device
    out = [model.ngram_logits(*(tensor.to(device) for tensor in pack_bags(bags[start:start + batch_size])), scale)
           for start in range(0, len(bags), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, len(model.config.label_names), device=device)


def predict_stream(model: Classifier, tokenizer: Tokenizer, texts: Iterable[str], device: torch.device,
                   batch_size: int = 64, group_batches: int = 16, precision: str = "fp32",
                   progress: Progress | None = None) -> Iterator[tuple[list[str], np.ndarray]]:
    """(texts, probabilities) for consecutive groups of `group_batches` batches of `texts`, each as
    soon as it is classified: memory stays bounded however many texts the iterable yields."""
    texts = iter(texts)
    done = 0
    while group := list(itertools.islice(texts, max(1, batch_size) * group_batches)):
        yield group, predict(model, tokenizer, group, device, batch_size, done, precision, progress)
        done += len(group)
