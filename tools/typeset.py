"""One text typed several ways, so that a model trained on it does not care how a text was typed
(issue 31): quotes curly, straight, `` `quoted' `` or ``TeX''; lines as they are, unwrapped, or
wrapped afresh at 60-80 columns; paragraphs indented or not; one or two spaces after a sentence;
LF or CRLF line ends. The words never change: `strip_typesetting` of every rendering is the same.
"""

from __future__ import annotations

import random
import re
import textwrap

QUOTES = {  # curly quote -> its spelling in each style
    "curly": {},
    "straight": {"“": '"', "”": '"', "‘": "'", "’": "'"},
    "backtick": {"“": "`", "”": "'", "‘": "`", "’": "'"},  # as alice29.txt of the Canterbury corpus types them
    "tex": {"“": "``", "”": "''", "‘": "`", "’": "'"},
}
STYLE_WEIGHTS = {
    "quotes": {"curly": 0.35, "straight": 0.35, "backtick": 0.2, "tex": 0.1},
    "wrap": {"as is": 0.4, "unwrapped": 0.3, "rewrapped": 0.3},
    "indent": {"": 0.6, "  ": 0.2, "    ": 0.1, "\t": 0.1},
    "sentence gap": {" ": 0.75, "  ": 0.25},
    "line end": {"\n": 0.75, "\r\n": 0.25},
}
SENTENCE_END = re.compile(r"([.!?:;][\"'’”]?) (?=[\"'‘“`A-Z])")


def pick_style(rng: random.Random) -> dict[str, str]:
    return {name: rng.choices(list(weights), list(weights.values()))[0] for name, weights in STYLE_WEIGHTS.items()}


def render(text: str, style: dict[str, str], width: int = 70) -> str:
    """`text` (paragraphs between blank lines, LF line ends) typed in `style`."""
    table = str.maketrans({curly: spelled for curly, spelled in QUOTES[style["quotes"]].items()})
    paragraphs = []
    for paragraph in text.translate(table).split("\n\n"):
        lines = paragraph.split("\n")
        prose = paragraph.strip() and not any(line[:1].isspace() for line in lines)  # verse and headings stay
        if prose and style["wrap"] != "as is":
            joined = " ".join(line.strip() for line in lines)
            if style["sentence gap"] != " ":
                joined = SENTENCE_END.sub(r"\1" + style["sentence gap"], joined)
            paragraph = joined if style["wrap"] == "unwrapped" else textwrap.fill(
                joined, width, break_long_words=False, break_on_hyphens=False)
        elif prose and style["sentence gap"] != " ":
            paragraph = "\n".join(SENTENCE_END.sub(r"\1" + style["sentence gap"], line) for line in lines)
        if prose:
            paragraph = style["indent"] + paragraph
        paragraphs.append(paragraph)
    return "\n\n".join(paragraphs).replace("\n", style["line end"])


def typeset(text: str, rng: random.Random, chunk: int = 16_000) -> str:
    """`text` in pieces of about `chunk` characters (whole paragraphs), each in a style of its own,
    as documents are typed by different hands."""
    pieces, current, size = [], [], 0
    for paragraph in text.split("\n\n"):
        current.append(paragraph)
        size += len(paragraph) + 2
        if size >= chunk:
            pieces.append("\n\n".join(current))
            current, size = [], 0
    if current:
        pieces.append("\n\n".join(current))
    rendered = []
    for piece in pieces:
        style = pick_style(rng)
        rendered.append(render(piece, style, width=rng.randint(60, 80)) + style["line end"] * 2)
    return "".join(rendered)


def strip_typesetting(text: str) -> list[str]:
    """The words of `text` with every quote one mark: what no rendering may change."""
    for curly, plain in (("“", '"'), ("”", '"'), ("‘", "'"), ("’", "'"), ("``", '"'), ("''", '"'), ("`", "'")):
        text = text.replace(curly, plain)
    return text.replace('"', "'").split()
