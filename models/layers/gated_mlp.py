"""Gated-MLP SSM block: the Gated State Space layer (GSS; Mehta, Gupta, Cutkosky, Neyshabur, "Long Range
Language Modeling via Gated State Spaces", 2022), the "gated MLP with an SSM on the gate" pattern.

Per position, u (D,) → y (D,):

    v  = GELU(W_v u)            (d_ff,)    the wide branch, as in a gated MLP (GSS: F = 4·D)
    z  = GELU(W_z u)            (d_ssm,)   the narrow branch (GSS: H = D/4) that the SSM runs on
    z' = DiagSSM(z)             (d_ssm,)   S4D, reused from models.layers.s4d (D skip included)
    y  = W_o (v ⊙ W_up z')      (D,)       W_up: d_ssm → d_ff, no activation

The SSM runs on the narrow branch only, which is what makes GSS cheap: the recurrent state is
(2, N/2, d_ssm) per cell (S4DKernel re/im planes),
not (D, …). Everything but the SSM is position-wise, so the block's only
state is the SSM's, and its step is the S4D step (real arithmetic, exportable) between two MLPs.

Numerics: those of S4DKernel (FFT convolution plus the closed-form initial-state term in parallel
mode; the same recurrence in real arithmetic in recurrent mode; |Ā| < 1 by construction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from models.base import State, StateField
from models.layers.s4d import S4DKernel, check_s4d_options
from models.layers.ssm_options import SSMOptions
from models.registry import register
from models.stack import SequenceLayer, SSMForecaster, StackConfig


@dataclass
class GatedMLPConfig(StackConfig):
    d_ff: int | None = None  # wide (gate) branch; None: 4·d_model (GSS's F = 4E)
    d_ssm: int | None = None  # narrow (SSM) branch; None: max(1, d_model // 4) (GSS's H = E/4)
    d_state: int = 16
    init: str = "diag-lin"  # diag-lin | diag-inv | real | legs
    disc: str = "zoh"  # zoh | bilinear
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_s4d_options(self.init, self.disc, self.d_state)
        SSMOptions.of(self)  # ValueError naming a bad dt_min / dt_max / ssm_lr
        for name in ("d_ff", "d_ssm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be ≥ 1 (or None for the GSS default), got {value}")

    @property
    def widths(self) -> tuple[int, int]:
        """(d_ff, d_ssm) with the GSS defaults filled in."""
        d_ff = self.d_ff if self.d_ff is not None else 4 * self.d_model
        d_ssm = self.d_ssm if self.d_ssm is not None else max(1, self.d_model // 4)
        return d_ff, d_ssm


class GatedMLPLayer(SequenceLayer):
    """GSS block: u (B, L, D) → W_o(GELU(W_v u) ⊙ W_up S4D(GELU(W_z u))) (B, L, D); state (B, 2, N/2, d_ssm).

    `GatedMLPLayer(GatedMLPConfig(...))`, widths (d_ff, d_ssm) from `config.widths`."""

    Config = GatedMLPConfig

    def __init__(self, config: GatedMLPConfig):
        super().__init__()
        c = config
        d_model, (d_ff, d_ssm) = c.d_model, c.widths
        self.d_model, self.d_ff, self.d_ssm = d_model, d_ff, d_ssm
        self.to_v = nn.Linear(d_model, d_ff)
        self.to_z = nn.Linear(d_model, d_ssm)
        self.kernel = S4DKernel(d_ssm, c.d_state, c.init, c.disc, SSMOptions.of(c))
        self.up = nn.Linear(d_ssm, d_ff)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(d_ff, d_model)

    def state_spec(self) -> list[StateField]:
        return [StateField("ssm", self.kernel.state_shape)]

    def _gate(self, u: Tensor, z: Tensor) -> Tensor:
        """u (..., D) the block input, z (..., d_ssm) the SSM output → (..., D)."""
        v = F.gelu(self.to_v(u))  # (..., d_ff)
        return self.out(self.dropout(v * self.up(z)))

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        z = F.gelu(self.to_z(u))  # (B, L, d_ssm)
        z, s = self.kernel(z, None if state is None else state[0], return_state)  # (B, L, d_ssm)
        return self._gate(u, z), ((s,) if return_state else None)

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        z = F.gelu(self.to_z(u_t))  # (B, d_ssm)
        z, s = self.kernel.step(z, state[0])  # (B, d_ssm)
        return self._gate(u_t, z), (s,)


@register("gated_mlp")
class GatedMLP(SSMForecaster):
    """Stack of gated-MLP SSM (GSS) blocks with a multi-horizon head."""

    Config, Layer = GatedMLPConfig, GatedMLPLayer
