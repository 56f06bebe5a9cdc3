"""Autocomplete (`textgen complete`) and picking the next word in a terminal (`textgen sample
--interactive --choices N`): completions de-duplicated, best first, with the model's probabilities."""

import itertools
import json
import math
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from textgen.cli import main
from textgen.generate.completion import LINE_CHARS, Completion, complete, is_word_char
from textgen.config import ModelConfig
from textgen.generate.scoring import score
from textgen.nn.model import LanguageModel
from textgen.data.tokenizer import CharTokenizer

CHARS = "ab .\n"


@pytest.fixture
def tokenizer():
    return CharTokenizer.from_texts([CHARS])


def tiny(tokenizer, seed):
    torch.manual_seed(seed)
    return LanguageModel(ModelConfig(num_layers=1, hidden_size=8, embed_size=8, dropout=0.0, output_dropout=0.0,
                                     vocab_size=tokenizer.vocab_size)).eval()


def probability_then_boundary(model, tokenizer, prefix, text):
    """P(text, then any character that ends a word | prefix), from whole-text scores."""
    before = score(model, tokenizer, prefix)["log_prob"]
    return sum(torch.tensor(score(model, tokenizer, prefix + text + end)["log_prob"] - before).exp().item()
               for end in CHARS if not is_word_char(end))


