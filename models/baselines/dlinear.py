"""DLinear baseline (Zeng, Chen, Zhang & Xu, "Are Transformers Effective for Time Series Forecasting?",
AAAI 2023), made streaming.

Channel-independent: target channel k is forecast from its own last W inputs w = (x_{t−W+1}, …, x_t)
only. The window is split by a moving average of odd kernel m (the reference's edge-replicate padding:
w_0 repeated p = (m−1)/2 times in front, w_{W−1} repeated p times behind, then a stride-1 mean of m):

    trend_i = (1/m) Σ_{j=−p}^{p} w_{clamp(i+j, 0, W−1)},     seasonal = w − trend
    ŷ_{t+1 … t+H} = W_s · seasonal + b_s + W_t · trend + b_t         (W_s, W_t: H × W)

The two linears are shared by every channel (`individual=True`: one pair per target channel) and start,
as in the reference, with weights 1/W (the window mean) and nn.Linear's default bias. There is no
last-value residual (models.base.ForecastHead is not used): this is DLinear's own formulation. The
config's dropout is unused (the reference has none).

Streaming: forward_with_state(x, state) forecasts at every position t from the window x[t−W+1 … t] of
each target channel, the positions before x[:, 0] taken from the state, a shift register of the last
W−1 inputs of each target channel, (K, W−1) per cell, oldest first. The zero state is zero padding (in
normalized units), so forward(x) at t < W−1 sees a zero-padded window; at t ≥ W−1 it is exactly the
reference model applied to x[t−W+1 … t]. forward unfolds all windows at once, (B, L, K, W), and
batches the decomposition (avg_pool1d, as the reference) and the linears over them; step shifts the
register by one (torch.cat, pure) and runs the same computation on the one window: O(K·W·(m + H)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig, State, StateField, StreamingModel
from models.registry import register


def moving_average(w: Tensor, kernel_size: int) -> Tensor:
    """Trend of windows w (..., W) → (..., W): edge-replicate padding by (m−1)//2 at both ends, then a
    stride-1 average pool of width m (odd m keeps the length W)."""
    p = (kernel_size - 1) // 2
    W = w.shape[-1]
    front = w[..., :1].expand(*w.shape[:-1], p)  # (..., p) copies of the first value
    end = w[..., -1:].expand(*w.shape[:-1], p)  # (..., p) copies of the last value
    padded = torch.cat([front, w, end], dim=-1)  # (..., W + 2p)
    trend = F.avg_pool1d(padded.reshape(-1, 1, W + 2 * p), kernel_size, stride=1)  # (N, 1, W)
    return trend.reshape(w.shape)


def series_decomp(w: Tensor, kernel_size: int) -> tuple[Tensor, Tensor]:
    """w (..., W) → (seasonal, trend), both (..., W), seasonal = w − trend."""
    trend = moving_average(w, kernel_size)
    return w - trend, trend


@dataclass
class DLinearConfig(ModelConfig):
    window: int = 96  # lookback W: each forecast reads the last W values of its channel
    moving_avg: int = 25  # kernel of the trend's moving average (odd)
    individual: bool = False  # one (seasonal, trend) linear pair per target channel instead of shared

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_targets("DLinear forecasts each target channel from its own past")
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2, got {self.window}")
        if self.moving_avg < 1 or self.moving_avg % 2 == 0:
            raise ValueError(f"moving_avg must be odd and ≥ 1 (so the symmetric padding keeps the length), "
                             f"got {self.moving_avg}")


@register("dlinear")
class DLinear(StreamingModel):
    """DLinear forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts target k at t + h from
    x[:, t−W+1 : t+1, target_index[k]] (zero-padded, or the state, before x[:, 0])."""

    Config = DLinearConfig

    def __init__(self, config: DLinearConfig):
        super().__init__()
        self.config = config
        c = config
        self.target_index = list(c.target_index)
        n_pairs = c.n_targets if c.individual else 1
        self.linear_seasonal = nn.ModuleList(nn.Linear(c.window, c.horizon) for _ in range(n_pairs))
        self.linear_trend = nn.ModuleList(nn.Linear(c.window, c.horizon) for _ in range(n_pairs))
        with torch.no_grad():
            for lin in (*self.linear_seasonal, *self.linear_trend):
                lin.weight.fill_(1.0 / c.window)  # the reference's init: each output starts as the window mean

    def state_spec(self) -> list[StateField]:
        return [StateField("window", (self.config.n_targets, self.config.window - 1))]

    def _linear(self, z: Tensor, lins: nn.ModuleList) -> Tensor:
        """z (..., K, W) → (..., K, H) through the shared linear or the per-channel ones."""
        if not self.config.individual:
            return lins[0](z)
        weight = torch.stack([lin.weight for lin in lins])  # (K, H, W)
        bias = torch.stack([lin.bias for lin in lins])  # (K, H)
        return torch.einsum("...kw,khw->...kh", z, weight) + bias

    def forecast(self, w: Tensor) -> Tensor:
        """The DLinear formula on explicit windows: w (..., K, W) → (..., H, K)."""
        seasonal, trend = series_decomp(w, self.config.moving_avg)  # (..., K, W) each
        y = self._linear(seasonal, self.linear_seasonal) + self._linear(trend, self.linear_trend)  # (..., K, H)
        return y.transpose(-1, -2)

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D_in), state (ring,) with ring (B, K, W−1) or None (zeros) → y (B, L, H, K), new state."""
        B, K, W = x.shape[0], self.config.n_targets, self.config.window
        ring = x.new_zeros(B, K, W - 1) if state is None else state[0]
        u = x[..., self.target_index].transpose(1, 2)  # (B, K, L)
        seq = torch.cat([ring, u], dim=-1)  # (B, K, W−1+L)
        windows = seq.unfold(-1, W, 1).transpose(1, 2)  # (B, L, K, W): windows[:, t] ends at x[:, t]
        return self.forecast(windows), (seq[..., seq.shape[-1] - (W - 1) :],)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), state (ring,) → y_t (B, H, K), new state. Pure."""
        window = torch.cat([state[0], x_t[:, self.target_index].unsqueeze(-1)], dim=-1)  # (B, K, W)
        return self.forecast(window), (window[..., 1:],)
