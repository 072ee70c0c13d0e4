"""Mamba's selective SSM (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023), its
parallel scan, sequential reference and recurrent step; the Mamba mixer (models.layers.mamba) and the `mamba`
sequence core (models.layers.cores) both run it.

Over E channels with N states each, from the input x (B, L, E):

    dt, B, C = x_proj(x)                                   (B, L, R), (B, L, N), (B, L, N)
    Δ       = softplus(dt_proj(dt))                        (B, L, E), low rank R = dt_rank
    h_t     = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t           (B, E, N) per step
    y_t     = C_t · h_t + D ⊙ x_t

A is discretized by ZOH, B by Euler (B̄_t = Δ_t B_t), the simplification the paper uses. Δ = softplus(·) > 0.

init "real" (the default, the reference's S4D-Real): A = -exp(A_log) (E, N) real, A_n = -(n+1), so every
Ā_t = exp(Δ_t A) lies in (0, 1). Any other init method (models.layers.ssm_init; the seed's MambaLayer takes
"inv", "lin", "legs") makes A complex, the conjugate-pair half of a real system as in S4D: N/2 modes
A = -exp(A_log) + i·A_imag (E, N/2), B_t and C_t complex (N/2 each, the same N real numbers out of x_proj, real
parts first), and y_t = 2·Re(C_t · h_t) + D ⊙ x_t; |Ā_t| = exp(Δ_t Re A) < 1. The real system has N states either
way, and so does the state: (N, E) real, or (2, N/2, E) as re/im planes (E last: onnxruntime broadcasts along a
contiguous E several times faster than along the short N axis).

Parallel mode runs models.scan.linear_scan from the given state; it materializes (B, chunk, E, N) tensors, and
`chunk_size` bounds the chunk by scanning chunk after chunk with the state carried between them (the doubling scan
costs O(L log chunk), so moderate chunks are also faster than one scan over a long window). `selective_scan_ref` is
the sequential reference; the step is O(1) in history and real arithmetic (ONNX-exportable).
Δ's bias init is the reference's: Δ log-uniform in [dt_min, dt_max] (floored at dt_init_floor), stored as its
inverse softplus Δ + log(1 − e^{−Δ}); dt_proj's weight keeps the variance of its rank-R input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers.ssm_init import canonical_init, diagonal_init
from models.layers.ssm_options import SSMOptions
from models.scan import linear_scan


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
    h0: Tensor | None = None, chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Parallel selective scan. u, delta (B, L, E); A (E, N); B, C (B, L, N); D (E,); h0 (B, E, N) or None
    (zero) → y (B, L, E) (D skip included, no gate) and the final state h_{L-1} (B, E, N). A, B, C and h0 complex:
    the conjugate-pair half of a real system, y = 2·Re(C · h) + D u.

    chunk_size bounds the (B, chunk, E, N) tensors materialized at once (None: the whole sequence)."""
    L = u.shape[1]
    chunk = L if chunk_size is None else max(1, min(chunk_size, L))
    ys, h = [], h0
    for s in range(0, L, chunk):  # a loop over chunks, not time steps
        dt, x = delta[:, s : s + chunk], u[:, s : s + chunk]  # (B, l, E)
        dA = torch.exp(dt.unsqueeze(-1) * A)  # (B, l, E, N)
        dBx = (dt * x).unsqueeze(-1) * B[:, s : s + chunk].unsqueeze(-2)  # (B, l, E, N)
        hs = linear_scan(dA, dBx, h, dim=1)  # (B, l, E, N)
        y = torch.einsum("blen,bln->ble", hs, C[:, s : s + chunk])
        ys.append(2 * y.real if y.is_complex() else y)
        h = hs[:, -1]
    y = torch.cat(ys, 1) if len(ys) > 1 else ys[0]
    return y + D * u, h


