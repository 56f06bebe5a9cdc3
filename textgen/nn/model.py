"""Stacked LSTM/GRU/RNN language model: `forward(ids, state) -> (logits, state)`.

Recurrent state is passed in and returned, never kept on the module, so texts never leak into
each other. Built on `nn.LSTM` / `nn.GRU` / `nn.RNN` so the cuDNN and oneDNN kernels run.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch.overrides import TorchFunctionMode
from torch import nn
from torch.nn import functional as F

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textgen.config import ClassifierConfig, ModelConfig
from textgen.data.ngrams import signed_ids
from textgen.errors import ConfigError

GATE_COUNT = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per layer


def check_memory(needed: float, what: str, fix: str, device: torch.device | None = None) -> None:
    """Refuse, before allocating, `what` when it needs about `needed` bytes, more than the machine
    (or the GPU) has."""
    if device is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > total:
        raise ConfigError(f"{what} needs about {needed / 1e9:,.1f} GB of memory, more than the {total / 1e9:,.1f} GB "
                          f"{'this GPU' if device is not None and device.type == 'cuda' else 'this machine'} has; "
                          f"{fix}")


def training_bytes(config: ModelConfig, vocab_size: int, batch_size: int, seq_len: int) -> float:
    """About how many bytes training `config` takes in float32: the weights with their gradients and
    AdamW's two moments, and one window's activations kept for the backward pass."""
    gates, hidden, embed = GATE_COUNT[config.cell], config.hidden_size, config.embed_size
    weights = 2 * vocab_size * embed + config.num_layers * gates * hidden * (max(embed, hidden) + hidden + 2)
    activations = batch_size * seq_len * (embed + config.num_layers * hidden * (2 * gates + 2) + 3 * vocab_size)
    return 4.0 * (4 * weights + activations)

State = tuple[torch.Tensor, torch.Tensor] | torch.Tensor


class LSTMGates(NamedTuple):
    """An LSTM layer's gates in torch's order (i, f, g, o): the chunks of hidden_size rows of its
    stacked weights and biases, and of the pre-activations they give."""

    input: torch.Tensor
    forget: torch.Tensor
    candidate: torch.Tensor
    output: torch.Tensor


class GRUGates(NamedTuple):
    """A GRU layer's gates in torch's order (r, z, n), as `LSTMGates`."""

    reset: torch.Tensor
    update: torch.Tensor
    candidate: torch.Tensor


GATES = {"lstm": LSTMGates, "gru": GRUGates}


def split_gates(cell: str, stacked: torch.Tensor) -> LSTMGates | GRUGates:
    """The gates of `cell` ("lstm" or "gru") in `stacked` (..., gates * width), split along the last dim."""
    layout = GATES[cell]
    return layout._make(stacked.chunk(len(layout._fields), dim=-1))


def gate_rows(cell: str, gate: str, hidden_size: int) -> slice:
    """The rows of `gate` in a layer's stacked weights or biases (or columns of its pre-activations)."""
    index = GATES[cell]._fields.index(gate)
    return slice(index * hidden_size, (index + 1) * hidden_size)


