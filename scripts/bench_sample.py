"""Generation speed of an LSTM 2x512 (random weights, 65 tokens), against baselines from the same run.

Prints one JSON object: chars/s at batch 1 and aggregate at batch 64 (2,000 characters each,
median of --repeats), per-step cost early vs late in the text, a naive loop that re-feeds the whole
text every step, the per-step alternatives that were considered, and the limits set by this
machine's memory bandwidth (batch 1 reads every weight once per step) and matmul speed (batch 64);
the same with `--quantize int8` steps. With `--model RUN --text-file F`, instead: the bits per
character that int8 steps cost a trained model on a text. Never asserts on time.

    python scripts/bench_sample.py [--repeats 3]
"""

from __future__ import annotations

import math
import string
import time

import harness
import torch

from textgen.nn.checkpoint import load_language_model
from textgen.config import ModelConfig, SampleConfig
from textgen.nn.model import LanguageModel
from textgen.generate.sampling import Stepper, start_token, stream
from textgen.data.tokenizer import CharTokenizer


def timed_generation(model, tokenizer, length: int, num_samples: int, quantize: str = "none"
                     ) -> tuple[float, list[float]]:
    """Seconds for the whole generation, and the time at which sample 0 had each character."""
    config = SampleConfig(length=length, num_samples=num_samples, seed=0, quantize=quantize)
    marks: list[float] = []
    started = time.perf_counter()
    for chunk in stream(model, tokenizer, "", config):
        if chunk.index == 0:
            marks.extend([time.perf_counter() - started] * len(chunk.text))
    return time.perf_counter() - started, marks


@torch.inference_mode()
def naive_chars_per_second(model, tokenizer, length: int) -> float:
    """A loop that runs the whole text through the network again for every new character."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.tensor([[start_token(tokenizer)]])
    started = time.perf_counter()
    for _ in range(length):
        logits, _ = model(ids)
        token = torch.multinomial(logits[0, -1].softmax(-1), 1, generator=generator)
        ids = torch.cat([ids, token[None]], 1)
    return length / (time.perf_counter() - started)


@torch.inference_mode()
def step_milliseconds(step, batch: int, hidden: int, steps: int) -> float:
    tokens = torch.full((batch,), 2)
    state = (torch.zeros(2, batch, hidden), torch.zeros(2, batch, hidden))
    for _ in range(3):
        _, state = step(tokens, state)
    started = time.perf_counter()
    for _ in range(steps):
        _, state = step(tokens, state)
    return (time.perf_counter() - started) / steps * 1e3


def alternatives(model, hidden: int) -> dict[str, dict[str, float]]:
    """Milliseconds per step of the ways to run one token through the network."""
    rnn = model.rnn

    def module(tokens, state):
        return model(tokens[:, None], state)

    def module_without_onednn(tokens, state):
        with torch.backends.mkldnn.flags(enabled=False):
            return model(tokens[:, None], state)

    def vf_cells(tokens, state):
        x, hiddens, cells = model.embedding(tokens), [], []
        for layer in range(2):
            x, c = torch._VF.lstm_cell(x, (state[0][layer], state[1][layer]),
                                       *(getattr(rnn, f"{name}_l{layer}") for name in
                                         ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
            hiddens.append(x)
            cells.append(c)
        return model.output(x), (torch.stack(hiddens), torch.stack(cells))

    ways = {"nn_lstm_onednn": module, "nn_lstm_onednn_off": module_without_onednn, "vf_lstm_cell": vf_cells,
            "stepper_fused_matmul": Stepper(model), "stepper_int8": Stepper(model, int8=True)}
    return {name: {"batch_1_ms": round(step_milliseconds(way, 1, hidden, 100), 3),
                   "batch_64_ms": round(step_milliseconds(way, 64, hidden, 20), 3)}
            for name, way in ways.items()}


def memory_bandwidth() -> float:
    """Bytes per second read when summing a 256 MiB tensor (best of 5)."""
    data = torch.ones(64 * 2**20)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - started)
    return data.numel() * data.element_size() / best


def matmul_flops(batch: int, width: int, gates: int) -> float:
    """FLOP/s of the batch-64 step's matmul shape (best of 5)."""
    left, right = torch.randn(batch, width), torch.randn(width, gates)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10):
            left @ right
        best = min(best, (time.perf_counter() - started) / 10)
    return 2 * batch * width * gates / best


