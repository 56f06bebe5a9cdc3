"""The reference cells compute what nn.LSTM, nn.GRU and nn.RNN compute, layer by layer, step by step."""

import pytest
import torch
from torch import nn

from textgen.lab.cells import GRU_GATES, LSTM_GATES, RNN_GATES, reverse_padded, trace_layers
from textgen.config import ModelConfig
from textgen.nn.model import LanguageModel

STEPS = 500


def stepped_states(rnn: nn.LSTM | nn.GRU, inputs: torch.Tensor) -> list[torch.Tensor | tuple]:
    """nn.LSTM/nn.GRU's state after each step, fed one step at a time: every layer's h (and c)."""
    states, state = [], None
    for t in range(inputs.shape[1]):
        _, state = rnn(inputs[:, t:t + 1], state)
        states.append(state)
    return states


@pytest.mark.parametrize("cell, hidden_size, embed_size", [
    ("lstm", 12, 12),   # no projection
    ("lstm", 16, 8),    # tied weights with hidden > embed: nn.LSTM projects to proj_size 8
    ("gru", 12, 12),
    ("rnn", 12, 12),
])
def test_reference_cells_match_torch_at_every_layer_and_step(cell, hidden_size, embed_size):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, num_layers=2, hidden_size=hidden_size, embed_size=embed_size,
                         vocab_size=20, tie_weights=True)
    # float64: a tanh network with large weights is chaotic, and over 500 steps it amplifies float32
    # rounding (which differs between CPUs' kernels) past any tolerance that would still test the equations
    model = LanguageModel(config).double().eval()
    with torch.no_grad():  # weights larger than at initialisation, so the gates swing as in a trained model
        for name, parameter in model.rnn.named_parameters():
            parameter.mul_(3.0 if name.startswith("weight") else 0.0)
    assert (model.rnn.proj_size == embed_size) == (hidden_size > embed_size and cell == "lstm")
    inputs = model.embedding(torch.randint(0, 20, (2, STEPS)))
    layers = trace_layers(model.rnn, inputs)
    states = stepped_states(model.rnn, inputs)
    assert [tuple(layer) for layer in layers] == [{"lstm": LSTM_GATES, "gru": GRU_GATES, "rnn": RNN_GATES}[cell]] * 2
    for number, layer in enumerate(layers):
        expected_hidden = torch.stack([s[0][number] if cell == "lstm" else s[number] for s in states], dim=1)
        torch.testing.assert_close(layer["hidden"], expected_hidden, atol=1e-9, rtol=0)
        if cell == "lstm":
            expected_cell = torch.stack([s[1][number] for s in states], dim=1)
            torch.testing.assert_close(layer["cell"], expected_cell, atol=1e-9, rtol=0)
            assert layer["cell"].shape[-1] == hidden_size
    top_outputs, _ = model.rnn(inputs)
    torch.testing.assert_close(layers[-1]["hidden"], top_outputs, atol=1e-9, rtol=0)


def test_lstm_gates_obey_the_cell_equations():
    torch.manual_seed(1)
    rnn = nn.LSTM(6, 10, batch_first=True)
    gates = trace_layers(rnn, torch.randn(3, 40, 6))[0]
    previous_cell = torch.cat([torch.zeros(3, 1, 10), gates["cell"][:, :-1]], dim=1)
    torch.testing.assert_close(gates["cell"], gates["forget"] * previous_cell + gates["input"] * gates["candidate"])
    torch.testing.assert_close(gates["hidden"], gates["output"] * torch.tanh(gates["cell"]))
    for name in ("input", "forget", "output"):
        assert 0 < gates[name].min() and gates[name].max() < 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_trace_matches_packed_torch_outputs_for_padded_rows(cell):
    torch.manual_seed(2)
    rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(5, 7, num_layers=2, batch_first=True, bidirectional=True)
    inputs, lengths = torch.randn(3, 9, 5), torch.tensor([9, 4, 6])
    packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True)
    hidden = trace_layers(rnn, inputs, lengths)[-1]["hidden"]
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(hidden[row, :length], expected[row, :length], atol=1e-5, rtol=0)


def test_reverse_padded_reverses_each_row_within_its_length_and_undoes_itself():
    values = torch.arange(8.0).view(2, 4, 1)
    reversed_values = reverse_padded(values, torch.tensor([4, 2]))
    assert reversed_values.squeeze(-1).tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_padded(reversed_values, torch.tensor([4, 2])), values)