def resolve_device(requested: str) -> torch.device:
    """The torch device for --device (auto: CUDA, else Apple MPS, else CPU)."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for but this machine has no Apple GPU; use --device cpu")
    if requested == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(requested)


def detach_state(state: State | None) -> State | None:
    """The same state cut from the graph, so backprop stops at the window edge (truncated BPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def select_state(state: State, index: torch.Tensor) -> State:
    """The state of the batch rows in `index` (beam search and finished samples reorder rows)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def recurrent_layers(config: ModelConfig, bidirectional: bool = False,
                     input_size: int | None = None) -> nn.LSTM | nn.GRU | nn.RNN:
    """The stacked LSTM/GRU/tanh RNN for `config` reading `input_size` features (default: the
    embedding width), LSTM forget-gate biases at 1.

    An LSTM that ties weights projects its output down to the embedding width, which makes tying
    possible for any hidden size above it; a GRU or RNN can only tie when the widths already match.
    """
    project = config.tie_weights and config.cell == "lstm" and config.hidden_size > config.embed_size
    rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.cell]
    extra = {"proj_size": config.embed_size} if project else {}
    if config.cell == "rnn":
        extra["nonlinearity"] = "tanh"
    rnn = rnn_class(input_size or config.embed_size, config.hidden_size, config.num_layers, batch_first=True,
                    dropout=config.dropout if config.num_layers > 1 else 0.0,
                    bidirectional=bidirectional, **extra)
    if config.cell == "lstm":
        # a forget bias of 1 lets memory flow early on
        forget = gate_rows("lstm", "forget", config.hidden_size)
        with torch.no_grad():
            for name, bias in rnn.named_parameters():
                if name.startswith("bias_ih"):
                    bias[forget].fill_(1.0)
                elif name.startswith("bias_hh"):
                    bias[forget].zero_()
    return rnn


class LanguageModel(nn.Module):
    """Embedding -> stacked LSTM/GRU/RNN -> linear output over the vocabulary.

    A model conditioned on labels (`config.label_names`) concatenates a learned label embedding to
    every token's: label id i + 1 is `label_names[i]`, and id 0 is "no label", learned by label
    dropout, so the same model writes and scores text with or without one. Measured against the
    label as the initial state instead, it steers and scores as well (docs/steering.md, "Label as
    input or as initial state"; the experiment is in commit 279dc68).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 2:
            raise ValueError("ModelConfig.vocab_size must come from the tokenizer")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_size)
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        label_width = config.label_embed_size if config.label_names else 0
        self.label_embedding = nn.Embedding(len(config.label_names) + 1, label_width) if label_width else None
        self.rnn = recurrent_layers(config, input_size=config.embed_size + label_width)
        output_size = self.rnn.proj_size or config.hidden_size
        self.tied = config.tie_weights and output_size == config.embed_size
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.output = nn.Linear(output_size, config.vocab_size)
        if self.tied:
            self.output.weight = self.embedding.weight
        nn.init.normal_(self.embedding.weight, std=0.1 if self.tied else 1.0)
        nn.init.zeros_(self.output.bias)

    def encode(self, ids: torch.Tensor, state: State | None = None, labels: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, State]:
        """Top-layer outputs (batch, seq, width) and the new state, for heads other than the LM.
        `labels`: label ids (batch,) or (batch, seq) of a conditioned model (None: no label)."""
        return self.rnn(self.rnn_inputs(ids, labels), state)

    def rnn_inputs(self, ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """What the first recurrent layer reads (batch, seq, features): each token's embedding, and
        for a conditioned model its label's (`labels` as `encode` takes them)."""
        inputs = self.embed_dropout(self.embedding(ids))
        if self.label_embedding is not None:
            if labels is None:
                labels = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
            if labels.dim() == 1:
                labels = labels[:, None].expand(ids.shape)
            inputs = torch.cat([inputs, self.label_embedding(labels).to(inputs.dtype)], dim=-1)
        elif labels is not None:
            raise ValueError("labels given to a language model that was not trained with --condition")
        return inputs

    def forward(self, ids: torch.Tensor, state: State | None = None, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, State]:
        """Next-token logits (batch, seq, vocab) for `ids` (batch, seq), and the state after them;
        `labels` as `encode` takes them."""
        outputs, state = self.encode(ids, state, labels)
        return self.output(self.output_dropout(outputs)), state


def grow_vocabulary(model: LanguageModel, config: ModelConfig) -> LanguageModel:
    """`model`'s weights in a model for `config`: the same shape, other dropouts, possibly more
    tokens, and possibly conditioned on labels where `model` was not. Existing rows keep their
    weights; each new token's embedding (and untied output row) starts as the mean of the real
    tokens' rows, an average character, and its output bias at their median, so it starts about as
    likely as a typical character: it neither dominates the softmax nor vanishes from it. New label
    inputs get zero weights into the first layer, so the grown model starts out computing exactly
    what `model` did, whatever the label."""
    added = config.vocab_size - model.config.vocab_size
    grown = LanguageModel(config)
    weights = grown.state_dict()
    for name, value in model.state_dict().items():
        if added and name in ("embedding.weight", "output.weight", "output.bias"):
            real = value[2:]  # ids 0 and 1 are padding and unknown, not characters
            fill = real.median(dim=0).values if name == "output.bias" else real.mean(dim=0)
            value = torch.cat([value, fill.expand(added, *value.shape[1:])])
        if name == "rnn.weight_ih_l0" and value.shape != weights[name].shape:  # the label's new input columns
            value = torch.cat([value, value.new_zeros(value.shape[0], weights[name].shape[1] - value.shape[1])], 1)
        weights[name] = value
    grown.load_state_dict(weights)
    return grown


class Classifier(nn.Module):
    """A language model's embedding and recurrent encoder, concat pooling (last state, max, mean)
    over the valid positions only, and a small head over the classes."""

    def __init__(self, model_config: ModelConfig, config: ClassifierConfig):
        super().__init__()
        if len(config.label_names) < 2:
            raise ValueError("ClassifierConfig.label_names must come from the data (two or more)")
        self.model_config, self.config = model_config, config
        # The same names as LanguageModel, so a language model's weights load into the encoder.
        self.embedding = nn.Embedding(model_config.vocab_size, model_config.embed_size)
        self.embed_dropout = nn.Dropout(model_config.embed_dropout)
        self.rnn = recurrent_layers(model_config, config.bidirectional)
        directions = 2 if config.bidirectional else 1
        width = directions * (self.rnn.proj_size or model_config.hidden_size)
        # ULMFiT's batch norm centres features that every text shares (a character model's are
        # mostly that), which otherwise push every ReLU of the head off at once.
        def norm(width: int) -> list[nn.Module]:
            return [nn.BatchNorm1d(width)] if config.head_norm else []
        self.head = nn.Sequential(
            *norm(3 * width), nn.Dropout(config.head_dropout), nn.Linear(3 * width, config.head_hidden), nn.ReLU(),
            *norm(config.head_hidden), nn.Dropout(config.head_dropout),
            nn.Linear(config.head_hidden, len(config.label_names)),
        )
        if config.ngram_buckets:
            # fastText's linear bag of hashed n-grams: one logit per class per bucket
            self.ngrams = nn.EmbeddingBag(config.ngram_buckets, len(config.label_names), mode="sum")
            self.ngram_bias = nn.Parameter(torch.zeros(len(config.label_names)))
            nn.init.zeros_(self.ngrams.weight)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the bottom up (embedding, each recurrent layer, head), for gradual
        unfreezing and discriminative learning rates."""
        groups = [list(self.embedding.parameters())]
        for layer in range(self.model_config.num_layers):
            groups.append([p for name, p in self.rnn.named_parameters()
                           if name.split("_l")[-1].split("_")[0] == str(layer)])
        groups.append(list(self.head.parameters()))
        if self.config.ngram_buckets:  # a second top group, unfrozen with the head
            groups[-1] += [self.ngrams.weight, self.ngram_bias]
        return groups

    def forward(self, ids: torch.Tensor | None, lengths: torch.Tensor | None,
                bags: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Class logits (batch, classes) from the evidence `config.features` names: the encoder over
        padded `ids` (batch, time) of the given `lengths`, and/or the hashed n-gram `bags` (bucket ids,
        offsets) of `ngrams.ngram_bags`, which the encoder alone does not need, nor n-grams `ids`."""
        features = self.config.features
        if features == "recurrent":
            return self.recurrent_logits(ids, lengths)
        if bags is None:
            raise ValueError(f"features {features!r} need the texts' n-gram bags")
        if features == "ngram":
            return self.ngram_logits(*bags)
        weight = self.config.ngram_weight
        return (1 - weight) * self.recurrent_logits(ids, lengths).float() + weight * self.ngram_logits(*bags)

    def ngram_logits(self, ids: torch.Tensor, offsets: torch.Tensor, bucket_scale: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Class logits (texts, classes) of the hashed n-gram bags: each text's buckets summed and
        divided by the square root of their count, so that long and short texts score on one scale
        (`bucket_scale`: a multiplier per bucket while training, NB-SVM's ratios)."""
        return bag_logits(self.ngrams.weight, self.ngram_bias, ids, offsets, bucket_scale)

    def recurrent_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, classes) of the encoder and head over padded `ids` (batch, time)."""
        if not self.config.bidirectional and ids.shape[1] > self.config.max_len:
            return self.classify_pooled(self._pool_in_chunks(ids, lengths.to(ids.device)))
        embedded = self._embed(ids)
        valid = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None])
        valid = valid.unsqueeze(-1)
        if self.config.bidirectional:
            # The backward direction must start at each text's own end: pack the batch.
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            outputs, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=ids.shape[1])
            final = state[0] if isinstance(state, tuple) else state  # (layers * 2, batch, width)
            last = final[-2:].transpose(0, 1).flatten(1)
        else:
            # Reading forwards, a position never sees the padding after it, so the padded batch
            # gives the packed result on the faster unpacked kernels.
            outputs, _ = self.rnn(embedded)  # (batch, time, width)
            ends = (lengths.to(ids.device) - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])
            last = outputs.gather(1, ends).squeeze(1)
        largest = outputs.masked_fill(~valid, float("-inf")).amax(dim=1)
        mean = (outputs * valid).sum(dim=1) / lengths.to(outputs.device, outputs.dtype)[:, None]
        return self.classify_pooled(torch.cat([last, largest, mean], dim=1))

    def classify_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Class logits (texts, classes) from pooled features (texts, 3 * width)."""
        if self.training and self.config.head_norm and pooled.shape[0] == 1:
            # batch statistics need two texts: a lone one (an epoch's remainder) uses the running ones
            norms = [module for module in self.head if isinstance(module, nn.BatchNorm1d)]
            for module in norms:
                module.eval()
            try:
                return self.head(pooled)
            finally:
                for module in norms:
                    module.train()
        return self.head(pooled)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        embedded = self.embed_dropout(self.embedding(ids))
        if self.training and self.config.token_dropout:
            # dropout1d zeroes whole "channels": with (batch, time, width) those are the tokens
            embedded = F.dropout1d(embedded, self.config.token_dropout)
        return embedded

    def _pool_in_chunks(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Concat pooling (last, max, mean) over whole texts read `max_len` positions at a time with
        the state carried between chunks: the same result as one pass, with activations bounded by
        the chunk. Gradients flow through the last chunk only (and the state is cut before it)."""
        chunk_len = self.config.max_len
        time_steps = ids.shape[1]
        last_start = (time_steps - 1) // chunk_len * chunk_len
        state = last = largest = total = None
        for start in range(0, time_steps, chunk_len):
            with torch.set_grad_enabled(torch.is_grad_enabled() and start == last_start):
                outputs, state = self.rnn(self._embed(ids[:, start:start + chunk_len]), state)  # (batch, chunk, width)
            state = detach_state(state)
            positions = torch.arange(start, start + outputs.shape[1], device=outputs.device)
            valid = (positions[None, :] < lengths[:, None]).unsqueeze(-1)
            chunk_max = outputs.masked_fill(~valid, float("-inf")).amax(dim=1)
            chunk_sum = (outputs * valid).sum(dim=1)
            end = (lengths - 1 - start).clamp(0, outputs.shape[1] - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])
            ends_here = ((lengths - 1 >= start) & (lengths - 1 < start + outputs.shape[1]))[:, None]
            chunk_last = outputs.gather(1, end).squeeze(1)
            if last is None:
                last, largest, total = chunk_last, chunk_max, chunk_sum
            else:
                last = torch.where(ends_here, chunk_last, last)
                largest, total = torch.maximum(largest, chunk_max), total + chunk_sum
        mean = total / lengths.to(total.dtype)[:, None]
        return torch.cat([last, largest, mean], dim=1)


def bag_logits(table: torch.Tensor, bias: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor,
               bucket_scale: torch.Tensor | None = None) -> torch.Tensor:
    """The rows of `table` (buckets, width) that each bag of bucket `ids` (starting at `offsets`) holds,
    summed (a negated word's, held as -(bucket + 1), subtracted) and divided by the square root of
    their count, plus `bias` (`Classifier.ngram_logits`)."""
    counts = torch.diff(offsets, append=torch.tensor([len(ids)], device=offsets.device))
    weights = counts.clamp(min=1).float().rsqrt().repeat_interleave(counts, output_size=len(ids))
    ids, signs = signed_ids(ids)  # a negated word's buckets count against it (--negation-sign)
    if signs is not None:
        weights = weights * signs
    if bucket_scale is not None:
        weights = weights * bucket_scale[ids]
    return F.embedding_bag(ids, table, offsets, mode="sum", per_sample_weights=weights) + bias


def count_parameters(model: nn.Module) -> int:
    """Distinct trainable parameters (tied weights count once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lead(logits: torch.Tensor) -> torch.Tensor:
    """How far each row's largest logit is ahead of its second (texts whose n-gram logits lead by more
    than `ClassifierConfig.decisive_margin` are labelled by the n-grams alone)."""
    top = logits.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


class ShapesOnly(TorchFunctionMode):
    """Inside it `torch.nn.init` fills nothing: a model built on the meta device has no values, and
    filling them anyway imports torch._dynamo (normal_'s meta kernel), a second of every cold start."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))
