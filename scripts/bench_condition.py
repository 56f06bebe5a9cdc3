"""Label as input or as initial state: which conditions a language model better, measured.

Two conditioned variants of the bundled `reviews` model (--base), each fine-tuned for the same wall
time on the same batches, from the same seed, with the same optimizer and schedule:

- input: the shipped way, textgen's `LanguageModel` with `--condition`: a learned 16-wide label
  embedding concatenated to every token's embedding (its new input columns start at zero);
- state: the label read once, as the initial state: a learned 16-wide label embedding mapped by a
  linear layer (starting at zero) to (h0, c0) of every layer; the tokens are read without it.

Both start out computing exactly what `reviews` does, whatever the label. The initial state only
means something where a text starts, so both train on per-review windows: each row is a newline
(what primes generation) and the first --window tokens of one labelled IMDb training review, under
that review's label, withheld (id 0, "no label") from --label-dropout of the rows. Then each, and
`reviews`, is measured on IMDb validation: bits per character of the same windows of --val-reviews
reviews with the true label and with it withheld, and the share of --samples samples per label
(--length characters, --temperature) that the bundled `sentiment` classifier judges as the label
asked for. Prints one JSON object (progress on stderr).

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_condition.py --minutes 15
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import textgen
from textgen.config import DataConfig, TrainConfig
from textgen.data.corpus import load_corpus, stream_rows
from textgen.nn.model import LanguageModel, grow_vocabulary
from textgen.nn.precision import autocast, cpu_name, precision_context, resolve_precision
from textgen.generate.sampling import start_token
from textgen.training.trainer import learning_rate_factor

LN2 = float(np.log(2.0))


class InputLabel(nn.Module):
    """textgen's conditioned `LanguageModel`: the label embedding concatenated to every token's."""

    def __init__(self, base: LanguageModel, label_names: tuple[str, ...], label_embed_size: int):
        super().__init__()
        config = dataclasses.replace(base.config, condition="label", label_names=label_names,
                                     label_embed_size=label_embed_size)
        self.model = grow_vocabulary(base, config)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, state=None):
        """Logits (batch, seq, vocab) and state; `labels` (batch,) is read with every token."""
        return self.model(ids, state, labels)


class StateLabel(nn.Module):
    """`base` read from an initial state that a learned label embedding sets: (h0, c0) of every layer
    are a linear map of the label's embedding, zero at first, so it starts as `base` does."""

    def __init__(self, base: LanguageModel, label_names: tuple[str, ...], label_embed_size: int):
        super().__init__()
        self.model = copy.deepcopy(base)
        self.layers, self.hidden = base.config.num_layers, base.config.hidden_size
        self.label_embedding = nn.Embedding(len(label_names) + 1, label_embed_size)
        self.initial_state = nn.Linear(label_embed_size, 2 * self.layers * self.hidden)
        nn.init.zeros_(self.initial_state.weight)
        nn.init.zeros_(self.initial_state.bias)

    def start_state(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h0, c0), each (layers, batch, hidden), for label ids `labels` (batch,)."""
        both = self.initial_state(self.label_embedding(labels)).view(len(labels), 2, self.layers, self.hidden)
        return both[:, 0].transpose(0, 1).contiguous(), both[:, 1].transpose(0, 1).contiguous()

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, state=None):
        """Logits (batch, seq, vocab) and state; `labels` (batch,) sets the state when none is given."""
        if state is None:
            state = self.start_state(labels)
        return self.model(ids, state)


class BaseModel(nn.Module):
    """The unconditioned model from its zero state; labels are ignored (the reference)."""

    def __init__(self, base: LanguageModel):
        super().__init__()
        self.model = base

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, state=None):
        return self.model(ids, state)


VARIANTS = {"input": InputLabel, "state": StateLabel}


def review_windows(corpus, split: str, tokenizer, window: int, rows: list[int] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (reviews, window + 1) padded, label ids (reviews,): 1 + the label index) of the labelled
    reviews of `split` (those at `rows`, else all): a newline, then each review's first `window`
    tokens as the language-modelling stream has them (the text and its newline)."""
    data = corpus.splits[split]
    if rows is not None:
        data = data.select(rows)
    labels = np.asarray(data[corpus.label_column], dtype=np.int64)
    labelled = np.flatnonzero(labels >= 0)
    texts = [data[corpus.text_column][i] for i in labelled]
    # the first window tokens never reach past 40 characters a token; cutting saves encoding whole reviews
    texts = [text[:40 * window] for text in texts]
    encoded = tokenizer.encode_batch(stream_rows(texts, line_rows=False))
    ids = np.full((len(encoded), window + 1), tokenizer.pad_id, dtype=np.int64)
    ids[:, 0] = start_token(tokenizer)
    for row, review in enumerate(encoded):
        ids[row, 1:1 + min(window, len(review))] = review[:window]
    return torch.from_numpy(ids), torch.from_numpy(labels[labelled] + 1)


