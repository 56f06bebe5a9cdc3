"""One token at a time, fast: the recurrent cells stepped by hand on the model's own weights.

For a single step, torch's `nn.LSTM`/`nn.GRU` spend more time on dispatch than on arithmetic; a
fused step over pre-arranged weight matrices (optionally int8) is what makes sampling fast on a CPU.
"""

from __future__ import annotations

import warnings

import torch

from textgen.errors import TextgenError
from textgen.nn.model import LanguageModel, State, gate_rows, split_gates


class _Matmul:
    """`bias + x @ weight.T` for one weight matrix (out, in): in fp32 with the weight stored (in, out)
    (measured 30% faster than a transposed view at batch 1), or with int8 weights, one scale per
    output row, through fbgemm's dynamic-quantized kernels (activations quantized per call)."""

    def __init__(self, weight: torch.Tensor, int8: bool):
        weight = weight.detach()
        if int8:
            weight = weight.float()
            scales = weight.abs().amax(1).clamp(min=1e-12) / 127
            zero_points = torch.zeros(len(weight), dtype=torch.long)
            try:
                with warnings.catch_warnings():
                    # torch 2.13 deprecates quantized tensors; fbgemm's packing still takes one
                    warnings.simplefilter("ignore", UserWarning)
                    quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
                    self.packed = torch.ops.quantized.linear_prepack(quantized, None)
            except (AttributeError, RuntimeError) as error:
                raise TextgenError(f"--quantize int8 needs torch's fbgemm kernels, which this torch build "
                                   f"lacks ({error}); drop --quantize") from error
            self.weight = None
        else:
            self.packed, self.weight = None, weight.t().contiguous()

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.weight is not None:
            return x @ self.weight if bias is None else torch.addmm(bias, x, self.weight)
        # reduce_range: 7-bit activations, so AVX2's 16-bit multiply-adds cannot saturate
        product = torch.ops.quantized.linear_dynamic(x, self.packed, True)
        return product if bias is None else product + bias


class Stepper:
    """One token per row through the model's weights: `(tokens (batch,), state) -> (logits, state)`.

    Same result as `model(tokens[:, None], state)` (to float rounding), several times faster for
    one step: the first layer's input projection is a table lookup per token, an upper LSTM or RNN
    layer is one fused matmul, and no oneDNN RNN primitive is set up per call. With `int8` the
    weight matrices are 8-bit (CPU only): a quarter of the bytes to read and about twice the
    multiply rate, at the cost of slightly different logits.
    """

    def __init__(self, model: LanguageModel, int8: bool = False):
        rnn, config = model.rnn, model.config
        if int8 and model.embedding.weight.device.type != "cpu":
            raise TextgenError("int8 weights run on the CPU only; drop --quantize or use --device cpu")
        self.cell = config.cell
        self.candidate_rows = gate_rows("lstm", "candidate", config.hidden_size)
        self.output, self.output_bias = _Matmul(model.output.weight, int8), model.output.bias
        self.layers = []
        embed_size = config.embed_size
        # a conditioned model's label input, projected once like the tokens': (labels + 1, gates)
        self.label_table = (None if model.label_embedding is None else
                            model.label_embedding.weight @ rnn.weight_ih_l0[:, embed_size:].t())
        for layer in range(config.num_layers):
            weight_ih, weight_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
            bias_ih, bias_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
            # the first layer's input projection of every token, computed once: (vocab, gates)
            table = torch.addmm(bias_ih, model.embedding.weight, weight_ih[:, :embed_size].t()) if layer == 0 else None
            if self.cell != "gru":  # LSTM and tanh RNN: [input, hidden] @ [weight_ih, weight_hh]^T
                projection = getattr(rnn, f"weight_hr_l{layer}", None)
                projection = None if projection is None else _Matmul(projection, int8)
                if layer == 0:
                    self.layers.append((table + bias_hh, _Matmul(weight_hh, int8), projection))
                else:  # one matmul: [input, hidden] @ [weight_ih, weight_hh]^T
                    fused = _Matmul(torch.cat([weight_ih, weight_hh], 1), int8)
                    self.layers.append((bias_ih + bias_hh, fused, projection))
            else:
                input_matmul = None if layer == 0 else _Matmul(weight_ih, int8)
                self.layers.append((bias_ih if table is None else table, input_matmul, bias_hh,
                                    _Matmul(weight_hh, int8)))

    def _first_input(self, table: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The first layer's projected input (batch, gates): the tokens' rows, plus their labels'."""
        if self.label_table is None:
            return table[tokens]
        return table[tokens] + self.label_table[labels if labels is not None else torch.zeros_like(tokens)]

    def __call__(self, tokens: torch.Tensor, state: State, labels: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, State]:
        """Logits (batch, vocab) after `tokens` (batch,), and the new state; `labels` (batch,) are the
        label ids of a conditioned model (None: no label)."""
        if self.cell == "rnn":
            hiddens, x = [], None
            for layer, (bias, matmul, _) in enumerate(self.layers):
                if layer == 0:
                    x = matmul(state[0], self._first_input(bias, tokens, labels)).tanh()
                else:
                    x = matmul(torch.cat([x, state[layer]], 1), bias).tanh()
                hiddens.append(x)
            return self.output(x, self.output_bias), torch.stack(hiddens)
        if self.cell == "lstm":
            hidden, cell = state
            hiddens, cells, x = [], [], None
            for layer, (bias, matmul, projection) in enumerate(self.layers):
                if layer == 0:
                    gates = matmul(hidden[0], self._first_input(bias, tokens, labels))
                else:
                    gates = matmul(torch.cat([x, hidden[layer]], 1), bias)
                gate = split_gates("lstm", gates.sigmoid())  # one call beats three
                candidate = gates[:, self.candidate_rows].tanh()
                c = torch.addcmul(gate.forget * cell[layer], gate.input, candidate)
                x = gate.output * c.tanh()
                if projection is not None:
                    x = projection(x)
                hiddens.append(x)
                cells.append(c)
            return self.output(x, self.output_bias), (torch.stack(hiddens), torch.stack(cells))
        hiddens, x = [], None
        for layer, (input_bias, input_matmul, hidden_bias, hidden_matmul) in enumerate(self.layers):
            h = state[layer]
            input_gates = self._first_input(input_bias, tokens, labels) if layer == 0 else input_matmul(x, input_bias)
            hidden_gates = hidden_matmul(h, hidden_bias)
            from_input, from_hidden = split_gates("gru", input_gates), split_gates("gru", hidden_gates)
            reset = (from_input.reset + from_hidden.reset).sigmoid()
            update = (from_input.update + from_hidden.update).sigmoid()
            new = (from_input.candidate + reset * from_hidden.candidate).tanh()
            x = new + update * (h - new)
            hiddens.append(x)
        return self.output(x, self.output_bias), torch.stack(hiddens)
