"""Classification: labels for texts (given, or read from a file group by group so memory stays
bounded), or with `eval` the classifier's scores on a labelled corpus split."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from textgen.classify.predict import Progress
from textgen.errors import ConfigError
from textgen.recipes.evaluate import evaluate_classifier
from textgen.recipes.models import Prediction, TextClassifier, load
from textgen.requests import ClassifyRequest


@dataclass
class Labelling:
    """What a classify request gives: metrics for `eval`, else the predictions in groups as labelled."""

    label_names: list[str]
    metrics: dict | None = None
    groups: Iterator[list[Prediction]] | None = None


def run(request: ClassifyRequest, progress: Callable[[int | None], Progress] | None = None) -> Labelling:
    """Labels (lazily, group by group) or, with `eval`, metrics; `progress(total)` returns what to tell
    as texts are labelled."""
    if request.eval:
        metrics = evaluate_classifier(request.model, request.data_config(), request.split, request.device,
                                      request.batch_size, max_len=request.max_len, long_text=request.long_text,
                                      features=request.features, precision=request.precision, progress=progress)
        return Labelling(list(metrics["labels"]), metrics=metrics)
    classifier = load(request.model, request.device, "classifier", request.max_len, request.long_text,
                      request.features, request.precision)
    return Labelling(classifier.label_names, groups=_groups(classifier, request, progress))


def _groups(classifier: TextClassifier, request: ClassifyRequest, progress) -> Iterator[list[Prediction]]:
    if request.file:
        counter = progress(None) if progress else None
        count = 0
        for texts, probabilities in classifier.file_probabilities(request.file, request.text_column, request.encoding,
                                                                  request.batch_size, counter):
            count += len(texts)
            yield classifier.predictions(texts, probabilities)
        if not count:
            raise ConfigError(f"--file {request.file} holds no texts to classify; give one text per line or row")
        return
    texts = list(request.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("no texts to classify; pass them as arguments, with --file, or on standard input")
    yield classifier.classify(texts, request.batch_size)
