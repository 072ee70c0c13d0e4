"""The convolutional-SSM block shared by S4 and S4D: a kernel SSM run as an FFT convolution with a D skip,
then GELU → dropout → Linear(H, 2H) → GLU, as in the reference. Each of s4.py / s4d.py holds only its kernel.

A kernel is a module with
    forward(u (B, L, H), state | None, return_state) -> (y (B, L, H), final state | None)   (D skip included)
    step(u_t (B, H), state) -> (y_t (B, H), new state)
    state_shape: the per-cell state shape
and computes its outputs with `conv_with_skip` from its convolution kernels (plus its initial-state term).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import State, StateField
from models.stack import SequenceLayer, StackConfig, glu_linear


def fft_causal_conv(u: Tensor, k: Tensor) -> Tensor:
    """Causal convolution y_t = Σ_{j≤t} k_j u_{t-j} by FFT. u (B, H, L), k (H, L) → (B, H, L)."""
    L = u.shape[-1]
    n = 2 * L
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[..., :L]


def conv_with_skip(u: Tensor, K: Tensor, D: Tensor) -> Tensor:
    """u (B, H, L), K (n_dir, H, L), D (H,) → (B, H, L): the causal convolution with K[0], plus (n_dir = 2) the
    anti-causal one with K[1] on the flipped sequence, plus the skip D ⊙ u."""
    y = fft_causal_conv(u, K[0])
    if K.shape[0] == 2:
        y = y + fft_causal_conv(u.flip(-1), K[1]).flip(-1)
    return y + D.unsqueeze(-1) * u


class ConvSSMBlock(SequenceLayer):
    """Kernel SSM (+ D skip) → GELU → dropout → Linear(H, 2H) → GLU. u (B, L, H) → (B, L, H); state (kernel's,).

    Subclasses set `Config`, `kind` (the name in error messages) and `core`, and build the kernel in `make_kernel`.
    Built from a config or from keywords with the seed's names: `S4Layer(d_model=64, hippo_method="legendre")`.
    config.bidirectional adds an anti-causal kernel for offline, non-causal use (scoring whole windows); such a
    block has no recurrent state or step: state_spec, step and forward with a state raise RuntimeError."""

    kind: ClassVar[str] = "SSM"

    def __init__(self, config: StackConfig | None = None, **fields: Any):
        super().__init__()
        config = self.layer_config(config, fields)
        self.d_model, self.bidirectional = config.d_model, config.bidirectional
        self.kernel = self.make_kernel(config, 2 if config.bidirectional else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.d_model, 2 * config.d_model)

    def make_kernel(self, config: StackConfig, n_directions: int) -> nn.Module:
        raise NotImplementedError

    def state_spec(self) -> list[StateField]:
        if self.bidirectional:
            raise RuntimeError(f"{self.kind} with bidirectional=True is non-causal: it has no recurrent state or "
                               "step; use forward() over whole windows")
        return [StateField("ssm", self.kernel.state_shape)]

    def _mix(self, y: Tensor) -> Tensor:
        return glu_linear(self.out, self.dropout(F.gelu(y)))

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        if self.bidirectional and (state is not None or return_state):
            self.state_spec()  # raises the explanatory error
        y, s = self.kernel(u, None if state is None else state[0], return_state)  # (B, L, H)
        return self._mix(y), ((s,) if return_state else None)

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        if self.bidirectional:
            self.state_spec()  # raises the explanatory error
        y, s = self.kernel.step(u_t, state[0])  # (B, H)
        return self._mix(y), (s,)
