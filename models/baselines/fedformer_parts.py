"""The parts of FEDformer (models.baselines.fedformer) that are not attention: mode selection, the DFT restricted
to selected bins as constant matrices, the moving-average decomposition, the token embedding and the seasonal
LayerNorm. Shapes are time-major, (L, N, ·), as in the model."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


# -- modes and the restricted DFT -----------------------------------------------------------------------------------
def n_modes(length: int, modes: int) -> int:
    """M at a block of length L: min(modes, L // 2) (the reference's clipping rule)."""
    return min(int(modes), int(length) // 2)


def select_modes(length: int, modes: int, method: str, generator: torch.Generator | None = None) -> list[int]:
    """The sorted bins a block of length L keeps: M = n_modes(L, modes) of 0 … L//2 − 1, the lowest ("low") or a
    uniform draw without replacement from `generator` ("random")."""
    m = n_modes(length, modes)
    if method == "random":
        return sorted(torch.randperm(length // 2, generator=generator)[:m].tolist())
    return list(range(m))


def _angles(length: int, bins: list[int]) -> Tensor:
    """(L, M) float64: 2π·(t·k mod L)/L (the product reduced exactly in integers first)."""
    t = torch.arange(length, dtype=torch.int64).unsqueeze(1)
    k = torch.tensor(bins, dtype=torch.int64).unsqueeze(0)
    return (2.0 * math.pi / length) * ((t * k) % length).to(torch.float64)


def dft_matrix(length: int, bins: list[int]) -> Tensor:
    """(2M, L) float64: [cos ; −sin] rows, so F @ x (x (L, …)) = [Re X_k ; Im X_k] for k in bins, with X = rfft(x)."""
    a = _angles(length, bins).T  # (M, L)
    return torch.cat([torch.cos(a), -torch.sin(a)], 0)


def idft_matrix(length: int, bins: list[int], scale: float = 1.0) -> Tensor:
    """(2M, L) float64: [Re Y ; Im Y] (…, 2M) @ G = scale · irfft(spectrum holding Y_m at bin bins[m], 0 elsewhere,
    n=L): x_t = (1/L) Σ_m c_m (Re Y_m cos − Im Y_m sin)(2π k_m t/L), c = 1 at DC (and Nyquist), 2 elsewhere."""
    a = _angles(length, bins).T  # (M, L)
    c = torch.tensor([1.0 if k == 0 or 2 * k == length else 2.0 for k in bins], dtype=torch.float64).unsqueeze(1)
    return torch.cat([c * torch.cos(a), -c * torch.sin(a)], 0) * (scale / length)


def _const(buf: Tensor, like: Tensor) -> Tensor:
    """A constant buffer in the dtype of `like` (a no-op once the module is in that dtype). The buffers are built
    in float64, so a float64 model holds them exactly."""
    return buf if buf.dtype == like.dtype else buf.to(like.dtype)


def time_mix(matrix: Tensor, x: Tensor, length: int) -> Tensor:
    """A constant map along time on a time-major tensor: matrix (P, L), x (L, …) → (P, N·…) flat, one GEMM (the
    callers reshape with their own constant sizes)."""
    return _const(matrix, x) @ x.reshape(length, -1)


# -- decomposition, embedding, norms --------------------------------------------------------------------------------
def moving_average_matrix(length: int, kernel_size: int) -> Tensor:
    """(L, L) float64 A with A @ x = the moving average of x along time: edge-replicate padding by p = (m−1)//2 at
    both ends, then a stride-1 mean of m: A[t, s] = #{j ∈ [−p, p] : clamp(t + j, 0, L−1) = s} / m."""
    p = (kernel_size - 1) // 2
    src = (torch.arange(length).unsqueeze(1) + torch.arange(-p, p + 1)).clamp(0, length - 1)  # (L, m)
    A = torch.zeros(length, length, dtype=torch.float64)
    A.scatter_add_(1, src, torch.ones(src.shape, dtype=torch.float64))
    return A / kernel_size


class SeriesDecomp(nn.Module):
    """x (L, N, C), time-major → (seasonal, trend), both (L, N, C): trend = the edge-replicated moving average,
    seasonal = x − trend (the reference's series_decomp), as one matmul with a constant (L, L) matrix."""

    def __init__(self, length: int, channels: int, kernel_size: int):
        super().__init__()
        self.length, self.channels = length, channels
        self.register_buffer("avg", moving_average_matrix(length, kernel_size), persistent=False)  # (L, L)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        trend = time_mix(self.avg, x, self.length).reshape(self.length, -1, self.channels)  # (L, N, C)
        return x - trend, trend


def circular_conv3(x: Tensor, weight: Tensor) -> Tensor:
    """x (L, N, C_in) time-major, weight (C_out, C_in, 3) → (L, N, C_out): a k=3 convolution along time with
    circular padding (position 0 sees position L−1 and L−1 sees 0), no bias: the reference's
    Conv1d(padding=1, padding_mode='circular'), y_t = W₀ x_{t−1} + W₁ x_t + W₂ x_{t+1}."""
    c_out, c_in = weight.shape[0], weight.shape[1]
    if c_out < c_in:  # shift the (narrower) outputs of the three taps: u_j = x W_jᵀ, y_t = u₀_{t−1} + u₁_t + u₂_{t+1}
        u = x @ weight.permute(1, 2, 0).flatten(1)  # (L, N, 3·C_out), tap-major
        u0, u1, u2 = u[..., :c_out], u[..., c_out : 2 * c_out], u[..., 2 * c_out :]
        return torch.cat([u0[-1:], u0[:-1]], 0) + u1 + torch.cat([u2[1:], u2[:1]], 0)
    prev = torch.cat([x[-1:], x[:-1]], 0)  # x_{t−1}
    nxt = torch.cat([x[1:], x[:1]], 0)  # x_{t+1}
    return torch.cat([prev, x, nxt], -1) @ weight.permute(2, 1, 0).flatten(0, 1)  # (L, N, 3·C_in) @ (3·C_in, C_out)


class TokenEmbedding(nn.Module):
    """E(x): the reference's value embedding, Conv1d(C_in → d_model, k=3, circular, no bias), Kaiming-normal init."""

    def __init__(self, c_in: int, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, d_model, kernel_size=3, bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: Tensor) -> Tensor:
        return circular_conv3(x, self.conv.weight)  # (L, N, C_in) → (L, N, d)


class SeasonalLayerNorm(nn.Module):
    """LN*(x) = LayerNorm(x) − its mean over time (the reference's my_Layernorm), x (L, N, d)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)  # (L, N, d)
        return x - x.mean(0, keepdim=True)
