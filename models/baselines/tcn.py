"""TCN baseline: temporal convolutional network (Bai, Kolter & Koltun, "An Empirical Evaluation of Generic
Convolutional and Recurrent Networks for Sequence Modeling", 2018).

Block i (dilation d = 2^i, kernel k) maps (B, C_in, L) → (B, C, L):

    z = drop(act(conv1(x))),   z = drop(act(conv2(z))),   out = act(z + res(x))

where conv is a causal dilated Conv1d, y_t = b + Σ_j W[:, :, j] x_{t − (k−1−j)·d}, and res is a 1×1 conv
when C_in ≠ C (identity otherwise). Weight norm (on by default, as in the paper) reparameterizes each
conv weight as W = g · V / ‖V‖ per output channel; forward and step both read the effective W from
`CausalConv.weight()`, so they use the same numbers.

Receptive field: 1 + 2·(k−1)·(2^n − 1) for n blocks (k=3, n=6 → 253 steps); y_t depends on nothing older.

Streaming state: each conv keeps the last (k−1)·d inputs it saw, (C_in, (k−1)·d) per cell, oldest first.
forward prepends that buffer instead of zero padding (zero state = the usual causal zero padding) and
returns the buffer's continuation; step shifts the register by one (torch.cat, pure) and takes the k taps
spaced by d. A step is O(Σ C·k·C) FLOPs, independent of the history length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel, split_state
from models.registry import register

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class CausalConv(nn.Module):
    """Causal dilated Conv1d with an optional weight norm and a shift-register streaming state."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, weight_norm: bool = True):
        super().__init__()
        conv = nn.Conv1d(c_in, c_out, kernel_size)  # PyTorch's default init for V and b
        self.c_in, self.k, self.dilation = c_in, kernel_size, dilation
        self.pad = (kernel_size - 1) * dilation
        self.v = nn.Parameter(conv.weight.detach().clone())  # (C_out, C_in, k)
        self.bias = nn.Parameter(conv.bias.detach().clone())  # (C_out,)
        # g starts at ‖V‖, so the effective weight starts at the default init (as torch's weight_norm does).
        self.g = nn.Parameter(self.v.detach().flatten(1).norm(dim=1)) if weight_norm else None  # (C_out,)

    def weight(self) -> Tensor:
        """Effective weight (C_out, C_in, k)."""
        if self.g is None:
            return self.v
        return self.v * (self.g / self.v.flatten(1).norm(dim=1)).view(-1, 1, 1)

    def state_shape(self) -> tuple[int, int]:
        return (self.c_in, self.pad)

    def forward(self, x: Tensor, buf: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, C_in, L), buf (B, C_in, pad) or None (zeros) → y (B, C_out, L), the new buffer."""
        if buf is None:
            buf = x.new_zeros(x.shape[0], self.c_in, self.pad)
        xp = torch.cat([buf, x], dim=-1)  # (B, C_in, pad + L)
        y = F.conv1d(xp, self.weight(), self.bias, dilation=self.dilation)  # (B, C_out, L)
        return y, xp[..., xp.shape[-1] - self.pad :]

    def step(self, x_t: Tensor, buf: Tensor) -> tuple[Tensor, Tensor]:
        """x_t (B, C_in), buf (B, C_in, pad) → y_t (B, C_out), the shifted buffer. Pure."""
        window = torch.cat([buf, x_t.unsqueeze(-1)], dim=-1)  # (B, C_in, pad + 1)
        taps = window[..., :: self.dilation]  # (B, C_in, k): x_{t-(k-1)d}, …, x_{t-d}, x_t
        y = taps.flatten(1) @ self.weight().flatten(1).T + self.bias  # (B, C_out)
        return y, window[..., 1:]


class TemporalBlock(nn.Module):
    """Two causal dilated convs with activation and dropout, plus a (1×1 when widths differ) residual."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float, activation: str,
                 weight_norm: bool):
        super().__init__()
        self.conv1 = CausalConv(c_in, c_out, kernel_size, dilation, weight_norm)
        self.conv2 = CausalConv(c_out, c_out, kernel_size, dilation, weight_norm)
        self.res = nn.Linear(c_in, c_out) if c_in != c_out else None  # 1×1 conv, applied channels-last
        self.act = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def state_spec(self) -> list[StateField]:
        return [StateField("conv1", self.conv1.state_shape()), StateField("conv2", self.conv2.state_shape())]

    def _residual(self, x: Tensor) -> Tensor:
        """x (B, C_in, L) → (B, C_out, L)."""
        return x if self.res is None else self.res(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, C_in, L), state (buf1, buf2) or None (zeros) → (B, C_out, L), new state."""
        b1, b2 = (None, None) if state is None else state
        z, s1 = self.conv1(x, b1)
        z = self.dropout(self.act(z))
        z, s2 = self.conv2(z, b2)
        z = self.dropout(self.act(z))
        return self.act(z + self._residual(x)), (s1, s2)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, C_in), state (buf1, buf2) → (B, C_out), new state."""
        z, s1 = self.conv1.step(x_t, state[0])
        z = self.dropout(self.act(z))
        z, s2 = self.conv2.step(z, state[1])
        z = self.dropout(self.act(z))
        res = x_t if self.res is None else self.res(x_t)
        return self.act(z + res), (s1, s2)


