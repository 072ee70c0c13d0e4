"""HiPPO matrices and their normal-plus-low-rank (NPLR) diagonalization, computed in float64.

A HiPPO measure defines a state matrix A and input vector B (convention x' = A x + B u) whose state x(t) is the
projection of the input's history onto an orthogonal basis (Gu, Dao, Ermon, Rudra, Ré, "HiPPO: Recurrent Memory with
Optimal Polynomial Projections", 2020; Fourier: Gu, Johnson, Timalsina, Rudra, Ré, "How to Train Your HiPPO", 2022).
For an input the basis represents exactly (a polynomial of degree < N; for Fourier a trigonometric polynomial of
the window's frequencies) the ODE reproduces those coefficients exactly (tests/models/test_s4d.py checks each):

    legs     x_n(t) = √(2n+1)/t ∫_0^t u(s) P_n(2s/t − 1) ds          (scaled Legendre, x' = (A x + B u)/t)
             A[n, k] = −√(2n+1)√(2k+1) (n > k), −(n+1) (n = k), 0 (n < k);  B[n] = √(2n+1)
    legt     x_n(t) = √(2n+1) ∫_{t−1}^t u(s) P_n(2(t−s) − 1) ds       (translated Legendre, window 1)
             A[n, k] = −√(2n+1)√(2k+1)·((−1)^{n−k} if k ≤ n else 1);  B[n] = √(2n+1)(−1)^n
             (the paper's A_nk = (2n+1)(−1)^{n−k} | (2n+1), B_n = (2n+1)(−1)^n, in the basis scaled by √(2n+1))
    lagt     x_n(t) = ∫_{−∞}^t u(s) e^{−(t−s)} L_n(t−s) ds           (translated Laguerre)
             A[n, k] = −1 (n ≥ k), 0 (n < k);  B[n] = 1
    fourier  x(t) = ∫_{t−1}^t u(s) g(t−s) ds, g = (√2 cos 2πks, √2 sin 2πks) for k = 1 … N/2   (translated Fourier)
             A = Ω − e eᵀ, B = e: Ω skew-symmetric with the blocks [[0, −2πk], [2πk, 0]], e = (√2, 0, √2, 0, …)
             the basis at the window's ends (u(t−1) ≈ eᵀx). The constant basis function is left out: its real
             eigenvalue has no conjugate partner, and the zoo's complex SSMs keep half of a conjugate-pair spectrum.

None of the four is normal, so none is diagonalized directly (the eigenvectors of LegS are exponentially
ill-conditioned). Each is normal plus low rank: with P (r, N) real, A + Σ_r P_r P_rᵀ = w·I + S with S
skew-symmetric, hence A = V Λ V* − PᵀP with V unitary and Λ = w + i·eig(−iS) (S4's "NPLR"):

    legs     r = 1, P = √(n + ½),                       w = −½
    legt     r = 2, P = √(2n+1)·[n even], √(2n+1)·[n odd], w = 0
    lagt     r = 1, P = 1/√2,                          w = −½
    fourier  r = 1, P = e,                             w = 0      (Λ = ±2πik, the window's frequencies)

S4 (DPLR) keeps the low-rank term; the diagonal SSMs (S4D, S5, Mamba) keep Λ only (S4D-LegS and its kin). For
legt and fourier Re Λ = 0: those SSMs clamp the real part to ≤ −1e-4 (models.layers.ssm_init).
"""

from __future__ import annotations

import numpy as np
import torch

MEASURES = ("legs", "legt", "lagt", "fourier")


