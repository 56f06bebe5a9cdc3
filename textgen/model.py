"""Stacked LSTM/GRU language model: `forward(ids, state) -> (logits, state)`.

Recurrent state is passed in and returned, never kept on the module, so texts never leak into
each other. Built on `nn.LSTM` / `nn.GRU` so the cuDNN and oneDNN kernels run.
"""

from __future__ import annotations

import torch
from torch import nn

from textgen.config import ModelConfig

State = tuple[torch.Tensor, torch.Tensor] | torch.Tensor


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


class LanguageModel(nn.Module):
    """Embedding -> stacked LSTM/GRU -> linear output over the vocabulary."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 2:
            raise ValueError("ModelConfig.vocab_size must come from the tokenizer")
        self.config = config
        # An LSTM can project its output down to the embedding width, which makes tying possible
        # for any hidden size above it; a GRU can only tie when the widths already match.
        project = config.tie_weights and config.cell == "lstm" and config.hidden_size > config.embed_size
        output_size = config.embed_size if project else config.hidden_size
        self.tied = config.tie_weights and output_size == config.embed_size

        self.embedding = nn.Embedding(config.vocab_size, config.embed_size)
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        rnn_class = nn.LSTM if config.cell == "lstm" else nn.GRU
        extra = {"proj_size": config.embed_size} if project else {}
        self.rnn = rnn_class(
            config.embed_size, config.hidden_size, config.num_layers, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0, **extra,
        )
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.output = nn.Linear(output_size, config.vocab_size)
        if self.tied:
            self.output.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.embedding.weight, std=0.1 if self.tied else 1.0)
        nn.init.zeros_(self.output.bias)
        if self.config.cell == "lstm":
            # Gate order is input, forget, cell, output; a forget bias of 1 lets memory flow early on.
            hidden = self.config.hidden_size
            for name, bias in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        bias[hidden:2 * hidden].fill_(1.0)
                elif name.startswith("bias_hh"):
                    with torch.no_grad():
                        bias[hidden:2 * hidden].zero_()

    def encode(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Top-layer outputs (batch, seq, width) and the new state, for heads other than the LM."""
        return self.rnn(self.embed_dropout(self.embedding(ids)), state)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Next-token logits (batch, seq, vocab) for `ids` (batch, seq), and the state after them."""
        outputs, state = self.encode(ids, state)
        return self.output(self.output_dropout(outputs)), state


def count_parameters(model: nn.Module) -> int:
    """Distinct trainable parameters (tied weights count once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
