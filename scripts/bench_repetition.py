"""No loops: the repetition guard and the sample report, on models fine-tuned on text far from `english`'s books.

Three texts of about 100 KB each, with held-out text of the same kind: Python source (the standard
library's public top-level modules in name order, each cut at 10,000 characters), verse (tiny
Shakespeare) and short lines (rotten_tomatoes sentences, one a line). Stages:

- transfer: each text trained for --minutes from `english` (--init-from) and from scratch; the
  validation bits per character of each run's best checkpoint.
- cost: what the guard costs a text that truly repeats: the held-out text's bits per character under
  the processed distribution (temperature, then the guard reading the true history) against the
  same temperature without the guard, at each --temperatures.
- loops: --samples samples of --length characters at temperature 0.5 from each fine-tuned run, with
  the default guard and without (--repeat-guard 0): each sample's report (the longest span it repeats
  within itself, copied share, distinct 4-grams against the training text's).

Run it pinned to one core, alone:

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_repetition.py

Prints one JSON report; needs TEXTGEN_DATA to hold tiny_shakespeare and rotten_tomatoes. The texts and
runs are kept in --runs-dir; --reuse-runs measures the runs already there instead of training them.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sysconfig
import time
from pathlib import Path

import harness
import torch
import torch.nn.functional as F

from textgen.config import SampleConfig
from textgen.generate.processors import GUARD_SPAN, GUARD_WINDOW, apply_processors
from textgen.generate.sampling import PRIME_CHUNK, _processors, encode_text, start_token
from textgen.metrics import bits_per_char
from textgen.recipes.models import load

TRAIN_CHARS = VALIDATION_CHARS = 100_000
CHARS_PER_SOURCE_FILE = 10_000  # so that no one long module is most of the code text
METHODS = {"english": ["--init-from", "english"], "scratch": ["--init-from", "none"]}
PROMPT_CHARS = 200  # each sample continues the held-out text's first lines, up to this many characters


def code_text() -> str:
    """Python source: the standard library's top-level modules in name order, each cut at 10,000
    characters, until there is enough for training and validation."""
    parts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("[!_]*.py")):  # not the private or generated
        part = path.read_text(encoding="utf-8", errors="replace")[:CHARS_PER_SOURCE_FILE]
        parts.append(part)
        total += len(part)
        if total >= TRAIN_CHARS + VALIDATION_CHARS:
            break
    return "\n".join(parts)


def lines_of(path: Path, limit: int) -> str:
    """The `text` fields of a jsonl file, one a line, up to `limit` characters of whole lines."""
    lines, total = [], 0
    for row in path.read_text().splitlines():
        line = json.loads(row)["text"].replace("\n", " ")
        if total + len(line) + 1 > limit:
            break
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def write_texts(kind: str, data_dir: Path, folder: Path) -> dict:
    """train.txt and validation.txt of one kind of text in `folder`; their sizes."""
    if kind == "code":
        text = code_text()
        train, validation = text[:TRAIN_CHARS], text[TRAIN_CHARS:TRAIN_CHARS + VALIDATION_CHARS]
    elif kind == "verse":
        train = (data_dir / "tiny_shakespeare" / "train.txt").read_text()[:TRAIN_CHARS]
        validation = (data_dir / "tiny_shakespeare" / "validation.txt").read_text()[:VALIDATION_CHARS]
    else:
        train = lines_of(data_dir / "rotten_tomatoes" / "train.jsonl", TRAIN_CHARS)
        validation = lines_of(data_dir / "rotten_tomatoes" / "validation.jsonl", VALIDATION_CHARS)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(train)
    (folder / "validation.txt").write_text(validation)
    return {"train_chars": len(train), "validation_chars": len(validation)}


def guard_cost(run: Path, text: str, temperature: float, strength: float, batch: int = 256) -> dict:
    """Bits per character of `text` read by the model (teacher forcing), under the sampler's processors at
    `temperature` with the guard of `strength` (reading the true history) and without it."""
    generator = load(str(run), "cpu", "language_model")
    ids = encode_text(generator.tokenizer, text, "text")
    with torch.inference_mode():
        inputs = torch.tensor([[start_token(generator.tokenizer), *ids[:-1]]])
        state, pieces = None, []
        for begin in range(0, inputs.size(1), PRIME_CHUNK):
            logits, state = generator.model(inputs[:, begin:begin + PRIME_CHUNK], state)
            pieces.append(logits[0].float())
        logits, targets = torch.cat(pieces), torch.tensor(ids)
        reach = GUARD_WINDOW + GUARD_SPAN - 1  # the history the guard reads, -1 (no token) before the text
        histories = F.pad(targets, (reach, 0), value=-1)
        nats = {}
        for guard in (0.0, strength):
            processors = _processors(generator.tokenizer, SampleConfig(temperature=temperature, repeat_guard=guard))
            total = 0.0
            for begin in range(0, len(ids), batch):
                count = min(batch, len(ids) - begin)
                rows = histories[begin:begin + count + reach - 1].unfold(0, reach, 1)  # (count, reach): before each
                scores = apply_processors(processors, rows, logits[begin:begin + len(rows)])
                total -= scores.log_softmax(-1).gather(-1, targets[begin:begin + len(rows), None]).sum().item()
            nats[guard] = total
    plain, guarded = (bits_per_char(nats[guard], len(text)) for guard in (0.0, strength))
    return {"bits_per_char": round(plain, 4), "with_guard": round(guarded, 4), "cost": round(guarded - plain, 4)}


def loops(run: Path, prompt: str, length: int, samples: int, guard: float) -> dict:
    """The sample reports of `samples` samples at temperature 0.5 (seeds 0, 1, ...), and the characters
    per second they were written at."""
    started = time.perf_counter()
    lines = harness.captured(["sample", "--model", str(run), "--prompt", prompt, "--length", str(length), "--temperature",
                      "0.5", "--seed", "0", "--num-samples", str(samples), "--json", "--check-copy",
                      "--repeat-guard", str(guard)]).splitlines()
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in lines]
    fields = ("longest_repeat", "longest_copied", "copied_share", "distinct_4", "training_distinct_4")
    return {"guard": guard, "seconds": round(seconds, 1),
            "samples": [{name: record[name] for name in fields} for record in records],
            "longest_repeat_max": max(record["longest_repeat"] for record in records),
            "distinct_4_mean": round(statistics.mean(record["distinct_4"] for record in records), 4),
            "first_sample": records[0]["text"]}


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--kinds", default="code,verse,lines")
    parser.add_argument("--stages", default="transfer,cost,loops")
    parser.add_argument("--minutes", type=float, default=4.0, help="wall time of each training run")
    parser.add_argument("--temperatures", default="0.8,1.0", help="where the guard's cost is measured")
    parser.add_argument("--guard", type=float, default=SampleConfig().repeat_guard, help="the guard's strength")
    parser.add_argument("--samples", type=int, default=4, help="samples per run and setting for the loop check")
    parser.add_argument("--length", type=int, default=2000, help="characters per sample")
    parser.add_argument("--runs-dir", default="runs/bench_repetition", help="where the texts and runs are kept")
    parser.add_argument("--reuse-runs", action="store_true", help="measure the runs already in --runs-dir")
    args = harness.parse(parser, quick={"kinds": "verse", "minutes": 0.1, "samples": 1, "length": 300})
    data_dir = Path(os.environ.get("TEXTGEN_DATA", "corpora"))
    out = Path(args.runs_dir)
    stages = args.stages.split(",")
    result: dict = {"transfer": [], "cost": [], "loops": []}
    for kind in args.kinds.split(","):
        folder = out / "data" / kind
        sizes = write_texts(kind, data_dir, folder)
        runs = {method: out / "runs" / f"{kind}-{method}" for method in METHODS}
        if "transfer" in stages:
            zero_shot = json.loads(harness.captured(["eval", "--model", "english", "--corpus", str(folder),
                                             "--split", "validation", "--json"]))
            result["transfer"].append({"kind": kind, "method": "english_zero_shot",
                                       "bits_per_char": round(zero_shot["bits_per_char"], 4), **sizes})
            harness.progress(result["transfer"][-1])
        if not args.reuse_runs:
            for method, flags in METHODS.items():
                if method != "english" and "transfer" not in stages:
                    continue  # the guard's stages read the fine-tuned run only
                shutil.rmtree(runs[method], ignore_errors=True)
                started = time.perf_counter()
                harness.captured(["train", "--corpus", str(folder), "--out", str(runs[method]),
                          "--time-budget", f"{args.minutes:g}m", *flags])
                bits, step = harness.best_bits_per_char(runs[method])
                record = {"kind": kind, "method": method, "minutes": args.minutes, "bits_per_char": round(bits, 4),
                          "best_step": step, "train_s": round(time.perf_counter() - started, 1), **sizes}
                result["transfer"].append(record)
                harness.progress(record)
        elif "transfer" in stages:
            for method in METHODS:
                bits, step = harness.best_bits_per_char(runs[method])
                result["transfer"].append({"kind": kind, "method": method, "bits_per_char": round(bits, 4),
                                           "best_step": step, **sizes})
        text = (folder / "validation.txt").read_text()
        if "cost" in stages:
            for temperature in map(float, args.temperatures.split(",")):
                record = {"kind": kind, "temperature": temperature, "guard": args.guard,
                          **guard_cost(runs["english"], text, temperature, args.guard)}
                result["cost"].append(record)
                harness.progress(record)
        if "loops" in stages:
            prompt = text[:text.rfind("\n", 0, PROMPT_CHARS) + 1] or text[:PROMPT_CHARS]  # whole lines
            for guard in (0.0, args.guard):
                record = {"kind": kind, "prompt": prompt, **loops(runs["english"], prompt, args.length, args.samples,
                                                                   guard)}
                result["loops"].append(record)
                harness.progress({key: value for key, value in record.items() if key != "first_sample"})
    harness.report(args, {key: value for key, value in result.items() if value})


if __name__ == "__main__":
    main()
