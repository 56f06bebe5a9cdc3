"""Training speed of textgen's own loop against a bare nn.LSTM loop of the same shape, run
alternately in one process; plus model FLOPs utilisation against a matrix multiply timed here.

Prints JSON. Usage: python scripts/bench_train.py [--repeats 3] [--steps 8] [--precision fp32]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import harness
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textgen.data.batches import StreamBatches
from textgen.config import ModelConfig, TrainConfig
from textgen.nn.model import LanguageModel
from textgen.nn.precision import autocast, precision_context
from textgen.training.tasks import LanguageModelTask
from textgen.training.trainer import fit

VOCAB = 65


def bare_loop_tokens_per_second(args, tokens: np.ndarray) -> float:
    """A plain embedding + nn.LSTM + linear loop with AdamW, the baseline textgen must match."""
    torch.manual_seed(0)
    embedding = nn.Embedding(VOCAB, args.hidden)
    lstm = nn.LSTM(args.hidden, args.hidden, args.layers, batch_first=True)
    output = nn.Linear(args.hidden, VOCAB)
    params = [*embedding.parameters(), *lstm.parameters(), *output.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    batch = torch.from_numpy(tokens[: args.batch * (args.seq_len + 1)].astype(np.int64)).view(args.batch, -1)
    device = torch.device("cpu")

    def step():
        with autocast(args.precision, device):
            hidden, _ = lstm(embedding(batch[:, :-1]))
            logits = output(hidden)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with precision_context(args.precision, device):
        step()
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = time.perf_counter() - started
    return args.steps * args.batch * args.seq_len / seconds


def textgen_tokens_per_second(args, tokens: np.ndarray) -> float:
    """Steady-state tokens/s of `trainer.fit`, read from the run's metrics.jsonl."""
    torch.manual_seed(0)
    config = ModelConfig(num_layers=args.layers, hidden_size=args.hidden, embed_size=args.hidden,
                         vocab_size=VOCAB, dropout=args.dropout, output_dropout=args.dropout)
    train = TrainConfig(batch_size=args.batch, seq_len=args.seq_len, max_steps=args.steps + 1,
                        log_interval=args.steps + 1, eval_interval=10**9, checkpoint_interval=10**9,
                        precision=args.precision, device="cpu")
    streams = StreamBatches(tokens, args.batch, args.seq_len)
    task = LanguageModelTask(streams, StreamBatches(tokens[:4096], 4, 64), chars_per_token=1.0, eval_tokens=256)
    with tempfile.TemporaryDirectory() as run_dir:
        fit(LanguageModel(config), task, train, Path(run_dir), {"model": {}}, {}, torch.device("cpu"),
            args.precision)
        records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    # The first logged step includes warm-up; the second record covers the remaining steps.
    return [r["tokens_per_s"] for r in records if "tokens_per_s" in r][-1]


def matmul_flops_per_second(repeats: int = 10) -> float:
    """Peak fp32 FLOP/s of a square matrix multiply here: the best size's median of `repeats`."""
    rates = []
    for size in (1024, 2048, 3072):
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
        rates.append(2 * size**3 / harness.median(times))
    return max(rates)


def training_flops_per_token(layers: int, hidden: int) -> float:
    """Forward + backward FLOPs per token of an LSTM LM (backward costs about twice the forward)."""
    forward = layers * 2 * 4 * hidden * (hidden + hidden) + 2 * hidden * VOCAB
    return 3 * forward


def main() -> None:
    parser = harness.parser(__doc__, repeats=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="textgen's dropout (0 computes exactly what the bare loop does)")
    args = harness.parse(parser, quick={"repeats": 1, "steps": 2, "hidden": 32, "batch": 4, "seq_len": 16})

    tokens = np.random.default_rng(0).integers(0, VOCAB, args.batch * args.seq_len * (args.steps + 3)).astype(np.uint8)
    bare, ours = [], []
    for _ in range(args.repeats):  # alternate so that machine noise hits both alike
        bare.append(bare_loop_tokens_per_second(args, tokens))
        ours.append(textgen_tokens_per_second(args, tokens))
    matmul = matmul_flops_per_second()
    flops = training_flops_per_token(args.layers, args.hidden)
    harness.report(args, {
        "shape": f"lstm {args.layers}x{args.hidden}, batch {args.batch}, seq {args.seq_len}, {args.precision}, "
                 f"textgen dropout {args.dropout}",
        "bare_lstm_tokens_per_s": round(harness.median(bare)),
        "textgen_tokens_per_s": round(harness.median(ours)),
        "ratio_textgen_over_bare": round(harness.median(ours) / harness.median(bare), 3),
        "bare_runs": [round(x) for x in bare],
        "textgen_runs": [round(x) for x in ours],
        "matmul_gflops": round(matmul / 1e9, 1),
        "model_gflops": round(harness.median(ours) * flops / 1e9, 1),
        "model_flops_utilisation": round(harness.median(ours) * flops / matmul, 3),
    })


if __name__ == "__main__":
    main()