@dataclass
class TCNConfig(ModelConfig):
    d_model: int = 32  # channels of every block
    n_layers: int = 6  # blocks; block i has dilation 2^i
    kernel_size: int = 3
    activation: str = "relu"  # relu | gelu
    weight_norm: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model < 1:
            raise ValueError(f"d_model must be ≥ 1, got {self.d_model}")
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be ≥ 1, got {self.n_layers}")
        if self.kernel_size < 2:
            raise ValueError(f"kernel_size must be ≥ 2, got {self.kernel_size}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}")

    @property
    def receptive_field(self) -> int:
        """Number of inputs y_t depends on: 1 + 2·(k−1)·(2^n − 1)."""
        return 1 + 2 * (self.kernel_size - 1) * (2**self.n_layers - 1)


@register("tcn")
class TCN(StreamingModel):
    """Stack of temporal blocks (the first maps D_in → d_model) with a multi-horizon head.

    x (B, L, D_in) → y (B, L, H, K); y[:, t] depends on x[:, t − receptive_field + 1 : t + 1] only.
    """

    Config = TCNConfig

    def __init__(self, config: TCNConfig):
        super().__init__()
        self.config = config
        c = config
        self.blocks = nn.ModuleList(
            TemporalBlock(c.d_input if i == 0 else c.d_model, c.d_model, c.kernel_size, 2**i, c.dropout,
                          c.activation, c.weight_norm)
            for i in range(c.n_layers)
        )
        self.head = ForecastHead(c.d_model, c.horizon, c.n_targets, c.target_index)

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    def state_spec(self) -> list[StateField]:
        return [StateField(f"block{i}.{f.name}", f.shape) for i, b in enumerate(self.blocks) for f in b.state_spec()]

    def _run(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        states = split_state(state, [2] * len(self.blocks)) if state is not None else [None] * len(self.blocks)
        h = x.transpose(1, 2)  # (B, D_in, L)
        new_states: list[Tensor] = []
        for block, s in zip(self.blocks, states):
            h, s_out = block(h, s)  # (B, d_model, L)
            new_states.extend(s_out)
        return self.head(h.transpose(1, 2), x), tuple(new_states)  # (B, L, H, K)

    def forward(self, x: Tensor, state: State | None = None) -> Tensor:
        return self._run(x, state)[0]

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D_in), state or None (zero: causal zero padding) → y (B, L, H, K), final state."""
        return self._run(x, state)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), state → y_t (B, H, K), new state. Pure."""
        h = x_t  # (B, D_in)
        new_states: list[Tensor] = []
        for block, s in zip(self.blocks, split_state(state, [2] * len(self.blocks))):
            h, s_out = block.step(h, s)  # (B, d_model)
            new_states.extend(s_out)
        return self.head(h, x_t), tuple(new_states)
