"""LSTM baseline (Hochreiter & Schmidhuber 1997; the forget-gate form of Gers et al. 2000).

Per layer k, with input u_t (the previous layer's h_t, or the projected input for k = 0):

    [i, f, g, o] = W_ih u_t + b_ih + W_hh h_{t-1} + b_hh        (gate order i, f, g, o as in nn.LSTM)
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),     h_t = σ(o) ⊙ tanh(c_t)

The parallel path runs nn.LSTM (the fused cuDNN / ATen kernel) from the given (h, c); the recurrent
`step` evaluates the same equations by hand from nn.LSTM's own weight tensors, so it traces to a plain
ONNX / TorchScript graph (MatMul, Sigmoid, Tanh) with no LSTM operator and matches nn.LSTM exactly up
to summation order. The forecast head reads the top layer's h_t. State per cell: h and c,
each (n_layers, d_model). Dropout (training only) acts between layers, as nn.LSTM's does.

The forget-gate bias starts at 1 (Jozefowicz et al. 2015), so the cell remembers by default early in
training; everything else keeps PyTorch's U(−1/√d, 1/√d) init.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel
from models.registry import register


@dataclass
class LSTMConfig(ModelConfig):
    d_model: int = 32  # hidden size of every layer
    n_layers: int = 2
    input_proj: bool = False  # Linear(d_input, d_model) before the first layer

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model < 1:
            raise ValueError(f"d_model must be ≥ 1, got {self.d_model}")
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be ≥ 1, got {self.n_layers}")


@register("lstm")
class LSTM(StreamingModel):
    """Stacked LSTM with a multi-horizon head. x (B, L, D_in) → y (B, L, H, K)."""

    Config = LSTMConfig

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        d, n = config.d_model, config.n_layers
        self.encoder = nn.Linear(config.d_input, d) if config.input_proj else nn.Identity()
        d_in = d if config.input_proj else config.d_input
        # nn.LSTM warns about (and ignores) inter-layer dropout with a single layer.
        self.lstm = nn.LSTM(d_in, d, num_layers=n, batch_first=True, dropout=config.dropout if n > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)  # the same inter-layer dropout, for step
        self.head = ForecastHead(d, config.horizon, config.n_targets, config.target_index)
        with torch.no_grad():
            for k in range(n):
                getattr(self.lstm, f"bias_ih_l{k}")[d : 2 * d].fill_(1.0)  # forget gate: b_ih + b_hh = 1
                getattr(self.lstm, f"bias_hh_l{k}")[d : 2 * d].zero_()

    def state_spec(self) -> list[StateField]:
        shape = (self.config.n_layers, self.config.d_model)
        return [StateField("h", shape), StateField("c", shape)]

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D_in), state (h, c) each (B, n_layers, d_model) or None (zero) → y (B, L, H, K), (h, c)."""
        u = self.encoder(x)  # (B, L, d_in)
        hc = None
        if state is not None:
            h0, c0 = state
            hc = (h0.transpose(0, 1).contiguous(), c0.transpose(0, 1).contiguous())  # (n_layers, B, d)
        z, (h, c) = self.lstm(u, hc)  # z (B, L, d); h, c (n_layers, B, d)
        return self.head(z, x), (h.transpose(0, 1), c.transpose(0, 1))

    def _cell(self, k: int, u: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Layer k's cell by hand from nn.LSTM's weights: u (B, d_in_k), h, c (B, d) → h', c'."""
        w_ih, w_hh = getattr(self.lstm, f"weight_ih_l{k}"), getattr(self.lstm, f"weight_hh_l{k}")  # (4d, ·)
        b = getattr(self.lstm, f"bias_ih_l{k}") + getattr(self.lstm, f"bias_hh_l{k}")  # (4d,)
        gates = u @ w_ih.T + h @ w_hh.T + b  # (B, 4d)
        i, f, g, o = gates.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, c_new

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), (h, c) each (B, n_layers, d_model) → y_t (B, H, K), new (h, c). Pure."""
        h0, c0 = state
        u = self.encoder(x_t)  # (B, d_in)
        hs, cs = [], []
        for k in range(self.config.n_layers):
            if k > 0:
                u = self.dropout(u)
            h, c = self._cell(k, u, h0[:, k], c0[:, k])  # (B, d)
            hs.append(h)
            cs.append(c)
            u = h
        return self.head(u, x_t), (torch.stack(hs, 1), torch.stack(cs, 1))