def train(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace, pad_id: int,
          precision: str) -> dict:
    """Fine-tune `model` for `args.minutes` of wall time; steps, loss curve and timing."""
    config = TrainConfig(lr=args.lr, warmup_steps=args.warmup_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=config.lr)
    order = np.random.default_rng(args.seed)  # the same batches and label dropout for every variant
    torch.manual_seed(args.seed)  # the same dropout masks as far as the variants' shapes allow
    budget, losses, step, position = args.minutes * 60.0, [], 0, len(ids)
    load_before = os.getloadavg()[0]
    model.train()
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < budget:
        if position + args.batch_size > len(ids):
            permutation, position = order.permutation(len(ids)), 0
        rows = torch.from_numpy(permutation[position:position + args.batch_size])
        position += args.batch_size
        batch, batch_labels = ids[rows], labels[rows].clone()
        batch_labels[torch.from_numpy(order.random(len(rows)) < args.label_dropout)] = 0
        factor = learning_rate_factor(step, elapsed / budget, config)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * factor
        with autocast(precision, torch.device("cpu")):
            logits, _ = model(batch[:, :-1], batch_labels)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), ignore_index=pad_id)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            print(json.dumps({"step": step, "seconds": round(elapsed, 1), "loss": np.mean(losses[-50:])}),
                  file=sys.stderr, flush=True)
    model.eval()
    ends = min(args.loss_window, len(losses))
    return {"steps": step, "train_seconds": time.perf_counter() - started,
            "seconds_per_step": (time.perf_counter() - started) / max(1, step),
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
            "loss_first": float(np.mean(losses[:ends])), "loss_last": float(np.mean(losses[-ends:])),
            "loss_every_50_steps": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)]}


@torch.no_grad()
def bits_per_char(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, chars: int, pad_id: int) -> float:
    """Bits per character of the windows `ids` (read under `labels`) in fp32."""
    total = 0.0
    for start in range(0, len(ids), 50):
        batch = ids[start:start + 50]
        logits, _ = model(batch[:, :-1], labels[start:start + 50])
        total += F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), ignore_index=pad_id,
                                 reduction="sum").item()
    return total / LN2 / chars


