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
                    report = copies.check(chunk.sample.text)
                    record.update(longest_copied=report.longest, copied_share=report.copied_share)
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


def pick_interactively(sampling: Sampling, choices: int, console: Console) -> None:
    """One text written together. After a first prompt, each turn shows the N likeliest next words;
    a number adds that word, other text is added as typed, Enter lets the model write --length
    characters, and 'quit' (or EOF, or Ctrl-C) ends, printing the whole text: each turn shows only
    its last 300 characters."""
    output = Console(soft_wrap=True)
    label = sampling.request.label[0] if sampling.request.label else None
    console.print("prompt> ", end="", markup=False, highlight=False)
    line = sys.stdin.readline()
    text = line.rstrip("\n")
    try:
        while line and line.strip() != "quit":
            completions = sampling.generator.complete(text, choices, label=label)
            output.print(text[-300:], markup=False, highlight=False)
            print_completions(output, text, completions, as_json=False)
            console.print(f"pick 1-{len(completions)}, type text to add, Enter for the model to go on, or quit> ",
                          end="", markup=False, highlight=False)
            line = sys.stdin.readline()
            answer = line.rstrip("\n")
            picked = answer.strip()
            if re.fullmatch(r"[+-]?[0-9]+", picked) and not 1 <= int(picked) <= len(completions):
                console.print(f"{picked} is not a choice; pick 1-{len(completions)}", markup=False, highlight=False)
            elif re.fullmatch(r"[0-9]+", picked):  # ASCII digits: "²" is text
                text += completions[int(picked) - 1].text
            elif not picked and line:
                text += "".join(chunk.text for chunk in sampling.chunks(text, keep_text=False))
            elif picked != "quit":
                text += answer
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
