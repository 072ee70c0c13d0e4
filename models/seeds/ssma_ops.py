"""SSMA's selection and quantization primitives (models/seeds/ssma.py): pure functions of tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def topk_mask(v: Tensor, k: int) -> Tensor:
    """True at the k largest entries of each row (last axis) of v; exact ties go to the lower index, so the choice
    does not depend on how topk orders equal values. v (..., n) → bool (..., n) with exactly k True per row."""
    kth = torch.topk(v, k, dim=-1).values[..., k - 1 : k]  # (..., 1): the k-th largest value (order-free)
    above = v > kth
    tied = (v == kth).to(v.dtype)
    room = k - above.to(v.dtype).sum(-1, keepdim=True)  # how many of the tied entries still fit (≥ 1)
    return above | ((tied > 0) & (torch.cumsum(tied, -1) <= room))


def ternary_quantize(w: Tensor, support: Tensor) -> Tensor:
    """TWN quantizer per block: w, support (nb, b, b), support 1 where an entry exists (not pruned) → Q(w) with
    Δ = 0.7·mean|w| over the support and α = mean|w| over the entries above Δ; values in {−α, 0, +α} per block."""
    a = w.abs() * support
    n = support.sum((-2, -1), keepdim=True).clamp_min(1.0)
    delta = 0.7 * a.sum((-2, -1), keepdim=True) / n  # (nb, 1, 1)
    big = (a > delta).to(w.dtype)
    alpha = (a * big).sum((-2, -1), keepdim=True) / big.sum((-2, -1), keepdim=True).clamp_min(1.0)
    return alpha * torch.sign(w) * big


def block_diagonal(blocks: Tensor) -> Tensor:
    """(nb, b, b) → the (nb·b, nb·b) block-diagonal matrix (plain broadcasting: traces to ONNX)."""
    nb, b, _ = blocks.shape
    eye = torch.eye(nb, dtype=blocks.dtype, device=blocks.device)
    return (eye[:, None, :, None] * blocks[:, :, None, :]).reshape(nb * b, nb * b)
