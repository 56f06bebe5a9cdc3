"""Speed of `textgen inspect` on a 10,000-character text with an LSTM 2x384 (the bundled
Shakespeare model's shape; random weights unless --model is given), against nn.LSTM reading the
same text in the same run.

Prints one JSON object: seconds (wall and CPU) for the reference cells' trace of every gate of
every layer, the terminal view of one unit, the JSON of one unit, the HTML page of the whole top
layer, nn.LSTM's forward pass, and with --model the whole `textgen inspect --file F --json`;
median of --repeats. Never asserts on time.

    python scripts/bench_inspect.py [--model RUN] [--chars 10000]
"""

from __future__ import annotations

import contextlib
import io
import json
import string
import tempfile
import time
from pathlib import Path

import harness
import torch
from rich.console import Console

from textgen import cli
from textgen.config import ModelConfig
from textgen.lab.inspection import Unit, load_model, trace_text
from textgen.lab.views import html_page, render_unit, trace_json
from textgen.nn.model import LanguageModel
from textgen.data.tokenizer import CharTokenizer


def timed(function, runs: int) -> dict[str, float]:
    """Median wall and CPU seconds of `function()` over `runs` calls."""
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return {"wall_s": harness.median(wall, 3), "cpu_s": harness.median(cpu, 3)}


def main() -> None:
    parser = harness.parser(__doc__, repeats=3, seed=0)
    parser.add_argument("--model", help="a checkpoint to inspect instead of random weights")
    parser.add_argument("--chars", type=int, default=10_000, help="length of the text")
    args = harness.parse(parser, quick={"repeats": 1, "chars": 500})
    if args.model:
        model, tokenizer, _ = load_model(args.model)
    else:
        tokenizer = CharTokenizer(string.ascii_letters + string.punctuation + " \n")
        model = LanguageModel(ModelConfig(num_layers=2, hidden_size=384, embed_size=384,
                                          vocab_size=tokenizer.vocab_size)).eval()
    alphabet = [c for c in tokenizer.chars if c.isalpha() or c in " \n,.;:'!?"]
    text = "".join(alphabet[i] for i in torch.randint(len(alphabet), (args.chars,)).tolist())
    ids = torch.as_tensor(tokenizer.encode(text))[None]
    trace = trace_text(model, tokenizer, text)
    unit = Unit(1, "cell", 0)

    def terminal() -> None:
        Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=120).print(
            render_unit(trace, unit))

    def baseline() -> None:
        with torch.inference_mode():
            model.rnn(model.embedding(ids))

    def command_line() -> None:
        with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
            (Path(folder) / "text.txt").write_text(text)
            cli.main(["inspect", "--model", args.model, "--file", str(Path(folder) / "text.txt"), "--json"])

    result = {
        "model": args.model or "random LSTM 2x384", "chars": args.chars,
        "trace_every_gate": timed(lambda: trace_text(model, tokenizer, text), args.repeats),
        "terminal_view_one_unit": timed(terminal, args.repeats),
        "json_one_unit": timed(lambda: json.dumps(trace_json(trace, [unit])), args.repeats),
        # every gate of the top layer, or only the unit's gate where all would pass the page's limit
        "html_page_top_layer": timed(lambda: html_page(trace, "bench", unit, layer=1, gate=unit.gate), args.repeats),
        "nn_lstm_forward": timed(baseline, args.repeats),
    }
    if args.model:  # load, trace, write the JSON: what a user waits for
        result["textgen_inspect_json"] = timed(command_line, args.repeats)
    trace_cpu, baseline_cpu = result["trace_every_gate"]["cpu_s"], result["nn_lstm_forward"]["cpu_s"]
    result["trace_over_nn_lstm_cpu"] = round(trace_cpu / baseline_cpu, 2)
    harness.report(args, result)


if __name__ == "__main__":
    main()
