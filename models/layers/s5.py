"""S5: simplified state-space layer (Smith, Warrington, Linderman, "Simplified State Space Layers
for Sequence Modeling", ICLR 2023).

One MIMO diagonal SSM shared by all H channels (S4/S4D run H independent SISO SSMs). With P complex
modes kept from the conjugate-symmetric half of a 2P-dimensional real system (d_state = 2P):

    x_t = Λ̄ ⊙ x_{t-1} + B̄ u_t,     y_t = 2·Re(C̃ x_t) + D ⊙ u_t

Λ̄ (P,), B̄ (P, H), C̃ (H, P) complex; D (H,) real. The state is P complex numbers per cell, whatever H.

Init (the paper's, `init` = legs): Λ and V diagonalize the normal part of HiPPO-LegS, A + P Pᵀ = V Λ V*, keeping
the modes with Im Λ > 0 (their conjugates are the other half), optionally as `blocks` = J copies of a
(d_state/J)-sized HiPPO placed block-diagonally. The other methods of models.layers.ssm_init: legt, lagt, fourier
the same way from their normal parts; diag-lin, diag-inv, real, random their spectrum per block, with V the pairing
basis (each complex mode a pair of real coordinates), so B̃ and C̃ are drawn the same way for every init:
B̃ = V⁻¹ B₀ = V* B₀ with B₀ real lecun-normal (d_state, H); C̃ = C₀ V with C₀ complex lecun-normal (H, d_state);
Δ per mode, log-uniform in [dt_min, dt_max]; D standard normal. Re Λ = -exp(log_Lambda_real) < 0 keeps |Λ̄| < 1 for both
discretizations (ZOH: Λ̄ = exp(ΔΛ), B̄ = (Λ̄ − 1)/Λ · B̃; bilinear: Λ̄ = (1 + ΔΛ/2)/(1 − ΔΛ/2),
B̄ = Δ/(1 − ΔΛ/2) · B̃).

Parallel mode: the associative scan models.scan.linear_scan over Bu_t (no FFT: the MIMO kernel would
be an (H, H, L) tensor), started from the initial state x_{-1}; the last scanned state is the final
state. Recurrent mode: the same recurrence in real arithmetic on (re, im) pairs (ONNX-exportable).

S5SSM is also a sequence core (models.layers.cores): H3, the gated MLP and the Mamba block can run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import State, StateField
from models.complex import cdiv, cexp, cmul, split_pair, stack_pair
from models.layers.ssm_init import canonical_init, s5_init
from models.layers.ssm_options import SSMOptions
from models.registry import register
from models.scan import linear_scan
from models.stack import SequenceLayer, SSMForecaster, StackConfig

DISCRETIZATIONS = ("zoh", "bilinear")


def check_blocks(d_state: int, blocks: int) -> None:
    """Raise ValueError unless d_state splits into `blocks` HiPPO blocks of even size ≥ 2."""
    if blocks < 1:
        raise ValueError(f"blocks must be ≥ 1, got {blocks}")
    if d_state < 2 or d_state % (2 * blocks):
        raise ValueError(
            f"d_state must be a positive multiple of 2·blocks (even-sized HiPPO blocks), "
            f"got d_state={d_state}, blocks={blocks}"
        )


def s5_hippo_init(d_state: int, blocks: int = 1, init: str = "legs") -> tuple[Tensor, Tensor]:
    """Λ (P,) and V (d_state, P) complex128, P = d_state/2 (models.layers.ssm_init.s5_init): for HiPPO-LegS the
    Im Λ > 0 half of the eigenpairs of its normal part, `blocks` copies of size d_state/blocks placed
    block-diagonally, so that 2·Re(V diag(Λ) V*) is the block-diagonal normal part A + P Pᵀ; V has orthonormal
    columns."""
    check_blocks(d_state, blocks)
    return s5_init(init, d_state, blocks)


def lecun_normal(*shape: int, fan_in: int) -> Tensor:
    """float64 samples of variance 1/fan_in from a normal truncated at ±2σ (JAX's lecun_normal)."""
    std = (1.0 / fan_in) ** 0.5 / 0.87962566103423978  # rescaled so the truncated variance is 1/fan_in
    return nn.init.trunc_normal_(torch.empty(shape, dtype=torch.float64), std=std, a=-2 * std, b=2 * std)


@dataclass
class S5Config(StackConfig):
    d_state: int = 32  # 2P: total real-equivalent modes; the state keeps P complex modes
    blocks: int = 1  # J HiPPO blocks on the block diagonal of the init
    init: str = "legs"  # models.layers.ssm_init.INIT_METHODS (or an alias)
    disc: str = "zoh"  # zoh | bilinear
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_blocks(self.d_state, self.blocks)
        self.init = canonical_init(self.init)
        if self.disc not in DISCRETIZATIONS:
            raise ValueError(f"disc must be one of {DISCRETIZATIONS}, got {self.disc!r}")
        SSMOptions.of(self)  # ValueError naming a bad dt_min / dt_max / ssm_lr


class S5SSM(nn.Module):
    """The MIMO diagonal SSM: parameters, discretization, scan, recurrence. u (B, L, H) → (B, L, H)."""

    def __init__(self, d_model: int, d_state: int = 64, blocks: int = 1, disc: str = "zoh",
                 options: SSMOptions | None = None, init: str = "legs"):
        super().__init__()
        opt = options or SSMOptions()
        check_blocks(d_state, blocks)
        if disc not in DISCRETIZATIONS:
            raise ValueError(f"unknown discretization {disc!r}; choose from {DISCRETIZATIONS}")
        H, P = d_model, d_state // 2
        self.H, self.P, self.disc = H, P, disc
        Lam, V = s5_hippo_init(d_state, blocks, init)  # (P,), (d_state, P)
        B = V.conj().T @ lecun_normal(d_state, H, fan_in=d_state).to(V.dtype)  # (P, H): V⁻¹ B₀
        # fan_in follows the reference implementation (JAX's default in_axis on these shapes)
        C0 = torch.complex(lecun_normal(H, d_state, fan_in=d_state), lecun_normal(H, d_state, fan_in=d_state))
        C = C0 @ V  # (H, P)
        log_dt = opt.log_dt(P)
        self.log_Lambda_real = opt.mark(nn.Parameter(torch.log(-Lam.real).float()))  # Re Λ = -exp(·)
        self.Lambda_imag = opt.mark(nn.Parameter(Lam.imag.float()))
        self.log_dt = opt.mark(nn.Parameter(log_dt.float()))
        self.B = opt.mark(nn.Parameter(torch.view_as_real(B).float().contiguous()))  # (P, H, 2)
        self.C = nn.Parameter(torch.view_as_real(C).float().contiguous())  # (H, P, 2)
        self.D = nn.Parameter(torch.randn(H))

    @property
    def state_shape(self) -> tuple[int, int]:
        """Per-cell state shape: (P, 2), the P complex modes as (re, im) pairs."""
        return (self.P, 2)

    bidirectional = False  # causal only

    def discretize(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Λ̄ (P,) and B̄ (P, H) as (re, im) pairs; real arithmetic only (exportable)."""
        dt = torch.exp(self.log_dt)  # (P,)
        a_re, a_im = -torch.exp(self.log_Lambda_real), self.Lambda_imag  # (P,)
        dta_re, dta_im = a_re * dt, a_im * dt
        if self.disc == "zoh":
            dA_re, dA_im = cexp(dta_re, dta_im)  # exp(Δ·Λ)
            q_re, q_im = cdiv(dA_re - 1, dA_im, a_re, a_im)  # (exp(Δ·Λ) − 1) / Λ
        else:
            den_re, den_im = 1 - dta_re / 2, -dta_im / 2  # 1 − Δ·Λ/2
            dA_re, dA_im = cdiv(1 + dta_re / 2, dta_im / 2, den_re, den_im)
            q_re, q_im = cdiv(dt, torch.zeros_like(dt), den_re, den_im)  # Δ / (1 − Δ·Λ/2)
        b_re, b_im = split_pair(self.B)  # (P, H)
        dB_re, dB_im = cmul(q_re.unsqueeze(-1), q_im.unsqueeze(-1), b_re, b_im)
        return dA_re, dA_im, dB_re, dB_im

    def discrete_poles(self) -> Tensor:
        dA_re, dA_im, _, _ = self.discretize()
        return torch.complex(dA_re, dA_im)

    def continuous_poles(self) -> Tensor:
        return torch.complex(-torch.exp(self.log_Lambda_real), self.Lambda_imag)

    def forward(
        self, u: Tensor, state: Tensor | None = None, return_state: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """u (B, L, H), state (B, P, 2) or None (zero) → y (B, L, H) with D skip, final state (B, P, 2)."""
        dA_re, dA_im, dB_re, dB_im = self.discretize()
        Bu = torch.complex(u @ dB_re.T, u @ dB_im.T)  # (B, L, P)
        x0 = None if state is None else torch.complex(state[..., 0], state[..., 1])  # (B, P)
        xs = linear_scan(torch.complex(dA_re, dA_im).view(1, 1, -1), Bu, x0, dim=1)  # (B, L, P)
        c_re, c_im = split_pair(self.C)  # (H, P)
        y = 2 * (xs.real @ c_re.T - xs.imag @ c_im.T) + self.D * u  # (B, L, H)
        new_state = torch.view_as_real(xs[:, -1]).contiguous() if return_state else None
        return y, new_state

    def step(self, u_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u_t (B, H), state (B, P, 2) → y_t (B, H) (D skip included), new state. Real arithmetic."""
        dA_re, dA_im, dB_re, dB_im = self.discretize()
        x_re, x_im = split_pair(state)  # (B, P)
        ax_re, ax_im = cmul(dA_re, dA_im, x_re, x_im)
        nx_re, nx_im = ax_re + u_t @ dB_re.T, ax_im + u_t @ dB_im.T
        c_re, c_im = split_pair(self.C)
        y = 2 * (nx_re @ c_re.T - nx_im @ c_im.T) + self.D * u_t
        return y, stack_pair(nx_re, nx_im)


class S5Layer(SequenceLayer):
    """S5 block as in the paper: SSM (+ D skip) → GELU → dropout → weighted sigmoid gate
    z ⊙ σ(W z) with W (H, H). `S5Layer(S5Config(...))`; u (B, L, H) → (B, L, H), state (B, P, 2).

    The paper's gate rather than S4D's Linear(H, 2H) → GLU: it is what S5's results were obtained
    with, and costs H² instead of 2H² weights. The dropout after the gate is the stack's residual
    dropout."""

    Config, core = S5Config, "s5"

    def __init__(self, config: S5Config | None = None, **fields: Any):
        super().__init__()
        c = self.layer_config(config, fields)
        self.d_model = c.d_model
        self.ssm = S5SSM(c.d_model, c.d_state, c.blocks, c.disc, SSMOptions.of(c), c.init)
        self.dropout = nn.Dropout(c.dropout)
        self.gate = nn.Linear(c.d_model, c.d_model)

    def state_spec(self) -> list[StateField]:
        return [StateField("ssm", (self.ssm.P, 2))]

    def _gate(self, y: Tensor) -> Tensor:
        z = self.dropout(F.gelu(y))
        return z * torch.sigmoid(self.gate(z))

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        y, s = self.ssm(u, None if state is None else state[0], return_state)
        return self._gate(y), ((s,) if return_state else None)

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        y, s = self.ssm.step(u_t, state[0])
        return self._gate(y), (s,)


@register("s5")
class S5(SSMForecaster):
    """Stack of S5 layers with a multi-horizon head."""

    Config, Layer = S5Config, S5Layer
