"""Linear recurrences h_t = a_t · h_{t-1} + b_t along the time axis, in parallel and sequentially.

`linear_scan` is the parallel (associative) scan used by S5, LRU and Mamba's selective scan: the
pairs (a, b) compose associatively, (a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂), so log₂(L) rounds of
vectorized doubling (Hillis–Steele) replace L Python-level steps. Works for real and complex
tensors; `a` broadcasts against `b`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, dim: int = 1) -> Tensor:
    """All states h_t for t = 0 … L−1 of h_t = a_t h_{t-1} + b_t with h_{-1} = h0 (zero if None).

    a, b: (…, L, …) with time on `dim`; a broadcastable to b. h0: b's shape without `dim`.
    Returns a tensor shaped like b. Cost O(L log L) elementwise work, depth O(log L).
    A time-invariant `a` (size 1 on `dim`, as in S5 and LRU) takes a cheaper path: in the round with
    shift s every combined coefficient is a^s, so `a` is never expanded over time.
    """
    if a.dim() == b.dim() and a.shape[dim] == 1 and b.shape[dim] > 1:
        return _scan_time_invariant(a, b, h0, dim)
    a = a.expand_as(b) if a.shape != b.shape else a
    if h0 is not None:
        # fold the initial state into the first input: h_0 = a_0 h0 + b_0
        first = b.narrow(dim, 0, 1) + a.narrow(dim, 0, 1) * h0.unsqueeze(dim)
        b = torch.cat([first, b.narrow(dim, 1, b.shape[dim] - 1)], dim)
    L = b.shape[dim]
    shift = 1
    while shift < L:
        # combine each position with the one `shift` earlier: (a', b') = (a·a_prev, a·b_prev + b)
        a_prev = a.narrow(dim, 0, L - shift)
        b_prev = b.narrow(dim, 0, L - shift)
        a_cur = a.narrow(dim, shift, L - shift)
        b_cur = b.narrow(dim, shift, L - shift)
        b = torch.cat([b.narrow(dim, 0, shift), a_cur * b_prev + b_cur], dim)
        a = torch.cat([a.narrow(dim, 0, shift), a_cur * a_prev], dim)
        shift *= 2
    return b


def _scan_time_invariant(a: Tensor, b: Tensor, h0: Tensor | None, dim: int) -> Tensor:
    if h0 is not None:
        first = b.narrow(dim, 0, 1) + a * h0.unsqueeze(dim)
        b = torch.cat([first, b.narrow(dim, 1, b.shape[dim] - 1)], dim)
    L = b.shape[dim]
    shift, a_pow = 1, a  # a_pow = a^shift
    while shift < L:
        b_prev = b.narrow(dim, 0, L - shift)
        b = torch.cat([b.narrow(dim, 0, shift), a_pow * b_prev + b.narrow(dim, shift, L - shift)], dim)
        a_pow = a_pow * a_pow
        shift *= 2
    return b


def linear_scan_ref(a: Tensor, b: Tensor, h0: Tensor | None = None, dim: int = 1) -> Tensor:
    """Sequential reference of linear_scan (one step per position)."""
    a = a.expand_as(b) if a.shape != b.shape else a
    h = torch.zeros_like(b.select(dim, 0)) if h0 is None else h0
    out = []
    for t in range(b.shape[dim]):
        h = a.select(dim, t) * h + b.select(dim, t)
        out.append(h)
    return torch.stack(out, dim)
