"""Looking inside: chosen units' values along a text, and with `find` the units that best track a
feature of a corpus split; the page with `html`. Opens on the unit that shows most unless told."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textgen.data.corpus import load_corpus
from textgen.data.files import HTML_FORMATS, check_output, read_text_file
from textgen.errors import TextgenError
from textgen.lab.inspection import (EXCERPT_CHARS, check_unit, corpus_rows, find_units, found_unit, informative_unit,
                                    load_model, trace_text)
from textgen.lab.views import html_page, page_title
from textgen.recipes.sample import one_thread_unless_told
from textgen.requests import InspectRequest

log = logging.getLogger("textgen")


@dataclass
class Inspection:
    """A text's trace through a model, the units to show, and what --find ranked."""

    model_path: str
    text: str
    trace: Any
    units: list
    ranking: list = field(default_factory=list)
    choice: Any = None  # the unit picked for the user, with the reason
    html: Path | None = None


def run(request: InspectRequest, progress: Callable[[int, int], None] | None = None) -> Inspection:
    """The inspection the request asks for; `progress(done, total)` is told the tokens --find has read."""
    if request.html:  # before any work: a page that would replace an input is refused
        model = Path(request.model)
        inputs = [model, model / "best.pt", model / "last.pt", *([Path(request.file)] if request.file else [])]
        inputs += [Path(request.corpus)] if request.corpus else []
        check_output("--html", request.html, inputs, HTML_FORMATS)
    if not request.find:  # one text, step by step (--find reads batches of a corpus)
        one_thread_unless_told()
    model, tokenizer, payload = load_model(request.model)
    units = [check_unit(model, request.layer, request.gate, unit) for unit in request.unit or [None]]
    ranking, rows, choice = [], [], None
    if request.find:
        corpus = load_corpus(request.data_config(), task="classify" if request.find == "label" else "lm")
        rows, labels = corpus_rows(corpus, request.split, request.find, request.max_chars)
        log.info("ranking units by how they track %s over %s characters of %s %s", request.find,
                 f"{sum(map(len, rows)):,}", corpus.name, request.split)
        started = time.perf_counter()
        ranking = find_units(model, tokenizer, rows, request.find, labels, request.layer, request.gate,
                             progress=progress)[:request.top]
        log.info("measured in %.1f s", time.perf_counter() - started)
        if not request.unit:
            choice = found_unit(ranking[0], request.find, f"{corpus.name} {request.split}")
    if request.file is not None:
        text = read_text_file("--file", request.file, request.encoding)
    elif request.text is not None:
        text = request.text
    else:  # the first labelled text, or the start of the split
        text = rows[0] if request.find == "label" else "".join(rows)[:EXCERPT_CHARS]
    trace = trace_text(model, tokenizer, text)
    if not request.unit and choice is None:  # unit 0 usually shows little: open on the unit that shows most
        choice = informative_unit(trace, units[0].layer, units[0].gate)
    if choice is not None:
        units = [choice.unit]
    inspection = Inspection(payload["path"], text, trace, units, ranking, choice)
    if request.html:
        inspection.html = write_page(request, inspection)
    return inspection


def write_page(request: InspectRequest, inspection: Inspection) -> Path:
    """The self-contained page, written to --html."""
    page = html_page(inspection.trace, page_title(request.model, inspection.text), inspection.units[0],
                     inspection.ranking, request.find, request.layer, request.gate,
                     reason=inspection.choice.reason if inspection.choice else "")
    try:
        Path(request.html).write_text(page, encoding="utf-8")
    except OSError as error:
        raise TextgenError(f"could not write --html {request.html} ({error.strerror or error}); "
                           f"choose another path") from error
    log.info("wrote %s (%.1f MB): open it in a browser", request.html, len(page) / 1e6)
    if inspection.choice is not None:
        log.info("it opens on %s: %s", inspection.choice.unit, inspection.choice.reason)
    return Path(request.html)
