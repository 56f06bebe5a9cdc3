"""tools/typeset.py, which types the bundled english model's books several ways (issue 31): the
words never change, and each style is what it says."""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from typeset import STYLE_WEIGHTS, render, strip_typesetting, typeset  # noqa: E402

BOOK = ("“Well!” thought Alice to herself. ‘After such a fall as this, I shall think nothing of tumbling\n"
        "down stairs!’ How brave they’ll all think me at home!\n\n"
        "    A verse line stays\n    as it was typed\n\n"
        "Down, down, down. Would the fall never come to an end? “I wonder how many miles I’ve fallen by\n"
        "this time?” she said aloud.")
PLAIN = {"quotes": "curly", "wrap": "as is", "indent": "", "sentence gap": " ", "line end": "\n"}


def test_the_words_survive_every_style():
    rng = random.Random(0)
    for _ in range(200):
        style = {name: rng.choice(list(weights)) for name, weights in STYLE_WEIGHTS.items()}
        assert strip_typesetting(render(BOOK, style, width=rng.randint(60, 80))) == strip_typesetting(BOOK), style


def test_each_style_types_what_it_names():
    assert render(BOOK, PLAIN) == BOOK
    alice = render(BOOK, {**PLAIN, "quotes": "backtick", "indent": "  ", "sentence gap": "  ", "line end": "\r\n"})
    assert alice.startswith("  `Well!' thought Alice to herself.  `After") and "they'll" in alice
    assert "\r\n\r\n    A verse line stays\r\n    as it was typed\r\n\r\n" in alice  # verse is not indented again
    assert "\n" not in alice.replace("\r\n", "")
    unwrapped = render(BOOK, {**PLAIN, "wrap": "unwrapped"}).split("\n\n")
    assert "\n" not in unwrapped[0] and unwrapped[1] == "    A verse line stays\n    as it was typed"
    narrow = render(BOOK, {**PLAIN, "wrap": "rewrapped"}, width=60)
    assert max(len(line) for line in narrow.splitlines()) <= 60 < max(len(line) for line in BOOK.splitlines())
    assert "``I wonder" in render(BOOK, {**PLAIN, "quotes": "tex"})


def test_a_long_text_is_typed_in_pieces_of_several_styles():
    text = "\n\n".join([BOOK] * 400)
    typed = typeset(text, random.Random(1), chunk=2_000)
    assert strip_typesetting(typed) == strip_typesetting(text)
    assert "\r\n" in typed and "`" in typed and "“" in typed and '"' in typed
