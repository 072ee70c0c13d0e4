"""HiPPO matrices and their normal-plus-low-rank (NPLR) diagonalization, computed in float64.

HiPPO-LegS (Gu et al., 2020): A[n, k] = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 above;
B[n] = sqrt(2n+1). With P[n] = sqrt(n + 1/2), A + P Pᵀ = -½ I + S with S skew-symmetric, so
A = V Λ V* − P Pᵀ with V unitary and Λ = -½ + i·eig(S) (S4: "NPLR"). S4D-LegS keeps only Λ.
"""

from __future__ import annotations

import numpy as np
import torch


def legs(N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegS (A (N, N), B (N,)) in float64."""
    q = np.sqrt(2 * np.arange(N, dtype=np.float64) + 1)
    A = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(N, dtype=np.float64) + 1)
    return A, q.copy()


def legs_low_rank(N: int) -> np.ndarray:
    """P (N,) with A + P Pᵀ normal for HiPPO-LegS."""
    return np.sqrt(np.arange(N, dtype=np.float64) + 0.5)


def nplr_legs(N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Diagonalize HiPPO-LegS as A = V diag(Λ) V* − P Pᵀ, all float64/complex128.

    Returns Λ (N,), V (N, N) unitary, P (N,) real, B (N,) real, sorted by the imaginary part of Λ
    (conjugate pairs adjacent: for even N, Λ[N//2:] are the conjugates of Λ[:N//2] reversed).
    """
    A, B = legs(N)
    P = legs_low_rank(N)
    AP = A + np.outer(P, P)  # -½ I + S
    S = AP + 0.5 * np.eye(N)
    if not np.allclose(S, -S.T, atol=1e-9):
        raise AssertionError("HiPPO-LegS + P Pᵀ is not -½ I + skew-symmetric")
    w_im, V = np.linalg.eigh(-1j * S)  # S = V (i w) V*, Hermitian problem: stable
    Lam = -0.5 + 1j * w_im
    order = np.argsort(-w_im)  # positive imaginary first
    return Lam[order], V[:, order], P, B


def s4d_legs_init(N2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D-LegS: the N2 = N/2 eigenvalues of HiPPO-LegS's normal part with Im ≥ 0, and B projected
    onto their eigenvectors (B̃ = V* B). Returns complex128 tensors (N2,), (N2,)."""
    Lam, V, _, B = nplr_legs(2 * N2)
    Lam, V = Lam[:N2], V[:, :N2]
    return torch.from_numpy(Lam), torch.from_numpy(V.conj().T @ B)


def diagonalization_error(N: int) -> float:
    """max |V Λ V* − P Pᵀ − A| for HiPPO-LegS of size N (tested ≤ 1e-5)."""
    Lam, V, P, _ = nplr_legs(N)
    A, _ = legs(N)
    recon = (V * Lam) @ V.conj().T - np.outer(P, P)
    return float(np.abs(recon - A).max())