def legs(N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegS (A (N, N), B (N,)) in float64."""
    q = np.sqrt(2 * np.arange(N, dtype=np.float64) + 1)
    A = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(N, dtype=np.float64) + 1)
    return A, q.copy()


def legt(N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegT, window 1, in the basis scaled by √(2n+1): (A (N, N), B (N,)) float64."""
    n = np.arange(N)
    q = np.sqrt(2 * n + 1.0)
    sign = np.where(n[None, :] <= n[:, None], (-1.0) ** (n[:, None] - n[None, :]), 1.0)  # (−1)^{n−k} for k ≤ n
    return -np.outer(q, q) * sign, q * (-1.0) ** n


def lagt(N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LagT: (A (N, N), B (N,)) float64."""
    return -np.tril(np.ones((N, N))), np.ones(N)


def fourier(N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-FouT, window 1, N even: basis (cos, sin) pairs of frequencies 2πk, k = 1 … N/2. (A, B) float64."""
    if N % 2:
        raise ValueError(f"the Fourier measure needs an even N (cos/sin pairs), got {N}")
    omega = np.zeros((N, N))
    k = np.arange(1, N // 2 + 1)
    omega[2 * k - 2, 2 * k - 1] = -2 * np.pi * k  # cos_k' = −2πk sin_k
    omega[2 * k - 1, 2 * k - 2] = 2 * np.pi * k  # sin_k' = 2πk cos_k
    e = np.zeros(N)
    e[0::2] = np.sqrt(2)
    return omega - np.outer(e, e), e


def hippo(measure: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of a HiPPO measure (one of MEASURES), float64."""
    makers = {"legs": legs, "legt": legt, "lagt": lagt, "fourier": fourier}
    if measure not in makers:
        raise ValueError(f"unknown HiPPO measure {measure!r}; choose from {MEASURES}")
    return makers[measure](N)


def low_rank(measure: str, N: int) -> np.ndarray:
    """P (r, N) with A + PᵀP = w·I + skew-symmetric for the measure's A."""
    n = np.arange(N, dtype=np.float64)
    if measure == "legs":
        return np.sqrt(n + 0.5)[None]
    if measure == "legt":
        q = np.sqrt(2 * n + 1)
        return np.stack([q * (n % 2 == 0), q * (n % 2 == 1)])
    if measure == "lagt":
        return np.full((1, N), 0.5**0.5)
    if measure == "fourier":
        return fourier(N)[1][None].copy()
    raise ValueError(f"unknown HiPPO measure {measure!r}; choose from {MEASURES}")


def legs_low_rank(N: int) -> np.ndarray:
    """P (N,) with A + P Pᵀ normal for HiPPO-LegS."""
    return low_rank("legs", N)[0]


def nplr(measure: str, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Diagonalize a HiPPO matrix as A = V diag(Λ) V* − PᵀP, all float64/complex128.

    Returns Λ (N,), V (N, N) unitary, P (r, N) real, B (N,) real, sorted by the imaginary part of Λ, positive first
    (for even N, Λ[N//2:] are the conjugates of Λ[:N//2], reversed). N must be even (conjugate pairs)."""
    if N < 2 or N % 2:
        raise ValueError(f"the NPLR form needs an even N ≥ 2 (conjugate pairs), got {N}")
    A, B = hippo(measure, N)
    P = low_rank(measure, N)
    AP = A + P.T @ P  # w·I + S
    w = float(np.mean(np.diag(AP)))
    S = AP - w * np.eye(N)
    if not np.allclose(S, -S.T, atol=1e-9):
        raise AssertionError(f"HiPPO-{measure} + PᵀP is not a multiple of I plus a skew-symmetric matrix")
    w_im, V = np.linalg.eigh(-1j * S)  # S = V (i w_im) V*, a Hermitian problem: stable
    order = np.argsort(-w_im)  # positive imaginary parts first
    return (w + 1j * w_im)[order], V[:, order], P, B


def nplr_legs(N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`nplr("legs", N)` with P as a vector (N,): A = V Λ V* − P Pᵀ."""
    Lam, V, P, B = nplr("legs", N)
    return Lam, V, P[0], B


def s4d_legs_init(N2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D-LegS: the N2 = N/2 eigenvalues of HiPPO-LegS's normal part with Im ≥ 0, and B projected
    onto their eigenvectors (B̃ = V* B). Returns complex128 tensors (N2,), (N2,)."""
    Lam, V, _, B = nplr("legs", 2 * N2)
    Lam, V = Lam[:N2], V[:, :N2]
    return torch.from_numpy(Lam), torch.from_numpy(V.conj().T @ B)


def diagonalization_error(N: int, measure: str = "legs") -> float:
    """max |V Λ V* − PᵀP − A| for the HiPPO measure of size N (tested ≤ 1e-5)."""
    Lam, V, P, _ = nplr(measure, N)
    A, _ = hippo(measure, N)
    recon = (V * Lam) @ V.conj().T - P.T @ P
    return float(np.abs(recon - A).max())
