"""Complex arithmetic on (real, imag) pairs of real tensors.

Recurrent steps are exported to ONNX, which has no complex type, so every step does its complex
arithmetic with these helpers; states store complex numbers as real tensors of shape (..., 2).
"""

from __future__ import annotations

import torch
from torch import Tensor


def cmul(ar: Tensor, ai: Tensor, br: Tensor, bi: Tensor) -> tuple[Tensor, Tensor]:
    return ar * br - ai * bi, ar * bi + ai * br


def cdiv(ar: Tensor, ai: Tensor, br: Tensor, bi: Tensor) -> tuple[Tensor, Tensor]:
    den = br * br + bi * bi
    return (ar * br + ai * bi) / den, (ai * br - ar * bi) / den


def cexp(ar: Tensor, ai: Tensor) -> tuple[Tensor, Tensor]:
    mag = torch.exp(ar)
    return mag * torch.cos(ai), mag * torch.sin(ai)


def to_pair(z: Tensor) -> Tensor:
    """complex (...) → real (..., 2)."""
    return torch.view_as_real(z)


def from_pair(t: Tensor) -> Tensor:
    """real (..., 2) → complex (...)."""
    return torch.complex(t[..., 0], t[..., 1])


def split_pair(t: Tensor) -> tuple[Tensor, Tensor]:
    """real (..., 2) → (re, im)."""
    return t[..., 0], t[..., 1]


def stack_pair(re: Tensor, im: Tensor) -> Tensor:
    """(re, im) → real (..., 2)."""
    return torch.stack((re, im), dim=-1)
