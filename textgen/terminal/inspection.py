"""An inspection at the terminal: the units --find ranked, each chosen unit's values coloured along
the text, and a classifier's prediction token by token; where colour cannot show (a pipe, NO_COLOR,
a dumb terminal), the same as numbers, one line per token."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from textgen.lab.views import colour_key, numbers_table, prediction_how, render_prediction, render_unit, score_json, \
    trace_json
from textgen.recipes.inspect import Inspection
from textgen.requests import InspectRequest


def inspection_json(request: InspectRequest, inspection: Inspection) -> dict:
    """The inspection as one JSON object: tokens, each unit's values, predictions, the ranking."""
    result = {"model": inspection.model_path, **trace_json(inspection.trace, inspection.units)}
    if inspection.choice is not None:
        result["reason"] = inspection.choice.reason
    if request.find:
        result.update(feature=request.find, corpus=request.corpus, split=request.split,
                      ranking=[score_json(score) for score in inspection.ranking])
    return result


def show_inspection(output: Console, request: InspectRequest, inspection: Inspection, as_json: bool) -> None:
    """The inspection as JSON, or the ranking table and (unless a page was written) each unit coloured
    along the text."""
    if as_json:
        print(json.dumps(inspection_json(request, inspection)))
        return
    ranking, trace = inspection.ranking, inspection.trace
    if ranking:
        table = Table(title=f"units that best track {request.find} ({request.corpus} {request.split}, "
                            f"{ranking[0].positions:,} positions)")
        for column in ("layer", "gate", "unit", "correlation"):
            table.add_column(column, justify="left" if column == "gate" else "right")
        for score in ranking:
            table.add_row(str(score.unit.layer), score.unit.gate, str(score.unit.unit), f"{score.correlation:+.3f}")
        output.print(table)
    if request.html:
        return
    if inspection.choice is not None:
        output.print(f"why this unit: {inspection.choice.reason}", markup=False, highlight=False)
    if output.color_system is None or output.no_color:
        said = (f", and what classify would say had the text ended there ({prediction_how(trace)[:-1]})"
                if trace.probabilities is not None else "")
        output.print(f"each unit's value after each token{said}:", markup=False, highlight=False)
        output.print(numbers_table(trace, inspection.units), markup=False, highlight=False)
        return
    key = colour_key(inspection.units, bool(trace.unknown.any()))
    for unit in inspection.units:
        output.print(f"{unit} ({key}):", markup=False, highlight=False)
        output.print(render_unit(trace, unit))
    if trace.probabilities is not None:
        final = int(trace.probabilities[-1].argmax())
        output.print(f"what classify would say had the text ended at each token, its probability of "
                     f"{trace.label_names[final]} ({trace.probabilities[0, final]:.2f} at the start, "
                     f"{trace.probabilities[-1, final]:.2f} at the end; deeper is surer), from "
                     f"{prediction_how(trace)}", markup=False, highlight=False)
        output.print(render_prediction(trace))