def selective_scan_ref(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, h0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Sequential reference of selective_scan: one step per position, same arguments and results."""
    h = torch.zeros(u.shape[0], *A.shape, dtype=A.dtype, device=u.device) if h0 is None else h0  # (B, E, N)
    ys = []
    for t in range(u.shape[1]):
        dt = delta[:, t].unsqueeze(-1)  # (B, E, 1)
        h = torch.exp(dt * A) * h + dt * u[:, t].unsqueeze(-1) * B[:, t].unsqueeze(1)
        y = (h * C[:, t].unsqueeze(1)).sum(-1)
        ys.append(2 * y.real if y.is_complex() else y)
    return torch.stack(ys, 1) + D * u, h


class SelectiveParams:
    """The selective SSM's parameters and computations on the module that holds them (x_proj, dt_proj, A_log
    (+ A_imag), D): SelectiveSSM (the core) and MambaLayer (the Mamba mixer, whose reference layout keeps them on
    the block itself) mix this in. State in the layout of the module docstring."""

    def init_selective(self, d_in: int, E: int, d_state: int, dt_rank: int, init: str, opt: SSMOptions,
                       dt_init_floor: float) -> None:
        """Create x_proj (d_in → R + 2N, reading the E channels), dt_proj (R → E), A and D (module docstring)."""
        init = canonical_init(init)
        self.d_inner, self.d_state, self.dt_rank = E, d_state, dt_rank
        self.complex_a = init != "real"
        if self.complex_a and d_state % 2:
            raise ValueError(f"a complex selective SSM (init {init!r}) needs an even d_state, got {d_state}")
        self.x_proj = nn.Linear(d_in, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, E, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
        dt = torch.exp(opt.log_dt(E)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) = Δ₀
        opt.mark(self.dt_proj.bias)
        if self.complex_a:
            lam, _ = diagonal_init(init, E, d_state // 2)  # (E, N/2) complex128
            self.A_log = opt.mark(nn.Parameter(torch.log(-lam.real).float()))  # Re A = -exp(·) < 0
            self.A_imag = opt.mark(nn.Parameter(lam.imag.float()))
        else:
            A = torch.arange(1, d_state + 1, dtype=torch.float64).expand(E, d_state)  # S4D-Real: A_n = -(n+1)
            self.A_log = opt.mark(nn.Parameter(torch.log(A).float().contiguous()))  # (E, N)
        self.D = nn.Parameter(torch.ones(E))  # 1-D: no weight decay, full lr (as the reference)

    @property
    def selective_state_shape(self) -> tuple[int, ...]:
        """Per-cell state: (N, E) real, (2, N/2, E) re/im planes when A is complex."""
        E, N = self.d_inner, self.d_state
        return (2, N // 2, E) if self.complex_a else (N, E)

    def continuous_poles(self) -> Tensor:
        """A (E, N) real or (E, N/2) complex, as complex; Re < 0 by construction."""
        A = -torch.exp(self.A_log)
        return torch.complex(A, self.A_imag if self.complex_a else torch.zeros_like(A))

    def discrete_poles(self) -> Tensor:
        """exp(A·softplus(dt_bias)) complex: Ā at the bias Δ (Ā itself depends on the input)."""
        return torch.exp(self.continuous_poles() * F.softplus(self.dt_proj.bias).unsqueeze(-1))

    def selective_inputs(self, x: Tensor, step: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., E) → Δ (..., E), B (..., N), C (..., N). step: Δ's softplus written as
        relu(v) + log(1 + exp(−|v|)), the same function, which onnxruntime runs ~4× faster than its Softplus."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        v = self.dt_proj(dt)
        return (torch.relu(v) + torch.log(1 + torch.exp(-v.abs())) if step else F.softplus(v)), B, C

    def _complex_modes(self, t: Tensor) -> Tensor:
        """(..., N) real → (..., N/2) complex: real parts first, then imaginary parts."""
        half = self.d_state // 2
        return torch.complex(t[..., :half], t[..., half:])

    def selective_forward(self, x: Tensor, state: Tensor | None, chunk_size: int | None) -> tuple[Tensor, Tensor]:
        """x (B, L, E), state (B, *selective_state_shape) or None (zero) → y (B, L, E) (D skip), final state."""
        delta, B, C = self.selective_inputs(x)
        A = -torch.exp(self.A_log)  # (E, N) or (E, N/2)
        h0 = None
        if self.complex_a:
            A, B, C = torch.complex(A, self.A_imag), self._complex_modes(B), self._complex_modes(C)
            if state is not None:
                h0 = torch.complex(state[:, 0], state[:, 1]).transpose(1, 2)  # (B, E, N/2)
        elif state is not None:
            h0 = state.transpose(1, 2)  # (B, E, N), the scan's layout
        y, h = selective_scan(x, delta, A, B, C, self.D, h0, chunk_size)
        h = h.transpose(1, 2)  # (B, N, E) or (B, N/2, E) complex
        return y, (torch.stack([h.real, h.imag], 1) if self.complex_a else h)

    def selective_step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, E), state (B, *selective_state_shape) → y (B, E) (D skip), new state. Pure, real arithmetic."""
        delta, B, C = self.selective_inputs(x, step=True)  # (B, E), (B, N), (B, N)
        dx = (delta * x).unsqueeze(1)  # (B, 1, E)
        if not self.complex_a:
            A = -torch.exp(self.A_log).t()  # (N, E)
            # h_n,e ← exp(Δ_e A_n,e) h_n,e + B_n Δ_e x_e: the outer product as a (N, 1) @ (1, E) matmul per cell
            h = torch.exp(delta.unsqueeze(1) * A) * state + B.unsqueeze(-1) @ dx  # (B, N, E)
            return (C.unsqueeze(1) @ h).squeeze(1) + self.D * x, h
        half = self.d_state // 2
        mag = torch.exp(-delta.unsqueeze(1) * torch.exp(self.A_log).t())  # |Ā| (B, N/2, E)
        ang = delta.unsqueeze(1) * self.A_imag.t()
        a_re, a_im = mag * torch.cos(ang), mag * torch.sin(ang)
        h_re, h_im = state[:, 0], state[:, 1]  # (B, N/2, E)
        new_re = a_re * h_re - a_im * h_im + B[:, :half].unsqueeze(-1) @ dx
        new_im = a_re * h_im + a_im * h_re + B[:, half:].unsqueeze(-1) @ dx
        y = (C[:, :half].unsqueeze(1) @ new_re - C[:, half:].unsqueeze(1) @ new_im).squeeze(1)  # Re(C h)
        return 2 * y + self.D * x, torch.stack([new_re, new_im], 1)


def auto_dt_rank(d_model: int, dt_rank: int | str) -> int:
    """The reference's dt_rank: "auto" is ceil(d_model / 16)."""
    return math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)


class SelectiveSSM(SelectiveParams, nn.Module):
    """The selective SSM as a sequence core (models.layers.cores) over C channels: u (B, L, C) → (B, L, C), one state
    tensor (N, C) (or (2, N/2, C) for a complex init). x_proj reads the core's own input."""

    bidirectional = False  # causal only

    def __init__(self, channels: int, d_state: int = 8, init: str = "real", options: SSMOptions | None = None,
                 dt_rank: int | str = "auto", dt_init_floor: float = 1e-4, chunk_size: int | None = 64):
        super().__init__()
        self.chunk_size = chunk_size
        self.init_selective(channels, channels, d_state, auto_dt_rank(channels, dt_rank), init,
                            options or SSMOptions(), dt_init_floor)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return self.selective_state_shape

    def forward(
        self, u: Tensor, state: Tensor | None = None, return_state: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        y, h = self.selective_forward(u, state, self.chunk_size)
        return y, (h if return_state else None)

    def step(self, u_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.selective_step(u_t, state)
