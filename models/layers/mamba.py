"""Mamba: selective state-space block (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces", 2023), in plain PyTorch, laid out like the reference mamba_simple.py.

With d_inner = E = expand·d_model channels and N states per channel, one block computes

    x, z    = in_proj(u)                                   (B, L, E) each
    x       = SiLU(causal depthwise conv1d of width d_conv over x)
    dt, B, C = x_proj(x)                                   (B, L, R), (B, L, N), (B, L, N)
    Δ       = softplus(dt_proj(dt))                        (B, L, E), low rank R = dt_rank
    h_t     = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t           (B, E, N) per step
    y_t     = C_t · h_t + D ⊙ x_t
    out     = out_proj(y ⊙ SiLU(z))

A = -exp(A_log) (E, N) is real and negative (S4D-real init: A_n = -n, n = 1 … N, per channel) and
Δ = softplus(·) > 0, so every Ā_t = exp(Δ_t A) lies in (0, 1): the recurrence is stable for any input.
As in the reference, A is discretized by ZOH but B by Euler (B̄_t = Δ_t B_t), the simplification the
paper uses. Ā is input-dependent, so there is no fixed pole: `discrete_poles()` reports the poles at
the bias Δ (dt_proj's input-dependent part at zero), exp(A·softplus(dt_bias)).

The state is (conv_state (d_conv−1, E): the last d_conv−1 conv inputs, oldest first; ssm_state (N, E)), the
channel axis E last: onnxruntime broadcasts along a contiguous E several times faster than along the short
N or d_conv axis, which makes the exported step about 2× faster at 1,000 cells.
Parallel mode prepends the conv state to the sequence (zero state = the reference's zero padding) and
runs the selective scan with models.scan.linear_scan from the given ssm state; it materializes
(B, chunk, E, N) tensors, and `chunk_size` bounds the chunk by scanning chunk after chunk with the state
carried between them; the doubling scan costs O(L log chunk), so moderate chunks (the default 64) are
also faster than one scan over a long window. `selective_scan_ref` is the sequential reference;
`step` is O(1) in history.
Δ's bias init is the reference's: Δ log-uniform in [dt_min, dt_max] (floored at dt_init_floor), stored
as its inverse softplus Δ + log(1 − e^{−Δ}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import State, StateField
from models.layers.ssm_options import SSMOptions
from models.registry import register
from models.scan import linear_scan
from models.stack import SequenceLayer, SSMForecaster, StackConfig


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
    h0: Tensor | None = None, chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Parallel selective scan. u, delta (B, L, E); A (E, N); B, C (B, L, N); D (E,); h0 (B, E, N) or None
    (zero) → y (B, L, E) (D skip included, no gate) and the final state h_{L-1} (B, E, N).

    chunk_size bounds the (B, chunk, E, N) tensors materialized at once (None: the whole sequence)."""
    L = u.shape[1]
    chunk = L if chunk_size is None else max(1, min(chunk_size, L))
    ys, h = [], h0
    for s in range(0, L, chunk):  # a loop over chunks, not time steps
        dt, x = delta[:, s : s + chunk], u[:, s : s + chunk]  # (B, l, E)
        dA = torch.exp(dt.unsqueeze(-1) * A)  # (B, l, E, N)
        dBx = (dt * x).unsqueeze(-1) * B[:, s : s + chunk].unsqueeze(-2)  # (B, l, E, N)
        hs = linear_scan(dA, dBx, h, dim=1)  # (B, l, E, N)
        ys.append(torch.einsum("blen,bln->ble", hs, C[:, s : s + chunk]))
        h = hs[:, -1]
    y = torch.cat(ys, 1) if len(ys) > 1 else ys[0]
    return y + D * u, h


