"""Training curves: the loss of runs against step and wall time, drawn to an image file."""

from __future__ import annotations

from pathlib import Path

from textgen.data.files import check_output, image_formats
from textgen.requests import PlotRequest
from textgen.training.plots import plot_runs


def run(request: PlotRequest) -> Path:
    """The chart's path, once written; refused before any work when it would replace an input."""
    inputs = [Path(run) / name for run in request.runs for name in ("metrics.jsonl", "config.json")]
    check_output("--out", request.out, inputs + [Path(run) for run in request.runs], image_formats())
    return plot_runs(list(request.runs), request.out)
