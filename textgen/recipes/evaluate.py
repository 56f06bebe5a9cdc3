"""Scoring a model on data: bits per character of a language model over a corpus split or one text;
accuracy, macro-F1, the confusion matrix and calibration of a classifier over a labelled split."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch

from textgen.classify.predict import Progress, predict
from textgen.config import DataConfig
from textgen.data.batches import StreamBatches, label_array, token_array
from textgen.data.corpus import count_chars, load_corpus, split_texts
from textgen.data.files import local_or_example, read_text_file
from textgen.data.tokenizer import Tokenizer
from textgen.errors import ConfigError, TextgenError
from textgen.generate.scoring import score
from textgen.metrics import classification_metrics, expected_calibration_error, match_labels
from textgen.nn.checkpoint import load_classifier, load_language_model
from textgen.nn.model import Classifier, LanguageModel, resolve_device
from textgen.nn.precision import resolve_precision
from textgen.requests import EvalRequest
from textgen.training.adapt import Adaptation, dynamic_evaluation, read_from_the_start, with_characters_of
from textgen.training.validation import language_model_metrics

log = logging.getLogger("textgen")


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def evaluate_language_model(model: str | LanguageModel, data: DataConfig, split: str = "test",
                            device: str | torch.device = "auto", batch_size: int = 16, seq_len: int = 256,
                            tokenizer: Tokenizer | None = None) -> dict:
    """Bits per character, perplexity and loss (nats per token) of language model `model` (run
    folder, .pt or bundled name; or a loaded model with its `tokenizer`) on `split` of the corpus
    `data` names, with its token count."""
    torch_device = _device(device)
    language_model = model
    if tokenizer is None:
        language_model, tokenizer, _ = load_language_model(model, torch_device)
    config = language_model.config
    corpus = load_corpus(data, task="lm", condition=config.condition if config.label_names else None)
    if split not in corpus.splits:
        raise TextgenError(f"--split {split} is not in {corpus.name}; it has: {', '.join(corpus.splits)}")
    tokens = token_array(corpus, split, tokenizer)
    labels = None
    if config.label_names:
        if list(corpus.label_names) != list(config.label_names):
            raise TextgenError(f"{corpus.name}'s labels ({', '.join(corpus.label_names)}) are not the model's "
                               f"({', '.join(config.label_names)}); score it on a corpus with the same labels")
        labels = label_array(corpus, split, tokenizer)
    seq_len = max(1, min(seq_len, len(tokens) - 1))
    streams = StreamBatches(tokens, max(1, min(batch_size, (len(tokens) - 1) // seq_len)), seq_len, labels=labels)
    chars_per_token = count_chars(corpus, split) / len(tokens)
    metrics = language_model_metrics(language_model, streams, chars_per_token, torch_device)
    result = {"corpus": corpus.name, "split": split, "loss": metrics["val_loss"],
              "bits_per_char": metrics["bits_per_char"], "perplexity": metrics["perplexity"],
              "tokens": int(metrics["val_tokens"])}
    if labels is not None:
        # what the label tells the model: the same text scored with each row's true label
        labelled = language_model_metrics(language_model, streams, chars_per_token, torch_device, with_labels=True)
        result["bits_per_char_with_label"] = labelled["bits_per_char"]
    return result


def score_text(model: str, text: str, device: str | torch.device = "auto") -> dict:
    """`score` of `text` under language model `model` (run folder, .pt or bundled name)."""
    torch_device = _device(device)
    language_model, tokenizer, _ = load_language_model(model, torch_device)
    return score(language_model, tokenizer, text, torch_device)


def evaluate_classifier(model: str | Classifier, data: DataConfig, split: str = "validation",
                        device: str | torch.device = "auto", batch_size: int = 64, tokenizer: Tokenizer | None = None,
                        max_len: int | None = None, long_text: str | None = None, features: str | None = None,
                        precision: str = "fp32", progress: Callable[[int], Progress] | None = None) -> dict:
    """Accuracy, macro-F1, the confusion matrix and the expected calibration error (15 bins) of
    classifier `model` (run folder, .pt or bundled name, read with `max_len`, `long_text` and
    `features` as `checkpoint.load_model` says; or a loaded classifier with its `tokenizer`) on
    labelled `split` of the corpus `data` names, and how many texts it labelled per second.
    `precision` (fp32, bf16, auto) is the encoder's arithmetic.
    `progress`, given the number of texts, returns what to tell as they are labelled."""
    torch_device = _device(device)
    if tokenizer is None:
        model, tokenizer, _ = load_classifier(model, torch_device, max_len, long_text, features)
    names = list(model.config.label_names)
    corpus = load_corpus(data, task="classify", evaluate=split)
    if split not in corpus.splits:
        raise ConfigError(f"--split {split} is not in {corpus.name}, or has no labels; it has: "
                          f"{', '.join(corpus.splits)}")
    to_classifier, note = match_labels(list(corpus.label_names), names)
    if note:
        log.info("%s", note)
    rows = corpus.splits[split]
    texts = list(rows[corpus.text_column])
    started = time.perf_counter()
    probabilities = predict(model, tokenizer, texts, torch_device, batch_size,
                            precision=resolve_precision(precision, torch_device),
                            progress=progress(len(texts)) if progress else None)
    seconds = time.perf_counter() - started
    labels = to_classifier[np.asarray(rows[corpus.label_column])]
    return {"corpus": corpus.name, "split": split, "features": model.config.features,
            **classification_metrics(labels, probabilities.argmax(1), names),
            "ece": expected_calibration_error(probabilities, labels), "seconds": round(seconds, 3),
            "texts_per_second": round(len(texts) / max(seconds, 1e-9), 1)}


def run(request: EvalRequest) -> dict:
    """What the request scores: one text, a whole file, or a corpus split (with --adapt, in order,
    adapting as it reads)."""
    # a bare name such as my_text.txt with no such file here is the example that ships with textgen
    path = local_or_example("--corpus", request.corpus) if request.corpus else None
    whole_file = path if path is not None and request.split is None and path.is_file() else None
    if request.adapt or whole_file:
        return score_in_order(request, whole_file)
    if request.text is not None:
        return score_text(request.model, request.text, request.device)
    return evaluate_language_model(request.model, request.data_config(), request.split or "test", request.device,
                                   request.batch_size, request.seq_len)


def score_in_order(request: EvalRequest, whole_file: Path | None) -> dict:
    """Bits per character of a text, a whole file (`whole_file`, as its bytes are: CRLF line ends
    included; with bits per byte) or a corpus split, read as one stream in order; with --adapt, by
    the model adapting as it goes (`dynamic_evaluation`), beside the model unchanged. Characters the
    model has never seen get rows as in fine-tuning (average characters it can learn as it reads).
    Labels are not read."""
    device = _device(request.device)
    model, tokenizer, _ = load_language_model(request.model, device)
    split = request.split or "test"
    if request.text is not None or whole_file:
        text = request.text if request.text is not None else read_text_file(
            "--corpus", str(whole_file), request.encoding, raw=True)
        texts, name, split = [text], "text" if request.text is not None else request.corpus, None
        if whole_file and not text:
            raise TextgenError(f"--corpus {request.corpus} is empty; give a file with text in it")
    else:
        corpus = load_corpus(request.data_config(), task="lm")
        if split not in corpus.splits:
            raise TextgenError(f"--split {split} is not in {corpus.name}; it has: {', '.join(corpus.splits)}")
        texts, name = split_texts(corpus, split), corpus.name
    if split is None:
        model, tokenizer, tokens = read_from_the_start(model, tokenizer, texts[0], device)
        chars = len(texts[0])
    else:
        model, tokenizer = with_characters_of(model, tokenizer, texts, device)
        tokens, chars = token_array(corpus, split, tokenizer), count_chars(corpus, split)
    if len(tokens) < 2:
        raise TextgenError(f"{name} is too short to score; give at least two tokens of text")
    if request.adapt:
        result = dynamic_evaluation(model, tokens, chars, device, Adaptation(request.adapt_lr, request.adapt_decay))
        # to the figures' precision; + 0.0 turns a rounded -0.0 into 0.0, which reads as no gain
        result["gain"] = round(result["bits_per_char_static"] - result["bits_per_char"], 4) + 0.0
    else:
        streams = StreamBatches(tokens, 1, max(1, min(request.seq_len, len(tokens) - 1)))
        metrics = language_model_metrics(model, streams, chars / (len(tokens) - 1), device)
        result = {"bits_per_char": metrics["bits_per_char"], "tokens": int(metrics["val_tokens"])}
    result = {"corpus": name, "split": split, **result}
    if whole_file:  # what compressors report: bits per byte of the file as it lies on disk
        size = whole_file.stat().st_size
        result.update(bytes=size, bits_per_byte=result["bits_per_char"] * chars / size,
                      **({f"bits_per_byte_{reading}": result[f"bits_per_char_{reading}"] * chars / size
                          for reading in ("static", "adapting")} if request.adapt else {}))
    return result
