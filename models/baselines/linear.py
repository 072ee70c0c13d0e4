"""NLinear (Zeng, Chen, Zhang & Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI 2023),
made streaming and able to read several channels: one linear map of the last W inputs, centred on the last one.

    w = (x_{t−W+1}, …, x_t) of every input channel, (D, W);  c = w − x_t  (each channel minus its last value)
    ŷ_{t+1 … t+H} = A · flatten(c) + b  (+ the last target values, models.base.ForecastHead)

With `decomposition` = m (odd), the centred window is split as in DLinear (models.baselines.dlinear: a moving
average of width m is the trend, the rest the seasonal part) and each part has its own map, A_s·seasonal +
A_t·trend: the same family of linear maps, parameterized as DLinear does.

Centring makes the map see the window's shape, not its level (NLinear's answer to distribution shift), so with
A = 0 it is the last-value forecast. With one input channel (channel-independent framing, models.framing) it is
the paper's NLinear; with several it reads them jointly. It is also MS³M's linear long-memory expert
(models.ms3m): as an expert its "targets" are the expert's feature vector, and the expert's head adds the
last value, so the gate can always fall back on a linear forecaster of the whole window.

Streaming: the state is a shift register of the last W − 1 inputs, (D, W − 1) per cell, oldest first; the
zero state is zero padding (in normalized units). forward unfolds all windows at once, (B, L, D, W); step
shifts the register by one (torch.cat, pure). Cost O(D·W·H·K) per step, and the state grows with W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel
from models.baselines.dlinear import series_decomp
from models.registry import register


@dataclass
class LinearConfig(ModelConfig):
    window: int = 96  # lookback W
    decomposition: int = 0  # 0: one map; m (odd): DLinear's trend (moving average of width m) / seasonal maps

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decomposition < 0 or (self.decomposition and self.decomposition % 2 == 0):
            raise ValueError(f"decomposition must be 0 or an odd moving-average width, got {self.decomposition}")
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2, got {self.window}")


@register("linear")
class NLinear(StreamingModel):
    """x (B, L, D_in) → y (B, L, H, K); y[:, t] reads x[:, t−W+1 : t+1] (zero-padded, or the state, before x[:, 0])."""

    Config = LinearConfig

    def __init__(self, config: LinearConfig):
        super().__init__()
        self.config = c = config
        self.dropout = nn.Dropout(c.dropout)
        parts = 2 if c.decomposition else 1
        self.head = ForecastHead(parts * c.d_input * c.window, c.horizon, c.n_targets, c.target_index)
        nn.init.zeros_(self.head.proj.weight)  # starts as the last-value forecast (plus the bias)

    def state_spec(self) -> list[StateField]:
        return [StateField("window", (self.config.d_input, self.config.window - 1))]

    def _forecast(self, w: Tensor, x: Tensor) -> Tensor:
        """w (..., D, W) windows ending at inputs x (..., D) → (..., H, K)."""
        centred = w - x.unsqueeze(-1)  # (..., D, W)
        if self.config.decomposition:
            centred = torch.cat(series_decomp(centred, self.config.decomposition), -1)  # (..., D, 2W)
        return self.head(self.dropout(centred.flatten(-2)), x)

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D), state (ring (B, D, W−1),) or None (zeros) → y (B, L, H, K), new state."""
        B, W = x.shape[0], self.config.window
        ring = x.new_zeros(B, x.shape[-1], W - 1) if state is None else state[0]
        seq = torch.cat([ring, x.transpose(1, 2)], -1)  # (B, D, W−1+L)
        windows = seq.unfold(-1, W, 1).transpose(1, 2)  # (B, L, D, W): windows[:, t] ends at x[:, t]
        return self._forecast(windows, x), (seq[..., seq.shape[-1] - (W - 1):],)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D), state (ring,) → y_t (B, H, K), new state. Pure."""
        window = torch.cat([state[0], x_t.unsqueeze(-1)], -1)  # (B, D, W)
        return self._forecast(window, x_t), (window[..., 1:],)
