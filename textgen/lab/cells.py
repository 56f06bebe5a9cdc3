"""The LSTM and GRU cells written out as their equations, stepping a trained `nn.LSTM` / `nn.GRU`'s
(or plain `nn.RNN`'s) own weights and keeping every gate at every step, so a user can see what
each unit does.

These are torch's (and cuDNN's) equations; the tests hold them to `nn.LSTM`, `nn.GRU` and `nn.RNN`
within 1e-5. torch stacks each gate's rows of the weights W_i. (input), W_h. (hidden) and biases in the
order input, forget, candidate, output (`model.LSTMGates`), so one product gives all four gates'
pre-activations:

    W_i. x_t + b_i. + b_h.  (every t at once)   input_part = torch.addmm(bias_ih + bias_hh, inputs, weight_ih.T)
    ... + W_h. h_{t-1}                          gates = torch.addmm(step_input, hidden, weight_hh.T)

Then the LSTM step, each equation next to its line of code:

    i_t  = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     squashed = torch.sigmoid(gates)
    f_t  = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)     gate = split_gates("lstm", squashed)
    o_t  = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c~_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)  candidate = torch.tanh(gates[:, candidate_rows])
    c_t  = f_t ⊙ c_{t-1} + i_t ⊙ c~_t                   cell = torch.addcmul(gate.forget * cell, gate.input, candidate)
    h_t  = o_t ⊙ tanh(c_t)                              hidden = gate.output * torch.tanh(cell)
    h_t  = W_hr h_t   (only with proj_size)             hidden = hidden @ weight_hr.T

and the GRU step (stacked as reset, update, candidate, `model.GRUGates`; the hidden part of n_t
keeps its own bias):

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)             reset = torch.sigmoid(x.reset + h.reset)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)             update = torch.sigmoid(x.update + h.update)
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))  candidate = torch.tanh(torch.addcmul(x.candidate, reset, h.candidate))
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}                       hidden = torch.lerp(candidate, hidden, update)

and the plain RNN step, with no gate at all (tanh, or relu where the RNN was built with it):

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)  hidden = activation(torch.addmm(step_input, hidden, weight_hh.T))

Two variants that tutorials often print instead are not what torch or cuDNN compute: an LSTM
whose output gate reads [h_{t-1}, c_t], a peephole connection from the new cell state (Gers and
Schmidhuber 2000); and a "GRU" drawn with an output gate and a separate cell state but no reset
gate. Here the output gate sees only x_t and h_{t-1}, and the GRU's only state is h_t. Both variants
close this module as trainable layers (`ArticleLSTM`, `ArticleGRU`) that `textgen memory` trains
beside torch's cells.
"""

from __future__ import annotations

import torch
from torch import nn

from textgen.nn.model import gate_rows, split_gates

LSTM_GATES = ("input", "forget", "candidate", "cell", "output", "hidden")
GRU_GATES = ("reset", "update", "candidate", "hidden")
RNN_GATES = ("hidden",)


def gate_names(rnn: nn.LSTM | nn.GRU | nn.RNN) -> tuple[str, ...]:
    """The names of the values `trace_layers` returns for each layer of `rnn`."""
    return LSTM_GATES if isinstance(rnn, nn.LSTM) else GRU_GATES if isinstance(rnn, nn.GRU) else RNN_GATES


