import pytest
import torch

from textgen.config import ModelConfig
from textgen.nn.model import LanguageModel, count_parameters, detach_state, select_state


def tiny(cell="lstm", **overrides):
    torch.manual_seed(0)
    settings = dict(cell=cell, num_layers=2, hidden_size=16, embed_size=16, vocab_size=12,
                    dropout=0.0, output_dropout=0.0)
    return LanguageModel(ModelConfig(**{**settings, **overrides})).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_returns_logits_for_every_position_and_the_new_state(cell):
    model = tiny(cell)
    logits, state = model(torch.randint(0, 12, (3, 7)))
    assert logits.shape == (3, 7, 12)
    hidden = state[0] if cell == "lstm" else state
    assert hidden.shape == (2, 3, 16)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_passed_back_in_continues_the_text_exactly(cell):
    model = tiny(cell)
    ids = torch.randint(0, 12, (2, 10))
    whole, _ = model(ids)
    first, state = model(ids[:, :4])
    second, _ = model(ids[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_the_module_keeps_no_state_between_calls():
    model = tiny()
    ids = torch.randint(0, 12, (1, 5))
    before, _ = model(ids)
    model(torch.randint(0, 12, (1, 9)))
    after, _ = model(ids)
    torch.testing.assert_close(before, after)


def test_lstm_ties_weights_through_a_projection_when_hidden_and_embedding_differ():
    model = tiny(hidden_size=24, embed_size=8)
    assert model.tied and model.output.weight is model.embedding.weight
    assert model.rnn.proj_size == 8
    untied = tiny(hidden_size=24, embed_size=8, tie_weights=False)
    assert count_parameters(untied) > count_parameters(tiny(hidden_size=24, embed_size=8)) - 100


def test_gru_ties_only_when_widths_match():
    assert tiny("gru", hidden_size=16, embed_size=16).tied
    assert not tiny("gru", hidden_size=24, embed_size=8).tied


def test_lstm_forget_gate_bias_starts_at_one():
    model = tiny()
    hidden = 16
    total = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0
    assert torch.all(total[hidden:2 * hidden] == 1.0)


def test_detach_and_select_state_keep_the_shape_of_lstm_and_gru_states():
    lstm_state = (torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True))
    detached = detach_state(lstm_state)
    assert not detached[0].requires_grad and detached[1].shape == (2, 3, 4)
    picked = select_state(torch.arange(6.0).view(1, 3, 2), torch.tensor([2, 0]))
    assert picked.tolist() == [[[4.0, 5.0], [0.0, 1.0]]]


def test_the_gate_layout_is_torchs_chunk_order():
    from textgen.nn.model import gate_rows, split_gates

    lstm = torch.nn.LSTM(1, 2)
    gru = torch.nn.GRU(1, 2)
    with torch.no_grad():
        for rnn in (lstm, gru):
            for parameter in rnn.parameters():
                parameter.zero_()
        # a forget gate wide open, an input gate shut: the cell state carries over as it was
        lstm.bias_ih_l0[gate_rows("lstm", "forget", 2)] = 100.0
        lstm.bias_ih_l0[gate_rows("lstm", "input", 2)] = -100.0
        lstm.bias_ih_l0[gate_rows("lstm", "output", 2)] = 100.0
        gru.bias_ih_l0[gate_rows("gru", "update", 2)] = 100.0  # an update gate at 1 keeps the hidden state
    cell = torch.tensor([[[0.5, -0.25]]])
    _, (hidden, carried) = lstm(torch.zeros(1, 1, 1), (torch.zeros(1, 1, 2), cell))
    torch.testing.assert_close(carried, cell)
    torch.testing.assert_close(hidden, torch.tanh(cell))
    _, kept = gru(torch.zeros(1, 1, 1), cell)
    torch.testing.assert_close(kept, cell)
    gates = split_gates("lstm", torch.arange(8.0))
    assert gates.forget.tolist() == [2.0, 3.0] and gates.output.tolist() == [6.0, 7.0]
    assert split_gates("gru", torch.arange(6.0)).candidate.tolist() == [4.0, 5.0]