@torch.inference_mode()
def stepped_bits_per_char(model, tokenizer, text: str, int8: bool, rows: int = 64) -> float:
    """Bits per character of `text` read one step at a time (teacher forcing), as `rows` streams."""
    ids = torch.as_tensor(tokenizer.encode(text), dtype=torch.long)
    length = len(ids) // rows
    streams = ids[: rows * length].view(rows, length)
    stepper = Stepper(model, int8=int8)
    logits, state = model(streams[:, :1])
    logits, total = logits[:, -1], 0.0
    for position in range(1, length):
        total += logits.log_softmax(-1).gather(-1, streams[:, position:position + 1]).sum().item()
        logits, state = stepper(streams[:, position], state)
    chars = len(tokenizer.decode(streams[:, 1:].flatten().tolist()))
    return -total / chars / math.log(2)


def quantization_cost(run: str, text_file: str) -> dict[str, float]:
    """Bits per character of a text under a trained model, full precision against int8 steps."""
    model, tokenizer, _ = load_language_model(run)
    text = open(text_file, encoding="utf-8").read()
    fp32, int8 = (stepped_bits_per_char(model.eval(), tokenizer, text, int8) for int8 in (False, True))
    return {"model": run, "text": text_file, "fp32_bits_per_char": round(fp32, 4),
            "int8_bits_per_char": round(int8, 4), "int8_extra_bits_per_char": round(int8 - fp32, 4)}


def main() -> None:
    parser = harness.parser(__doc__, repeats=3)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--naive-length", type=int, default=200)
    parser.add_argument("--model", help="a trained run: also measure what int8 steps cost in bits per char")
    parser.add_argument("--text-file", help="the text to score for --model (e.g. its validation split)")
    args = harness.parse(parser, quick={"repeats": 1, "length": 600, "naive_length": 20})
    if args.model:
        harness.report(args, quantization_cost(args.model, args.text_file))
        return

    tokenizer = CharTokenizer.from_texts([string.ascii_letters + string.digits + " \n"])  # 64 chars + 2
    hidden = 512
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(num_layers=2, hidden_size=hidden, embed_size=hidden,
                                      vocab_size=tokenizer.vocab_size)).eval()

    single = [timed_generation(model, tokenizer, args.length, 1) for _ in range(args.repeats)]
    seconds_1 = harness.median(seconds for seconds, _ in single)
    early = harness.median(marks[500] - marks[0] for _, marks in single)
    late = harness.median(marks[-1] - marks[-501] for _, marks in single)
    seconds_64 = harness.median(timed_generation(model, tokenizer, args.length, 64)[0] for _ in range(args.repeats))
    naive = naive_chars_per_second(model, tokenizer, args.naive_length)

    # per step and row: the first layer's hidden weights (its input is a table lookup), the second
    # layer's input and hidden weights, the output layer
    matrices = [model.rnn.weight_hh_l0, model.rnn.weight_ih_l1, model.rnn.weight_hh_l1, model.output.weight]
    weight_bytes = sum(m.numel() * m.element_size() for m in matrices)
    flops_per_char = 2 * sum(m.numel() for m in matrices)
    bandwidth = memory_bandwidth()
    flops = matmul_flops(64, 2 * hidden, 4 * hidden)
    int8_1 = args.length / harness.median(
        timed_generation(model, tokenizer, args.length, 1, "int8")[0] for _ in range(args.repeats))
    int8_64 = 64 * args.length / harness.median(
        timed_generation(model, tokenizer, args.length, 64, "int8")[0] for _ in range(args.repeats))
    chars_1, chars_64 = args.length / seconds_1, 64 * args.length / seconds_64
    harness.report(args, {
        "model": f"lstm 2x{hidden}, vocab {tokenizer.vocab_size}",
        "batch_1_chars_per_s": round(chars_1),
        "batch_64_aggregate_chars_per_s": round(chars_64),
        "batch_1_chars_1_to_500_s": round(early, 4),
        "batch_1_chars_1500_to_2000_s": round(late, 4),
        "late_over_early_step_cost": round(late / early, 3),
        "naive_refeed_chars_per_s": round(naive, 1),
        "naive_refeed_length": args.naive_length,
        "speedup_over_naive": round(chars_1 / naive, 1),
        "step_alternatives_ms": alternatives(model, hidden),
        "weight_bytes_per_step": weight_bytes,
        "memory_bandwidth_gb_per_s": round(bandwidth / 1e9, 2),
        "bandwidth_limit_batch_1_chars_per_s": round(bandwidth / weight_bytes),
        "batch_1_fraction_of_bandwidth_limit": round(chars_1 / (bandwidth / weight_bytes), 3),
        "matmul_gflops": round(flops / 1e9, 1),
        "compute_limit_batch_64_chars_per_s": round(flops / flops_per_char),
        "batch_64_fraction_of_compute_limit": round(chars_64 / (flops / flops_per_char), 3),
        "int8_batch_1_chars_per_s": round(int8_1),
        "int8_batch_64_aggregate_chars_per_s": round(int8_64),
    })


if __name__ == "__main__":
    main()
