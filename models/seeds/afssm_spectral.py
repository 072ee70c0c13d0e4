"""AFSSM's spectral machinery (models/seeds/afssm.py): DFT rows, an O(L) pair scan, the per-component selective
recurrence in parallel."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def dft_rows(index: Tensor, n: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Rows `index` (k,) of the unitary DFT matrix F[j, m] = exp(−2πi·jm/n)/√n, as (re, im) each (k, n).

    Computed in float64 from the exact integer phase jm mod n, then cast: the transform is unitary to the
    working precision in every dtype (a float32 buffer cast to float64 would not be)."""
    m = torch.arange(n, device=index.device)
    phase = (index.unsqueeze(-1) * m) % n  # (k, n), exact integers
    angle = phase.to(torch.float64) * (2 * math.pi / n)
    scale = 1.0 / math.sqrt(n)
    return (torch.cos(angle) * scale).to(dtype), (-torch.sin(angle) * scale).to(dtype)


def pair_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All states of h_t = a_t h_{t−1} + b_t along dim 1 (h_{−1} = h0, zero if None); a, b (B, L, …) alike.

    The same recurrence as models.scan.linear_scan, by even/odd recursion: adjacent pairs are combined,
    (a₁a₀, a₁b₀ + b₁), the half-length scan gives the odd positions and one more step the even ones. O(L) work
    instead of the doubling scan's O(L log L), and reshapes instead of overlapping slices, whose backward
    allocates a full-size gradient per slice: about half the training time of this layer on CPU."""
    if h0 is not None:
        b = torch.cat([b[:, :1] + a[:, :1] * h0.unsqueeze(1), b[:, 1:]], 1)
    L = b.shape[1]
    if L == 1:
        return b
    if L % 2:  # pad with the identity step (a = 1, b = 0)
        a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
        b = torch.cat([b, torch.zeros_like(b[:, :1])], 1)
    pairs = (b.shape[0], b.shape[1] // 2, 2, *b.shape[2:])
    a0, a1 = a.reshape(pairs).unbind(2)  # (B, L/2, …) each: even and odd positions
    b0, b1 = b.reshape(pairs).unbind(2)
    h_odd = pair_scan(a1 * a0, a1 * b0 + b1)  # h_1, h_3, …
    h_even = a0 * torch.cat([torch.zeros_like(h_odd[:, :1]), h_odd[:, :-1]], 1) + b0  # h_0 = b_0, h_2, …
    return torch.stack([h_even, h_odd], 2).reshape(b.shape)[:, :L]


def spectral_scan(
    x: Tensor, dts: Tensor, lam: Tensor, Bh: Tensor, Cw: Tensor, h0: Tensor | None, chunk_size: int | None
) -> tuple[Tensor, Tensor]:
    """The per-component selective recurrence, in parallel.

    x (B, L, E) real inputs; dts (B, L, S, E) real step sizes per scale; lam (n, E) complex eigenvalues;
    Bh (B, L, n) complex input vector F_S B; Cw (B, L, n) complex readout weights (conj(F_S C) times the mask);
    h0 (B, n, S, E) complex or None (zero) → ys (B, L, S, E) = Re Σ_j Cw_j ĥ_j per scale, final ĥ (B, n, S, E).
    chunk_size bounds the (B, chunk, n, S, E) tensors materialized at once (None: the whole sequence)."""
    L = x.shape[1]
    chunk = L if chunk_size is None else max(1, min(chunk_size, L))
    lam_re, lam_im = lam.real.unsqueeze(1), lam.imag.unsqueeze(1)  # (n, 1, E)
    ys, h = [], h0
    for s in range(0, L, chunk):  # a loop over chunks, not time steps
        d = dts[:, s : s + chunk].unsqueeze(2)  # (B, l, 1, S, E)
        mag, angle = torch.exp(d * lam_re), d * lam_im  # (B, l, n, S, E): real exp, cos and sin (vectorized;
        dA = torch.complex(mag * torch.cos(angle), mag * torch.sin(angle))  # complex exp is ~5× slower on CPU)
        u = d * x[:, s : s + chunk, None, None, :]  # (B, l, 1, S, E): Δ_s x
        dBx = u * Bh[:, s : s + chunk, :, None, None]  # (B, l, n, S, E)
        hs = pair_scan(dA, dBx, h)  # (B, l, n, S, E)
        ys.append(torch.einsum("blnse,bln->blse", hs, Cw[:, s : s + chunk]).real)
        h = hs[:, -1]
    return (torch.cat(ys, 1) if len(ys) > 1 else ys[0]), h