def lstm_layer(inputs: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor,
               bias_hh: torch.Tensor, weight_hr: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every gate of one LSTM layer at every step from a zero state: name -> (batch, time, width)."""
    size = weight_ih.shape[0] // 4
    batch, steps, _ = inputs.shape
    # the input's part of every gate at every step in one matrix product; only h_{t-1} is sequential
    input_part = torch.addmm(bias_ih + bias_hh, inputs.reshape(batch * steps, -1), weight_ih.T)
    input_part = input_part.view(batch, steps, 4 * size)
    hidden = inputs.new_zeros(batch, weight_hh.shape[1])
    cell = inputs.new_zeros(batch, size)
    candidate_rows = gate_rows("lstm", "candidate", size)
    kept: dict[str, list[torch.Tensor]] = {"squashed": [], "candidate": [], "cell": [], "hidden": []}
    for step_input in input_part.unbind(1):
        gates = torch.addmm(step_input, hidden, weight_hh.T)
        squashed = torch.sigmoid(gates)
        gate = split_gates("lstm", squashed)
        candidate = torch.tanh(gates[:, candidate_rows])
        cell = torch.addcmul(gate.forget * cell, gate.input, candidate)
        hidden = gate.output * torch.tanh(cell)
        if weight_hr is not None:
            hidden = hidden @ weight_hr.T
        for name, value in (("squashed", squashed), ("candidate", candidate), ("cell", cell), ("hidden", hidden)):
            kept[name].append(value)
    stacked = {name: torch.stack(values, dim=1) for name, values in kept.items()}
    squashed = split_gates("lstm", stacked.pop("squashed"))
    return {"input": squashed.input, "forget": squashed.forget, "candidate": stacked["candidate"],
            "cell": stacked["cell"], "output": squashed.output, "hidden": stacked["hidden"]}


def gru_layer(inputs: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor,
              bias_hh: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every gate of one GRU layer at every step from a zero state: name -> (batch, time, width)."""
    size = weight_hh.shape[1]
    batch, steps, _ = inputs.shape
    input_part = torch.addmm(bias_ih, inputs.reshape(batch * steps, -1), weight_ih.T).view(batch, steps, 3 * size)
    hidden = inputs.new_zeros(batch, size)
    kept: dict[str, list[torch.Tensor]] = {name: [] for name in GRU_GATES}
    for step_input in input_part.unbind(1):
        x = split_gates("gru", step_input)
        h = split_gates("gru", torch.addmm(bias_hh, hidden, weight_hh.T))
        reset = torch.sigmoid(x.reset + h.reset)
        update = torch.sigmoid(x.update + h.update)
        candidate = torch.tanh(torch.addcmul(x.candidate, reset, h.candidate))
        hidden = torch.lerp(candidate, hidden, update)
        for name, value in zip(GRU_GATES, (reset, update, candidate, hidden)):
            kept[name].append(value)
    return {name: torch.stack(values, dim=1) for name, values in kept.items()}


def rnn_layer(inputs: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor,
              bias_hh: torch.Tensor, nonlinearity: str = "tanh") -> dict[str, torch.Tensor]:
    """The hidden state of one plain RNN layer at every step from a zero state: (batch, time, width)."""
    batch, steps, _ = inputs.shape
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu
    input_part = torch.addmm(bias_ih + bias_hh, inputs.reshape(batch * steps, -1), weight_ih.T).view(batch, steps, -1)
    hidden, kept = inputs.new_zeros(batch, weight_hh.shape[1]), []
    for step_input in input_part.unbind(1):
        hidden = activation(torch.addmm(step_input, hidden, weight_hh.T))
        kept.append(hidden)
    return {"hidden": torch.stack(kept, dim=1)}


def reverse_padded(values: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """`values` (batch, time, ...) with each row's first `lengths` steps in reverse order, padding
    left in place; applied twice it gives `values` back."""
    steps = values.shape[1]
    if lengths is None:
        return values.flip(1)
    positions = torch.arange(steps, device=values.device)
    index = lengths.to(values.device)[:, None] - 1 - positions[None, :]
    index = torch.where(index >= 0, index, positions[None, :])  # (batch, time)
    return values.gather(1, index.view(*index.shape, *[1] * (values.dim() - 2)).expand_as(values))


@torch.no_grad()
def trace_layers(rnn: nn.LSTM | nn.GRU | nn.RNN, inputs: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> list[dict[str, torch.Tensor]]:
    """For each layer of `rnn`, bottom up, every gate at every step of `inputs` (batch, time,
    features) from a zero state: name -> (batch, time, width). A bidirectional layer's two
    directions are concatenated along width as nn.LSTM concatenates its outputs (forward first);
    the backward direction starts at each row's own end when `lengths` are given."""
    layers = []
    for layer in range(rnn.num_layers):
        directions = []
        for suffix in ("", "_reverse")[:2 if rnn.bidirectional else 1]:
            weights = [getattr(rnn, f"{kind}_l{layer}{suffix}")
                       for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            source = reverse_padded(inputs, lengths) if suffix else inputs
            if isinstance(rnn, nn.LSTM):
                projection = getattr(rnn, f"weight_hr_l{layer}{suffix}") if rnn.proj_size else None
                gates = lstm_layer(source, *weights, projection)
            elif isinstance(rnn, nn.GRU):
                gates = gru_layer(source, *weights)
            else:
                gates = rnn_layer(source, *weights, rnn.nonlinearity)
            if suffix:
                gates = {name: reverse_padded(value, lengths) for name, value in gates.items()}
            directions.append(gates)
        layers.append({name: torch.cat([d[name] for d in directions], dim=2) for name in directions[0]})
        inputs = layers[-1]["hidden"]
    return layers


# --- the article's two variants, as trainable layers ---------------------------------------------
# Neither is what torch or cuDNN compute (see above); `textgen memory --cells article-lstm article-gru`
# trains them beside torch's cells. Plain autograd over a Python loop: slower than torch's kernels.

class ArticleLSTM(nn.Module):
    """One LSTM layer as the article writes it: the output gate reads [h_{t-1}, c_t] (a peephole
    from the new cell state) instead of [h_{t-1}, x_t]. Gates stacked (input, forget, candidate,
    output) in `bias` as torch stacks them.

        i_t, f_t, c~_t from [h_{t-1}, x_t] as in torch's LSTM;  c_t = f_t ⊙ c_{t-1} + i_t ⊙ c~_t
        o_t = σ(W_oh h_{t-1} + W_oc c_t + b_o);  h_t = o_t ⊙ tanh(c_t)
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        bound = hidden_size ** -0.5  # torch's own initialisation for its recurrent layers
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.weight_co = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Every step's h_t (batch, time, hidden) from a zero state, like nn.LSTM(batch_first=True)."""
        size, batch = self.hidden_size, inputs.shape[0]
        input_part = (inputs @ self.weight_ih.T).unbind(1)  # (batch, 3 * hidden) per step
        hidden, cell, outputs = inputs.new_zeros(batch, size), inputs.new_zeros(batch, size), []
        for step_input in input_part:
            recurrent = hidden @ self.weight_hh.T + self.bias
            gate = split_gates("lstm", recurrent)
            input_gate, forget, candidate = (step_input + recurrent[:, :3 * size]).chunk(3, dim=1)
            cell = torch.sigmoid(forget) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
            hidden = torch.sigmoid(gate.output + cell @ self.weight_co.T) * torch.tanh(cell)
            outputs.append(hidden)
        return torch.stack(outputs, dim=1), None


class ArticleGRU(nn.Module):
    """The article's "GRU": an update gate, an output gate and a cell state apart from h_t, and no
    reset gate (a coupled input-forget LSTM, in the literature's terms). Gates stacked (update,
    candidate, output) in `bias`; z_t keeps memory as torch's GRU update gate does.

        z_t, c~_t, o_t from [h_{t-1}, x_t];  c_t = z_t ⊙ c_{t-1} + (1 - z_t) ⊙ c~_t;  h_t = o_t ⊙ tanh(c_t)
    """

    GATES = ("update", "candidate", "output")

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        bound = hidden_size ** -0.5
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(3 * hidden_size).uniform_(-bound, bound))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Every step's h_t (batch, time, hidden) from a zero state, like nn.GRU(batch_first=True)."""
        size, batch = self.hidden_size, inputs.shape[0]
        input_part = (inputs @ self.weight_ih.T + self.bias).unbind(1)
        hidden, cell, outputs = inputs.new_zeros(batch, size), inputs.new_zeros(batch, size), []
        for step_input in input_part:
            update, candidate, output = (step_input + hidden @ self.weight_hh.T).chunk(3, dim=1)
            cell = torch.lerp(torch.tanh(candidate), cell, torch.sigmoid(update))
            hidden = torch.sigmoid(output) * torch.tanh(cell)
            outputs.append(hidden)
        return torch.stack(outputs, dim=1), None
