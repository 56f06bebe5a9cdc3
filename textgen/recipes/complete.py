"""Autocomplete: the likeliest continuations of a prefix to the end of its next word or line."""

from __future__ import annotations

from textgen.generate.completion import Completion
from textgen.recipes.models import load
from textgen.recipes.sample import one_thread_unless_told
from textgen.requests import CompleteRequest


def run(request: CompleteRequest) -> list[Completion]:
    """The request's completions, most likely first."""
    one_thread_unless_told()
    generator = load(request.model, request.device, "language_model")
    return generator.complete(request.prefix, request.top, request.until, request.label)