@torch.no_grad()
def sample(model: nn.Module, tokenizer, labels: torch.Tensor, length: int, temperature: float, seed: int
           ) -> list[str]:
    """One sample of `length` characters per label id in `labels`, from a newline, in fp32."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(labels), 1), start_token(tokenizer), dtype=torch.long)
    generated, state = [], None
    banned = torch.tensor([tokenizer.pad_id, tokenizer.unk_id])
    for step in range(4 * length):
        logits, state = model(tokens, labels, state)
        logits = logits[:, -1].float() / temperature
        logits[:, banned] = float("-inf")
        tokens = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        generated.append(tokens)
        if step % 16 == 15:
            texts = [tokenizer.decode(row) for row in torch.cat(generated, 1).tolist()]
            if min(len(text) for text in texts) >= length:
                break
    return [tokenizer.decode(row)[:length] for row in torch.cat(generated, 1).tolist()]


def judged_shares(judge, texts: list[str], asked: list[str], names: list[str]) -> dict:
    """The share of `texts` judged as the label `asked` of each, per label and on average."""
    verdicts = [prediction.label for prediction in judge.classify(texts)]
    shares = {name: float(np.mean([v == name for v, a in zip(verdicts, asked) if a == name])) for name in names}
    return {**shares, "mean": float(np.mean(list(shares.values())))}


def measure(model: nn.Module, tokenizer, judge, names: list[str], validation: tuple, chars: int,
            args: argparse.Namespace, conditioned: bool) -> dict:
    """Bits per character with and without the label, and the judged share of steered samples."""
    val_ids, val_labels = validation
    pad_id = tokenizer.pad_id
    result = {"bits_per_char_no_label": bits_per_char(model, val_ids, torch.zeros_like(val_labels), chars, pad_id)}
    started = time.perf_counter()
    if conditioned:
        result["bits_per_char_with_label"] = bits_per_char(model, val_ids, val_labels, chars, pad_id)
        result["label_gain_bits_per_char"] = result["bits_per_char_no_label"] - result["bits_per_char_with_label"]
        asked = torch.arange(len(names)).repeat_interleave(args.samples) + 1
        texts = sample(model, tokenizer, asked, args.length, args.temperature, args.seed)
        result["steered_share"] = judged_shares(judge, texts, [names[i - 1] for i in asked], names)
        result["example"] = {names[i - 1]: texts[(i - 1) * args.samples][:200] for i in range(1, len(names) + 1)}
    unlabelled = sample(model, tokenizer, torch.zeros(args.samples, dtype=torch.long), args.length, args.temperature,
                        args.seed + 1)
    verdicts = [prediction.label for prediction in judge.classify(unlabelled)]
    result["no_label_judged_share"] = {name: verdicts.count(name) / len(verdicts) for name in names}
    result["measure_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="input,state", help="comma-separated: input, state")
    parser.add_argument("--base", default="reviews", help="the unconditioned language model both start from")
    parser.add_argument("--judge", default="sentiment", help="the classifier that labels the samples")
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall time per variant")
    parser.add_argument("--window", type=int, default=160, help="tokens of each review's start to train and score")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, cosine over the time)")
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--label-dropout", type=float, default=0.2)
    parser.add_argument("--label-embed-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=200, help="samples per label (and unlabelled)")
    parser.add_argument("--length", type=int, default=400, help="characters per sample")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--val-reviews", type=int, default=500, help="IMDb validation reviews to score (evenly spaced)")
    parser.add_argument("--loss-window", type=int, default=25, help="steps averaged for the first and last loss")
    args = parser.parse_args()
    started = time.perf_counter()
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    base = textgen.load(args.base, "cpu", "language_model")
    judge = textgen.load(args.judge, "cpu", "classifier")
    tokenizer = base.tokenizer
    corpus = load_corpus(DataConfig(corpus="imdb"), task="lm", condition="label")
    names = list(corpus.label_names)
    train_ids, train_labels = review_windows(corpus, "train", tokenizer, args.window)
    validation_rows = len(corpus.splits["validation"])
    spaced = list(range(0, validation_rows, max(1, validation_rows // args.val_reviews)))[:args.val_reviews]
    validation = review_windows(corpus, "validation", tokenizer, args.window, spaced)
    targets = validation[0][:, 1:]
    chars = sum(len(tokenizer.decode(row[row != tokenizer.pad_id])) for row in targets.numpy())
    result = {"command": " ".join(sys.argv[1:]), "cpu": cpu_name(),
              "threads": torch.get_num_threads(), "precision": precision, "labels": names,
              "minutes": args.minutes, "window": args.window, "batch_size": args.batch_size, "lr": args.lr,
              "warmup_steps": args.warmup_steps, "label_dropout": args.label_dropout, "seed": args.seed,
              "train_reviews": len(train_ids), "val_reviews": len(validation[0]),
              "val_tokens": int((targets != tokenizer.pad_id).sum()), "val_chars": chars,
              "samples_per_label": args.samples, "length": args.length, "temperature": args.temperature}
    reference = BaseModel(copy.deepcopy(base.model)).eval()
    result["reviews"] = measure(reference, tokenizer, judge, names, validation, chars, args, conditioned=False)
    print(json.dumps({"reviews": result["reviews"]}), file=sys.stderr, flush=True)
    for name in args.variants.split(","):
        model = VARIANTS[name](copy.deepcopy(base.model), tuple(names), args.label_embed_size)
        model.eval()
        with torch.no_grad():  # both variants start out as `reviews`, whatever the label
            probe = validation[0][:8, :-1]
            before = max((model(probe, torch.full((8,), label))[0] - reference(probe, None)[0]).abs().max().item()
                         for label in range(len(names) + 1))
        with precision_context(precision, device):
            trained = train(model, train_ids, train_labels, args, tokenizer.pad_id, precision)
        result[name] = {"start_max_logit_difference_from_base": before, **trained,
                        **measure(model, tokenizer, judge, names, validation, chars, args, conditioned=True)}
        print(json.dumps({name: result[name]}), file=sys.stderr, flush=True)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