def selective_scan_ref(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, h0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Sequential reference of selective_scan: one step per position, same arguments and results."""
    h = u.new_zeros(u.shape[0], *A.shape) if h0 is None else h0  # (B, E, N)
    ys = []
    for t in range(u.shape[1]):
        dt = delta[:, t].unsqueeze(-1)  # (B, E, 1)
        h = torch.exp(dt * A) * h + dt * u[:, t].unsqueeze(-1) * B[:, t].unsqueeze(1)
        ys.append((h * C[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, 1) + D * u, h


@dataclass
class MambaConfig(StackConfig):
    d_state: int = 8
    d_conv: int = 4
    expand: float = 2  # d_inner = int(expand · d_model)
    dt_rank: int | str = "auto"  # "auto": ceil(d_model / 16)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False  # bias of in_proj and out_proj
    ssm_lr: float = 1e-3  # lr cap of A_log and the Δ bias
    chunk_size: int | None = 64  # selective-scan chunk along L (None: whole sequence)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_state < 1:
            raise ValueError(f"d_state must be ≥ 1, got {self.d_state}")
        if self.d_conv < 2:
            raise ValueError(f"d_conv must be ≥ 2 (the conv state keeps d_conv − 1 inputs), got {self.d_conv}")
        if self.expand <= 0 or int(self.expand * self.d_model) < 1:
            raise ValueError(f"expand must give d_inner = int(expand·d_model) ≥ 1, got expand={self.expand}")
        if self.dt_rank != "auto" and (isinstance(self.dt_rank, str | bool) or int(self.dt_rank) < 1):
            raise ValueError(f"dt_rank must be 'auto' or an int ≥ 1, got {self.dt_rank!r}")
        SSMOptions.of(self)  # ValueError naming a bad dt_min / dt_max / ssm_lr
        if self.dt_init_floor < 0:
            raise ValueError(f"dt_init_floor must be ≥ 0, got {self.dt_init_floor}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be None or ≥ 1, got {self.chunk_size}")


class MambaLayer(SequenceLayer):
    """The Mamba mixer (the stack supplies the pre-norm residual around it): `MambaLayer(MambaConfig(...))`.
    u (B, L, D) → (B, L, D); state (conv_state (B, d_conv−1, E), ssm_state (B, N, E)), E = expand·d_model.

    The stack also scales out_proj by 1/sqrt(n_layers) (Mamba.make_layer); a layer built alone is not scaled."""

    Config = MambaConfig

    def __init__(self, config: MambaConfig):
        super().__init__()
        c, opt = config, SSMOptions.of(config)
        d_model, d_state, d_conv = c.d_model, c.d_state, c.d_conv
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = E = int(c.expand * d_model)
        self.dt_rank = R = math.ceil(d_model / 16) if c.dt_rank == "auto" else int(c.dt_rank)
        self.chunk_size = c.chunk_size

        self.in_proj = nn.Linear(d_model, 2 * E, bias=c.bias)
        # padding 0: the causal left context is the conv state (zeros for a fresh stream), prepended in forward
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, bias=c.conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.out_proj = nn.Linear(E, d_model, bias=c.bias)

        # Δ init: dt_proj keeps the variance of its rank-R input; its bias puts softplus(bias) = Δ₀
        # log-uniform in [dt_min, dt_max].
        nn.init.uniform_(self.dt_proj.weight, -(R**-0.5), R**-0.5)
        dt = torch.exp(opt.log_dt(E)).clamp(min=c.dt_init_floor)
        inv_softplus_dt = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_softplus_dt)
        opt.mark(self.dt_proj.bias)
        A = torch.arange(1, d_state + 1, dtype=torch.float64).expand(E, d_state)  # S4D-real: A_n = -n
        self.A_log = opt.mark(nn.Parameter(torch.log(A).float().contiguous()))  # (E, N)
        self.D = nn.Parameter(torch.ones(E))  # 1-D: no weight decay, full lr (as the reference)

    def state_spec(self) -> list[StateField]:
        return [StateField("conv", (self.d_conv - 1, self.d_inner)), StateField("ssm", (self.d_state, self.d_inner))]

    def continuous_poles(self) -> Tensor:
        """A (E, N), complex with zero imaginary part; Re < 0 by construction."""
        A = -torch.exp(self.A_log)
        return torch.complex(A, torch.zeros_like(A))

    def discrete_poles(self) -> Tensor:
        """exp(A·softplus(dt_bias)) (E, N) complex: Ā at the bias Δ (Ā itself depends on the input)."""
        p = torch.exp(-torch.exp(self.A_log) * F.softplus(self.dt_proj.bias).unsqueeze(-1))
        return torch.complex(p, torch.zeros_like(p))

    def _ssm_inputs(self, x: Tensor, step: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Conv output x (..., E) → Δ (..., E), B (..., N), C (..., N). step: Δ's softplus written as
        relu(v) + log(1 + exp(−|v|)), the same function, which onnxruntime runs ~4× faster than its Softplus."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        v = self.dt_proj(dt)
        return (torch.relu(v) + torch.log(1 + torch.exp(-v.abs())) if step else F.softplus(v)), B, C

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        """u (B, L, D), state (conv (B, d_conv−1, E), ssm (B, N, E)) or None (zero) → y (B, L, D), final state."""
        Bsz, L, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, E) each
        if state is None:
            conv_state = u.new_zeros(Bsz, self.d_conv - 1, self.d_inner)
            h0 = None
        else:
            conv_state, h = state
            h0 = h.transpose(1, 2)  # (B, E, N), the scan's layout
        xc = torch.cat([conv_state, x], dim=1)  # (B, d_conv−1+L, E)
        x = F.silu(self.conv1d(xc.transpose(1, 2))).transpose(1, 2)  # (B, L, E)
        delta, B, C = self._ssm_inputs(x)
        A = -torch.exp(self.A_log)  # (E, N)
        y, h = selective_scan(x, delta, A, B, C, self.D, h0, self.chunk_size)  # (B, L, E), (B, E, N)
        out = self.out_proj(y * F.silu(z))
        if not return_state:
            return out, None
        return out, (xc[:, L:], h.transpose(1, 2))  # the last d_conv−1 conv inputs, even when L < d_conv−1

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        """u_t (B, D), state → y_t (B, D), new state. Pure, real, no data-dependent control flow."""
        conv_state, h = state  # (B, d_conv−1, E), (B, N, E)
        xz = self.in_proj(u_t)  # (B, 2E)
        x, z = xz[:, : self.d_inner], xz[:, self.d_inner :]  # (B, E) each; constant slices (chunk exports as
        # shape arithmetic)
        window = torch.cat([conv_state, x.unsqueeze(1)], dim=1)  # (B, d_conv, E), oldest first
        x = (window * self.conv1d.weight[:, 0].t()).sum(1)  # (B, E)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        delta, B, C = self._ssm_inputs(x, step=True)  # (B, E), (B, N), (B, N)
        A = -torch.exp(self.A_log).t()  # (N, E)
        # h_n,e ← exp(Δ_e A_n,e) h_n,e + B_n Δ_e x_e: the outer product as a (N, 1) @ (1, E) matmul per cell
        h = torch.exp(delta.unsqueeze(1) * A) * h + B.unsqueeze(-1) @ (delta * x).unsqueeze(1)  # (B, N, E)
        y = (C.unsqueeze(1) @ h).squeeze(1) + self.D * x  # (B, E)
        return self.out_proj(y * F.silu(z)), (window[:, 1:], h)


@register("mamba")
class Mamba(SSMForecaster):
    """Stack of Mamba mixers with a multi-horizon head."""

    Config, Layer = MambaConfig, MambaLayer

    def make_layer(self, i: int) -> nn.Module:
        layer = super().make_layer(i)
        # the reference's prenorm-residual rescale (GPT-2 style): out_proj / sqrt(n_layers) keeps the
        # residual stream's variance independent of depth at init
        with torch.no_grad():
            layer.out_proj.weight.div_(math.sqrt(self.config.n_layers))
        return layer
