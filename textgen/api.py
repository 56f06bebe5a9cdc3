"""The Python API: the three jobs in a few calls.

    >>> import textgen
    >>> textgen.load("shakespeare").generate("ROMEO:", length=200, temperature=0.8)
    >>> for piece in textgen.load("shakespeare").stream("ROMEO:", length=200):
    ...     print(piece, end="")
    >>> textgen.load("sentiment").classify(["a gripping, beautiful film"])
    [Prediction(text='a gripping, beautiful film', label='pos', probability=0.98, ...)]
    >>> run = textgen.train(corpus="my_text.txt", preset="tiny", max_steps=200)
    >>> run.folder, run.metrics["bits_per_char"]

`load` takes a bundled model name (see `textgen models`), a run folder (its best.pt) or a .pt file.
`train` takes any setting of `DataConfig`, `ModelConfig`, `TrainConfig`, `ClassifierConfig` and
`FinetuneConfig` by its field name; the `textgen` command is built on these same calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textgen.recipes.models import Prediction, TextClassifier, TextGenerator, load, models
from textgen.requests import TrainRequest

if TYPE_CHECKING:
    from textgen.recipes.train import Reporter

__all__ = ["Prediction", "Run", "TextClassifier", "TextGenerator", "load", "models", "train"]


@dataclass
class Run:
    """A finished (or stopped) training run: its folder, where it stopped, and its metrics."""

    folder: Path
    step: int
    stop_reason: str  # "max_steps", "time_budget", "interrupted", "early_stopping"
    metrics: dict[str, float]  # the last evaluation's
    best_metrics: dict[str, float] = field(default_factory=dict)

    def load(self, device: str = "auto") -> TextGenerator | TextClassifier:
        """The run's best model, ready to use."""
        return load(self.folder, device)


def train(corpus: str | Path | None = None, task: str | None = None, reporter: "Reporter | None" = None,
          **settings: Any) -> Run:
    """Train a language model (task "lm") or a classifier ("classify") on `corpus` (a name, Hub id
    or path; default tiny_shakespeare) into a run folder (`out`, else runs/<corpus>-<kind>-<time>); a
    `reporter` (see `trainer.Reporter`) is told the progress. `settings` are fields of
    `DataConfig`, `ModelConfig`, `TrainConfig`, `ClassifierConfig` and `FinetuneConfig` by name
    (preset, max_steps, time_budget, hidden_size, init_from, ...), checked as the CLI checks flags."""
    from textgen.recipes.train import run

    request = TrainRequest({"corpus": corpus, "task": task, **settings})
    _, result = run(request, lambda chars_per_token: reporter)
    return Run(result.run_dir, result.step, result.stop_reason, result.metrics, result.best_metrics)
