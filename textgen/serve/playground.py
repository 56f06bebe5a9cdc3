"""The playground page `textgen serve` shows at `/`: write with a model, autocomplete, classify and
look inside, all through the server's JSON API. The page's script and style ship as package data and
are inlined, so the page needs nothing from outside the server."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib.resources import files


def _read(name: str) -> str:
    return files("textgen.serve").joinpath(name).read_text(encoding="utf-8")


def _hash(source: str) -> str:
    """A CSP source that allows exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


_TEMPLATE, _SCRIPT, _STYLE = _read("playground.html"), _read("playground.js"), _read("playground.css")

# no 'unsafe-inline': the one script and the one style are allowed by their hashes, fetches go only to
# this server, and the page can be neither framed nor made to post a form elsewhere
_POLICY = (f"default-src 'none'; script-src {_hash(_SCRIPT)}; style-src {_hash(_STYLE)}; connect-src 'self'; "
           f"base-uri 'none'; form-action 'none'")
PLAYGROUND_CSP = _POLICY + "; frame-ancestors 'none'"  # frame-ancestors works only as a header, not in <meta>


def playground_page(models: dict[str, str]) -> str:
    """The whole page (no external resources) for `models`, name -> "language_model" or "classifier"."""
    listed = [{"name": name, "kind": kind} for name, kind in models.items()]
    # inside <script>, "<", ">" and "&" as JSON escapes: no model name can close the element
    payload = json.dumps(listed).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    filled = {"csp": _POLICY, "style": _STYLE, "script": _SCRIPT, "models": payload}
    # one pass: the script and style are never searched for placeholders
    return re.sub(r"\{(csp|style|script|models)\}", lambda match: filled[match.group(1)], _TEMPLATE)
