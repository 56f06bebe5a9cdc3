"""Writing with a model at the terminal: samples streamed to stdout, a prompt loop, picking the next
word from the likeliest choices, and what to try after training."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from textgen.generate.completion import complete, is_word_char
from textgen.recipes.sample import Sampling
from textgen.terminal.render import print_completions

log = logging.getLogger("textgen")


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def show_samples(sampling: Sampling, prompt: str, as_json: bool, echo_prompt: bool = True) -> None:
    """Each continuation of `prompt` on stdout: one sample streamed as written, several each whole
    when done, or one JSON object per sample (with its copy check)."""
    request, copies = sampling.request, sampling.copies
    chunks = sampling.chunks(prompt, keep_text=as_json or request.num_samples > 1 or copies is not None)
    shown_prompt = prompt if echo_prompt else ""
    if as_json:
        for chunk in chunks:
            if chunk.sample:
                record = dataclasses.asdict(chunk.sample)
                if copies is not None:
                    record.update(copies.check(chunk.sample.text).fields())
                write(json.dumps(record) + "\n")
    elif request.num_samples == 1:  # memory stays flat at any --length
        write(shown_prompt)
        for chunk in chunks:  # the sample's last chunk ends its line, before any log line about it
            write(chunk.text + ("\n" if chunk.sample else ""))
    else:  # samples finish at different steps; each is shown whole when it does
        for chunk in chunks:
            if chunk.sample:
                write(shown_prompt + chunk.sample.text + "\n---------------\n")


def prompt_loop(sampling: Sampling, console: Console, as_json: bool) -> None:
    """Read a prompt, print its continuation, until EOF or 'quit'."""
    while True:
        console.print("prompt> ", end="", markup=False, highlight=False)
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            return
        show_samples(sampling, line.rstrip("\n"), as_json, echo_prompt=False)


# what each answer does, shown once before the first prompt
CHOICES_HELP = (("3", "adds choice 3; its word is finished, so the next choices begin a new word"),
                ("3+", "adds choice 3 and keeps its word open: the next choices go on with it"),
                ("text", "adds your text as a new word (with a space before it where needed)"),
                ("text+", "keeps its last word open: lo+ gets choices such as lost and love"),
                ("+text", "joins the word before: man, then +ner, makes manner"),
                ("+", "keeps the last word open"),
                ("Enter", "lets the model write on"),
                ("quit", "(or Ctrl-D) ends and prints the whole text"))
KEEP_OPEN = "+"  # at the end of an answer: its last word goes on; at the start: it joins the word before
AFTER_WORD = ".,;:!?)]}\u201d\u00bb"  # punctuation that ends a word's phrase: a typed word after it gets a space


def add_typed(text: str, answer: str) -> tuple[str, bool]:
    """`text` with the typed `answer` added as a new word unless it starts with KEEP_OPEN (then it
    joins the word before), and whether the last word is left open (the answer ends with KEEP_OPEN)."""
    keep_open = answer.endswith(KEEP_OPEN)
    answer = answer[:-1] if keep_open else answer
    if answer.startswith(KEEP_OPEN):
        return text + answer[1:], keep_open
    after_word = bool(text) and (is_word_char(text[-1]) or text[-1] in AFTER_WORD)
    return text + (" " if after_word and is_word_char(answer[:1]) else "") + answer, keep_open


def pick_interactively(sampling: Sampling, choices: int, console: Console) -> None:
    """One text written together. After a first prompt, each turn shows the N likeliest next words;
    a number adds that word, other text is added as typed, Enter lets the model write --length
    characters, and 'quit' (or EOF, or Ctrl-C) ends, printing the whole text: each turn shows only
    its last 300 characters. A word picked or typed is finished, so the next choices begin a new
    one, unless the answer says to keep it open (CHOICES_HELP)."""
    output = Console(soft_wrap=True)
    generator = sampling.generator
    label = sampling.request.label[0] if sampling.request.label else None
    keys = Table.grid(padding=(0, 2))  # the explanations wrap in their column, at any width
    for key, what in CHOICES_HELP:
        keys.add_row(key, what)
    console.print("Writing together: each turn shows the likeliest next words.", markup=False, highlight=False,
                  soft_wrap=False)
    console.print(keys, soft_wrap=False)
    console.print("prompt> ", end="", markup=False, highlight=False)
    line = sys.stdin.readline()
    text, keep_open = add_typed("", line.rstrip("\n"))
    try:
        while line and line.strip() != "quit":
            completions = complete(generator.model, generator.tokenizer, text, choices, label=label,
                                   device=generator.device, new_word=not keep_open)
            shown = text if len(text) <= 300 else "\u2026" + text[-300:].split(" ", 1)[-1]  # from a word's start
            output.print(shown, markup=False, highlight=False, soft_wrap=False)  # wrapped at the screen's width
            print_completions(output, text, completions, as_json=False)
            console.print(f"pick 1-{len(completions)} or type text (+ goes on with a word, as above), Enter for the "
                          f"model, or quit> ", end="", markup=False, highlight=False, soft_wrap=False)
            line = sys.stdin.readline()
            answer = line.rstrip("\n")
            picked = answer.strip()
            number = re.fullmatch(r"([+-]?[0-9]+)(\+?)", picked)
            if number and not 1 <= int(number.group(1)) <= len(completions):
                console.print(f"{number.group(1)} is not a choice; pick 1-{len(completions)}", markup=False,
                              highlight=False)
            elif number and number.group(1).isdigit():  # ASCII digits only: "²" is text
                text, keep_open = text + completions[int(number.group(1)) - 1].text, bool(number.group(2))
            elif not picked and line:  # the model may stop inside a word: choices may finish it or begin another
                text, keep_open = text + "".join(chunk.text for chunk in sampling.chunks(text, keep_text=False)), True
            elif picked != "quit":
                text, keep_open = add_typed(text, answer)
    finally:  # however it ends, the text written together is printed whole
        if text:
            console.print("\nthe whole text:", markup=False, highlight=False)
            write(text + "\n")


def show_training_end(console: Console, setup, result) -> bool:
    """How to continue an interrupted run (True), or a sample and the commands to try next (False)."""
    if result.stop_reason == "interrupted":
        task_flag = "" if setup.train.task == "lm" else " --task classify"
        log.warning("interrupted at step %d; saved %s; continue with: textgen train%s --resume --out %s",
                    result.step, setup.run_dir / "last.pt", task_flag, setup.run_dir)
        return True
    if setup.dist.is_main:
        show_next_steps(console, setup.train.task, setup.run_dir, setup.data.corpus, bool(setup.finetune.init_from))
    return False


def show_next_steps(console: Console, task: str, run_dir: Path, corpus: str, finetuned: bool = False) -> None:
    """After training: a short sample of a language model, and the commands to try next."""
    from textgen.recipes.models import load

    run, corpus = shlex.quote(str(run_dir)), shlex.quote(corpus)  # commands to paste into a shell as they are
    if task == "lm":
        sample = load(run_dir, device="cpu").generate("", length=200, temperature=0.8, seed=0)
        console.print(f"\na sample from {run}:\n", markup=False, highlight=False)
        console.print(sample, markup=False, highlight=False)
        # a model fine-tuned on a small text may recite it: the copy check says how much
        check = " --check-copy" if finetuned else ""
        commands = [f"textgen sample --model {run} --length 500 --temperature 0.8{check}",
                    f"textgen eval --model {run} --corpus {corpus} --split validation"]
    else:
        commands = [f'textgen classify --model {run} "a text to label"',
                    f"textgen classify --model {run} --eval --corpus {corpus} --split validation"]
    console.print("\nnext, try:\n" + "\n".join(f"  {command}" for command in commands), markup=False,
                  highlight=False)
