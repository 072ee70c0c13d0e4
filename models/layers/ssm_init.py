"""Initializations of the state matrix A of every SSM core (S4, S4D, S5, Mamba's selective SSM): one name per
method, the seed's names as aliases. The LRU has no continuous-time A (its λ is drawn on a ring) and takes none.

    legs, legt, lagt, fourier   the HiPPO measures (models.hippo). S4 keeps their DPLR form A = Λ − Σ_r p_r p_r*
                                exactly (in the eigenbasis V of the normal part: p = V*P, B̃ = V*B); the diagonal
                                cores keep the normal part's eigenvalues Λ and B̃ (S4D-LegS and its kin), S5 also V.
    diag-lin                    S4D-Lin  λ_n = −½ + iπn                          (Gu et al., "On the Parameterization
    diag-inv                    S4D-Inv  λ_n = −½ + i (N/π)(N/(2n+1) − 1)         and Initialization of Diagonal State
                                                                                   Space Models", 2022; N = 2·N2)
    real                        S4D-Real λ_n = −(n+1)
    random                      λ_n = −½ + i·θ_n, θ_n uniform in [0, π·N2) (S4D-Lin's band, frequencies drawn)

n = 0 … N2−1 over the N2 modes a core keeps (the half with Im λ ≥ 0 of a conjugate-symmetric spectrum of N = 2·N2;
Mamba's real init keeps all N modes real). B̃ = 1 for the non-HiPPO methods. Where Re λ = 0 (the normal parts of
LegT and Fourier are skew-symmetric) the real part is clamped to REAL_PART_MAX = −1e-4, as the S4 reference does
("some of the HiPPO methods have real part 0"): the cores parameterize Re λ = −exp(·) < 0 (|Ā| < 1).

The S4 DPLR form of a non-HiPPO method: Λ as above, one low-rank vector p drawn complex normal with E‖p‖² = 1 (a
unit-size rank-1 term; −p p* only adds damping, so A stays stable), B̃ = 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from models.hippo import MEASURES, nplr

INIT_METHODS = ("legs", "legt", "lagt", "fourier", "diag-lin", "diag-inv", "real", "random")
ALIASES = {  # the seed's and the papers' names → ours
    "lin": "diag-lin", "linear": "diag-lin", "s4d-lin": "diag-lin",
    "inv": "diag-inv", "inverse": "diag-inv", "s4d-inv": "diag-inv",
    "legendre": "legs", "hippo": "legs", "s4d-legs": "legs", "fout": "fourier", "laguerre": "lagt",
    "s4d-real": "real", "rand": "random",
}
REAL_PART_MAX = -1e-4


def canonical_init(name: str) -> str:
    """Our name of an init method (aliases resolved, case-insensitive); ValueError listing the valid names."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS} (or an alias: {sorted(ALIASES)}), got {name!r}")
    return key


def _clamp_real(lam: np.ndarray) -> np.ndarray:
    return np.minimum(lam.real, REAL_PART_MAX) + 1j * lam.imag


