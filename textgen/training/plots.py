"""Training curves of one or more runs on one chart: training and validation loss against step and
against wall time, read from each run folder's metrics.jsonl. Drawn headless with matplotlib's Agg
canvas; matplotlib is an optional dependency (`pip install 'textgen[plot]'`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textgen.errors import TextgenError

LN2 = math.log(2)


@dataclass
class Curves:
    """One run's losses in `unit` (bits per character, per token, or per text for a classifier)."""

    name: str
    unit: str
    train_steps: np.ndarray
    train_elapsed: np.ndarray
    train_loss: np.ndarray
    val_steps: np.ndarray
    val_elapsed: np.ndarray
    val_loss: np.ndarray


def read_run(run: str | Path) -> Curves:
    """The training and validation curves of the run folder `run`."""
    folder = Path(run)
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        raise TextgenError(f"{folder} holds no metrics.jsonl; pass run folders written by `textgen train`")
    lines, records = metrics.read_text().splitlines(), []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):  # a run still writing may leave half a last line
                    raise TextgenError(f"{metrics} line {number} is not JSON; the file is damaged") from None
    train = [r for r in records if "loss" in r and "elapsed" in r and "split" not in r and "event" not in r]
    validation = [r for r in records if r.get("split") == "validation" and "val_loss" in r]
    if not train:
        raise TextgenError(f"{metrics} has no training records yet; wait for the run's first log line")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    task = config.get("train", {}).get("task", "lm")
    if task != "lm":
        unit, per_token = "bits per text", 1.0
    elif any("bits_per_char" in r for r in validation):
        # bits per character divide bits per token by the characters per token the evaluation measured
        first = next(r for r in validation if "bits_per_char" in r)
        unit, per_token = "bits per character", first["val_loss"] / LN2 / first["bits_per_char"]
    elif config.get("data", {}).get("tokenizer", "char") == "char":
        unit, per_token = "bits per character", 1.0
    else:
        unit, per_token = "bits per token", 1.0
    train_steps = np.asarray([r["step"] for r in train], dtype=np.float64)
    train_elapsed = np.asarray([r["elapsed"] for r in train], dtype=np.float64)
    val_steps = np.asarray([r["step"] for r in validation], dtype=np.float64)
    # an evaluation follows the training step of the same number; its time is read off the training log
    val_elapsed = np.asarray([r["elapsed"] if "elapsed" in r else np.interp(r["step"], train_steps, train_elapsed)
                              for r in validation], dtype=np.float64)
    return Curves(folder.resolve().name, unit, train_steps, train_elapsed,
                  np.asarray([r["loss"] for r in train]) / LN2 / per_token,
                  val_steps, val_elapsed, np.asarray([r["val_loss"] for r in validation]) / LN2 / per_token)


def plot_runs(runs: list[str | Path], out: str | Path) -> Path:
    """A PNG at `out` with every run's training (thin) and validation (thick, dots) loss against
    step (left) and wall time (right), one colour per run."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TextgenError("textgen plot needs matplotlib, an optional dependency; install it with "
                           "pip install 'textgen[plot]' (or pip install matplotlib)") from None
    curves = [read_run(run) for run in runs]
    units = sorted({c.unit for c in curves})
    if len(units) > 1:
        raise TextgenError(f"these runs measure their loss in different units ({', '.join(units)}); "
                           f"plot language models and classifiers separately")
    names = [c.name for c in curves]
    if len(set(names)) < len(names):  # two runs/NAME folders from different places
        names = [str(Path(run)) for run in runs]
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    by_step, by_time = figure.subplots(1, 2, sharey=True)
    colours = [f"C{i % 10}" for i in range(len(curves))]
    for name, curve, colour in zip(names, curves, colours):
        for axes, train_x, val_x in ((by_step, curve.train_steps, curve.val_steps),
                                     (by_time, curve.train_elapsed / 60, curve.val_elapsed / 60)):
            axes.plot(train_x, curve.train_loss, color=colour, linewidth=0.8, alpha=0.6,
                      label=f"{name} training")
            if len(curve.val_loss):
                axes.plot(val_x, curve.val_loss, color=colour, linewidth=2, marker="o", markersize=4,
                          label=f"{name} validation")
    by_step.set_xlabel("step")
    by_time.set_xlabel("wall time (minutes)")
    by_step.set_ylabel(f"loss ({units[0]})")
    # the first steps' loss is far above the rest; clip it so the interesting part fills the chart
    late = np.concatenate([c.train_loss[len(c.train_loss) // 10:] for c in curves] +
                          [c.val_loss for c in curves])
    low, high = float(late.min()), float(np.percentile(late, 99))
    if high > low:
        by_step.set_ylim(low - 0.05 * (high - low), high + 0.3 * (high - low))
    for axes in (by_step, by_time):
        axes.grid(alpha=0.3)
    by_step.legend(fontsize="small")
    by_step.set_title("against training step")
    by_time.set_title("against wall time")
    out = Path(out)
    try:
        figure.savefig(out, dpi=110)
    except OSError as error:
        raise TextgenError(f"could not write {out} ({error.strerror or error}); choose another --out") from error
    return out
