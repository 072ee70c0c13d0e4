"""Window models made streaming: a forecaster of explicit windows (`forecast`) becomes a StreamingModel whose state
is a shift register of the last W − 1 inputs it reads.

forward_with_state(x, state) forecasts at every position t from the window of the last W register columns ending
at x[:, t], the positions before x[:, 0] taken from the state (zeros if None: zero padding, in normalized units);
it unfolds all windows at once, (B·L windows), so long sequences are better served by forward_last /
training_forward(last_only=True) (the window protocol), which run the last window only. step shifts the register
by one (torch.cat, pure) and runs `forecast` on its one window. The register holds copies of inputs only, so
step ≡ forward is exact whenever `forecast` is a function of its window.

A subclass sets `time_major` (its windows are (N, W, C) if true, (N, C, W) if false; the state, per cell, is
(W − 1, C) or (C, W − 1) alike) and may narrow `register_columns` (PatchTST keeps its target channels only).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from models.base import State, StateField, StreamingModel


class WindowModel(StreamingModel):
    """Base of the window models (PatchTST, iTransformer, Informer, FEDformer, TFT, ETSformer, Crossformer)."""

    time_major: ClassVar[bool] = True  # windows (N, W, C) if true, (N, C, W) if false

    def forecast(self, w: Tensor) -> Tensor:
        """Explicit windows (N, W, C) or (N, C, W) (time_major) → the targets' forecasts (N, H, K)."""
        raise NotImplementedError

    def register_columns(self, x: Tensor) -> Tensor:
        """The input columns the register keeps: x (..., D_in) → (..., C). Default: every column."""
        return x

    @property
    def register_width(self) -> int:
        return self.config.d_input

    def state_spec(self) -> list[StateField]:
        W, C = self.config.window, self.register_width
        return [StateField("window", (W - 1, C) if self.time_major else (C, W - 1))]

    def _layout(self, t: Tensor) -> Tensor:
        """(…, T, C) time-major → the model's layout (and back: the map is its own inverse)."""
        return t if self.time_major else t.transpose(-1, -2)

    def _history(self, x: Tensor, state: State | None) -> Tensor:
        """x (B, L, D_in), state (register,) or None (zeros) → [register ; columns of x], time-major (B, W−1+L, C)."""
        cols = self.register_columns(x)  # (B, L, C)
        W = self.config.window
        ring = cols.new_zeros(cols.shape[0], W - 1, cols.shape[-1]) if state is None else self._layout(state[0])
        return torch.cat([ring, cols], dim=1)

    def _register(self, seq: Tensor) -> State:
        """The last W − 1 rows of a time-major history, in the state's layout."""
        return (self._layout(seq[:, seq.shape[1] - (self.config.window - 1) :]),)

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D_in), state (register,) or None (zeros) → y (B, L, H, K), new state."""
        B, L, W = x.shape[0], x.shape[1], self.config.window
        seq = self._history(x, state)  # (B, W−1+L, C)
        windows = self._layout(seq.unfold(1, W, 1).transpose(-1, -2))  # (B, L, W, C): windows[:, t] ends at x[:, t]
        y = self.forecast(windows.flatten(0, 1))  # (B·L, H, K)
        return y.unflatten(0, (B, L)), self._register(seq)

    def forward_last(self, x: Tensor, state: State | None = None) -> Tensor:
        """x (B, L, D_in) → the forecast at the last position only, (B, H, K): one window per row."""
        seq = self._history(x, state)  # (B, W−1+L, C)
        return self.forecast(self._layout(seq[:, seq.shape[1] - self.config.window :]))

    def training_forward(self, x: Tensor, state: State | None = None,
                         last_only: bool = False) -> tuple[Tensor, dict[str, Tensor], State]:
        """StreamingModel.training_forward; last_only runs the last window only, (B, 1, H, K)."""
        if not last_only:
            return super().training_forward(x, state)
        seq = self._history(x, state)  # (B, W−1+L, C)
        y = self.forecast(self._layout(seq[:, seq.shape[1] - self.config.window :]))  # (B, H, K)
        return y.unsqueeze(1), {}, self._register(seq)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), state (register,) → y_t (B, H, K), new state. Pure."""
        col = self.register_columns(x_t)  # (B, C)
        if self.time_major:
            window = torch.cat([state[0], col.unsqueeze(1)], dim=1)  # (B, W, C)
            return self.forecast(window), (window[:, 1:],)
        window = torch.cat([state[0], col.unsqueeze(-1)], dim=-1)  # (B, C, W)
        return self.forecast(window), (window[..., 1:],)