def hippo_modes(measure: str, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Im ≥ 0 half of a HiPPO measure's NPLR form of size N (even): Λ (N/2,) with Re clamped, V_h (N, N/2),
    q = V_h* Pᵀ (r, N/2), B̃ = V_h* B (N/2,). complex128."""
    Lam, V, P, B = nplr(measure, N)
    Vh = V[:, : N // 2]
    return _clamp_real(Lam[: N // 2]), Vh, (Vh.conj().T @ P.T).T, Vh.conj().T @ B


def diagonal_spectrum(method: str, N2: int) -> Tensor:
    """λ (N2,) complex128 of a non-HiPPO method (diag-lin, diag-inv, real, random); random draws from torch.rand."""
    n = torch.arange(N2, dtype=torch.float64)
    half = torch.full((N2,), -0.5, dtype=torch.float64)
    if method == "diag-lin":
        return torch.complex(half, math.pi * n)
    if method == "diag-inv":
        N = 2 * N2
        return torch.complex(half, N / math.pi * (N / (2 * n + 1) - 1))
    if method == "real":
        return torch.complex(-(n + 1), torch.zeros(N2, dtype=torch.float64))
    if method == "random":
        return torch.complex(half, math.pi * N2 * torch.rand(N2, dtype=torch.float64))
    raise ValueError(f"{method!r} is not a diagonal init method")


def diagonal_init(method: str, H: int, N2: int) -> tuple[Tensor, Tensor]:
    """Λ (H, N2) and B̃ (H, N2) complex128 for a diagonal core of H channels with N2 modes each: the HiPPO measures'
    normal-part eigenvalues and projected B, or a diagonal method with B̃ = 1 (random: drawn per channel)."""
    method = canonical_init(method)
    if method in MEASURES:
        lam, _, _, b = hippo_modes(method, 2 * N2)
        return torch.from_numpy(lam).expand(H, N2).clone(), torch.from_numpy(b).expand(H, N2).clone()
    lam = torch.stack([diagonal_spectrum(method, N2) for _ in range(H)]) if method == "random" else \
        diagonal_spectrum(method, N2).expand(H, N2).clone()
    return lam, torch.ones(H, N2, dtype=torch.complex128)


def dplr_init(method: str, H: int, N2: int) -> tuple[Tensor, Tensor, Tensor]:
    """S4's DPLR init for H channels with N2 modes: Λ (H, N2), q (r, H, N2), B̃ (H, N2), complex128, such that the
    full conjugate-symmetric A = diag(Λ, Λ̄) − Σ_r p_r p_r*, p_r = [q_r, q̄_r] (HiPPO: exactly V*AV)."""
    method = canonical_init(method)
    if method in MEASURES:
        lam, _, q, b = hippo_modes(method, 2 * N2)
        lam, q, b = (torch.from_numpy(a) for a in (lam, q, b))
        return lam.expand(H, N2).clone(), q.unsqueeze(1).expand(-1, H, N2).clone(), b.expand(H, N2).clone()
    lam, b = diagonal_init(method, H, N2)
    q = torch.complex(torch.randn(1, H, N2, dtype=torch.float64), torch.randn(1, H, N2, dtype=torch.float64))
    return lam, q / math.sqrt(4 * N2), b  # E‖p‖² = 2·N2·E|q|² = 1 over the full state


def pairing_basis(N: int) -> np.ndarray:
    """V (N, N/2) with orthonormal columns V[2n, n] = 1/√2, V[2n+1, n] = i/√2: each complex mode is the pair of
    real coordinates (2n, 2n+1). The basis S5 projects B and C with for a non-HiPPO init."""
    V = np.zeros((N, N // 2), dtype=np.complex128)
    n = np.arange(N // 2)
    V[2 * n, n] = 2**-0.5
    V[2 * n + 1, n] = 1j * 2**-0.5
    return V


def s5_init(method: str, d_state: int, blocks: int = 1) -> tuple[Tensor, Tensor]:
    """S5's Λ (P,) and V (d_state, P) complex128, P = d_state/2, `blocks` copies of size n = d_state/blocks on the
    block diagonal: HiPPO measures give the Im ≥ 0 half of their normal part's eigenpairs (2·Re(V Λ V*) is the
    block-diagonal normal part); the other methods their spectrum with the pairing basis. V has orthonormal columns."""
    method = canonical_init(method)
    n = d_state // blocks
    if method in MEASURES:
        lam, V, _, _ = hippo_modes(method, n)
        lam = np.tile(lam, blocks)
    else:
        lam = torch.cat([diagonal_spectrum(method, n // 2) for _ in range(blocks)]).numpy()
        V = pairing_basis(n)
    return torch.from_numpy(lam), torch.from_numpy(np.kron(np.eye(blocks), V))