def brute_force(model, tokenizer, prefix, longest):
    """Every completion of up to `longest` characters (non-word characters, then a word), by probability."""
    found = {}
    for length in range(1, longest + 1):
        for chars in itertools.product(CHARS, repeat=length):
            text = "".join(chars)
            if re.fullmatch(r"[^ab]*[ab]+", text):
                found[text] = probability_then_boundary(model, tokenizer, prefix, text)
    return sorted(found.items(), key=lambda item: item[1], reverse=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_completions_are_distinct_best_first_and_carry_the_models_probabilities(tokenizer, seed):
    model = tiny(tokenizer, seed)
    completions = complete(model, tokenizer, "ab ba", top=6)
    texts = [c.text for c in completions]
    assert len(texts) == len(set(texts)) == 6
    assert [c.probability for c in completions] == sorted((c.probability for c in completions), reverse=True)
    for completion in completions:
        assert completion.probability == pytest.approx(
            probability_then_boundary(model, tokenizer, "ab ba", completion.text), rel=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_search_wide_enough_finds_the_true_best_completions(tokenizer, seed):
    model = tiny(tokenizer, seed)
    completions = complete(model, tokenizer, "ba a", top=5, beam_width=1000, max_tokens=4)
    expected = brute_force(model, tokenizer, "ba a", 3)[:5]
    assert [c.text for c in completions] == [text for text, _ in expected]
    assert [c.probability for c in completions] == pytest.approx([p for _, p in expected], rel=1e-4)


def test_a_line_completion_ends_at_the_newline(tokenizer):
    completions = complete(tiny(tokenizer, 0), tokenizer, "ab", top=3, until="line")
    assert completions and all("\n" not in c.text for c in completions)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_finished_word_gets_only_completions_that_begin_a_new_word(tokenizer, seed):
    # issue 32: after "man" was picked, the choices were "manner" and "many"
    model = tiny(tokenizer, seed)
    completions = complete(model, tokenizer, "ba a", top=5, beam_width=1000, max_tokens=4, new_word=True)
    expected = [(text, p) for text, p in brute_force(model, tokenizer, "ba a", 3) if not is_word_char(text[0])][:5]
    assert [c.text for c in completions] == [text for text, _ in expected]
    assert [c.probability for c in completions] == pytest.approx([p for _, p in expected], rel=1e-4)
    assert any(is_word_char(c.text[0]) for c in complete(model, tokenizer, "ba a", top=5))  # open: it may go on


@pytest.mark.parametrize("seed", [0, 1])
def test_line_completions_are_the_likeliest_lines_per_character(tokenizer, seed):
    # issue 32: ranked by probability, the lines were one word long, all "0.0%"
    model = tiny(tokenizer, seed)
    before = score(model, tokenizer, "ab")["log_prob"]
    lines = {}
    for length in range(1, 4):
        for chars in itertools.product(CHARS.replace("\n", ""), repeat=length):
            text = "".join(chars)
            lines[text] = math.exp(score(model, tokenizer, "ab" + text + "\n")["log_prob"] - before)
    expected = sorted(lines, key=lambda text: lines[text] ** (1 / (len(text) + 1)), reverse=True)[:5]
    completions = complete(model, tokenizer, "ab", top=5, until="line", beam_width=1000, max_tokens=4)
    assert [c.text for c in completions] == expected
    assert [c.probability for c in completions] == pytest.approx([lines[text] for text in expected], rel=1e-4)
    assert [c.per_char for c in completions] == sorted((c.per_char for c in completions), reverse=True)


def test_english_completes_a_line_to_its_end_with_its_probability_per_character(capsys):
    assert main(["complete", "--until", "line", "It was a dark and stormy night", "--json"]) == 0
    completions = json.loads(capsys.readouterr().out)["completions"]
    assert len(completions) == 5 and len({c["text"] for c in completions}) == 5
    for completion in completions:  # whole lines, not the first word's end
        assert len(completion["text"].split()) >= 3 and not set(completion["text"]) & set("\r\n")
        assert len(completion["text"]) <= LINE_CHARS + 30
        assert completion["per_char"] == pytest.approx(completion["probability"] ** (1 / (len(completion["text"]) + 1)))
        assert 0.3 < completion["per_char"] < 1
    assert main(["complete", "--until", "line", "It was a dark and stormy night"]) == 0
    table = capsys.readouterr().out
    assert "per char" in table and "0.0%" not in table


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_completion_table_fits_the_screen_and_shows_the_prefix_from_a_words_start(width):
    import io

    from rich.console import Console

    from textgen.terminal.render import print_completions

    prefix = "It was a dark and stormy night, and the rain fell in torr"
    completions = [Completion("ents", 0.4), Completion("id", 0.2), Completion("ential", 3e-9)]
    screen = io.StringIO()
    print_completions(Console(file=screen, width=width), prefix, completions, as_json=False)
    lines = screen.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    for completion, line in zip(completions, lines[1:]):
        shown = re.search(r"^\s*\d+\s+(.*?)\s+(\S+)\s*$", line)
        assert shown.group(1).endswith("torr" + completion.text)
        assert shown.group(1) == prefix + completion.text or re.fullmatch(r"\u2026 \w.*", shown.group(1))
    assert lines[3].split()[-1] == "3e-09"  # not 0.0%
    screen = io.StringIO()
    long_line = Completion("ents, and the wind blew " * 5, 1e-30)
    print_completions(Console(file=screen, width=width), prefix, [long_line], as_json=False, per_char=True)
    shown = screen.getvalue()
    assert all(len(line) <= width for line in shown.splitlines())
    assert re.sub(r"\s+", "", long_line.text) in re.sub(r"\s+|\d+(\.\d)?%|1e-30|\u2026|#|completion|probability|per char",
                                                          "", shown)


def test_subword_completions_are_merged_into_distinct_texts(capsys):
    assert main(["complete", "--model", "reviews", "This movie was absol", "--top", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    texts = [c["text"] for c in result["completions"]]
    assert result["prefix"] == "This movie was absol" and "utely" in texts and len(set(texts)) == 4


def test_the_table_shows_the_prefix_end_and_each_completion(capsys):
    assert main(["complete", "--model", "shakespeare", "ROMEO:\nI will not bre", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "I will not bre" in out and out.count("%") == 3


def test_an_empty_prefix_is_a_one_line_error(capsys):
    assert main(["complete", ""]) != 0
    err = capsys.readouterr().err
    assert err.startswith("textgen: error: the prefix to complete is empty") and "Traceback" not in err


def test_choices_without_interactive_is_a_one_line_error(capsys):
    assert main(["sample", "--choices", "3"]) != 0
    assert "add --interactive" in capsys.readouterr().err


def read_until(fd, pattern, timeout=60.0):
    """What the terminal shows until `pattern` appears in it."""
    seen, deadline = b"", time.monotonic() + timeout
    while pattern.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"{pattern!r} never appeared; the terminal showed {seen.decode(errors='replace')!r}")
        seen += os.read(fd, 4096)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))  # without the terminal's styles


def test_picking_typing_and_letting_the_model_go_on_in_a_real_terminal():
    leader, follower = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "COLUMNS": "100"}
    process = subprocess.Popen([sys.executable, "-m", "textgen", "sample", "--model", "shakespeare", "--interactive",
                                "--choices", "3", "--length", "12", "--seed", "0"],
                               stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    try:
        read_until(leader, "prompt> ")
        os.write(leader, b"I will not bre+\n")  # + keeps the word open
        shown = read_until(leader, "or quit> ")
        picked = re.search(r"1\s+.*?I will not bre(\w+)", shown).group(1)
        os.write(leader, b"1\n")
        assert f"I will not bre{picked}" in read_until(leader, "or quit> ")
        os.write(leader, b" thee\n")
        read_until(leader, "or quit> ")
        os.write(leader, b"\n")  # the model writes --length 12 characters
        shown = read_until(leader, "or quit> ")
        line = re.search(rf"I will not bre{picked} thee(.*)", shown).group(1)
        assert len(line.rstrip("\r")) >= 1
        os.write(leader, b"quit\n")
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        os.close(leader)


def test_choices_take_any_typed_digit_as_text_and_print_the_whole_text_at_the_end(monkeypatch, capsys):
    # issue 34: "²" passed isdigit() and crashed int(); a text over 300 characters was never shown whole
    import io

    long_part = "and so the tale went on " * 20
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"ROMEO:\n²\n①\n{long_part}\n"))  # then EOF
    assert main(["sample", "--model", "shakespeare", "--interactive", "--choices", "3", "--length", "5"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("ROMEO: ² ① " + long_part + "\n")  # each typed word a word of its own


def test_a_number_that_is_no_choice_is_refused_not_added_as_text(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("ROMEO:\n0\n-1\n99\nquit\n"))
    assert main(["sample", "--model", "shakespeare", "--interactive", "--choices", "3", "--length", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "ROMEO:"  # the whole text: none of the numbers was added
    assert all(f"{number} is not a choice; pick 1-3" in captured.err for number in ("0", "-1", "99"))


def test_complete_refuses_an_empty_label_as_sample_does(capsys):
    assert main(["complete", "--model", "reviews-label", "--label", " ", "This film"]) == 1
    assert "--label '' names no label" in capsys.readouterr().err


def test_the_commands_suggested_after_training_paste_into_a_shell(tmp_path):
    import io
    import shlex

    from rich.console import Console

    from textgen.terminal.interactive import show_next_steps

    screen = io.StringIO()
    show_next_steps(Console(file=screen, width=200), "classify", tmp_path / "my runs" / "x", "my reviews.csv")
    commands = [line.strip() for line in screen.getvalue().splitlines() if line.strip().startswith("textgen ")]
    assert commands and all(str(tmp_path / "my runs" / "x") in shlex.split(command) for command in commands)
    assert "my reviews.csv" in shlex.split(commands[-1])


def test_a_space_typed_after_a_word_completes_the_next_word_on_a_subword_model():
    # issue 34: "This movie was " proposed "rated", "fully", "banned": the lone space read as a rare piece
    import textgen

    generator = textgen.load("reviews", device="cpu")
    spaced = generator.complete("This movie was ", top=5)
    plain = [c for c in generator.complete("This movie was", top=20) if c.text.startswith(" ")][:5]
    assert [c.text for c in spaced] == [c.text[1:] for c in plain]
    assert [round(c.probability, 4) for c in spaced] == [round(c.probability, 4) for c in plain]


@pytest.mark.parametrize("text, answer, expected", [
    ("I have been", "lost", ("I have been lost", False)),  # issue 32: "beenlost"
    ("I have been", " lost", ("I have been lost", False)),
    ("Hello", ", said", ("Hello, said", False)),
    ("Hello.", "The", ("Hello. The", False)),
    ("He said (", "quietly", ("He said (quietly", False)),
    ("The", "lo+", ("The lo", True)),
    ("man", "+ner", ("manner", False)),
    ("man", "+", ("man", True)),
    ("", "Hel+", ("Hel", True)),
])
def test_typed_text_is_a_new_word_unless_a_plus_joins_it_or_keeps_it_open(text, answer, expected):
    from textgen.terminal.interactive import add_typed

    assert add_typed(text, answer) == expected
