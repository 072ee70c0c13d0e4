"""S4D against its explicit recurrence; the HiPPO measures (models.hippo) against their definitions; every init
method (models.layers.ssm_init) against its defining spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import laguerre, legendre

from models import S4DLayer, create_model
from models.hippo import MEASURES, diagonalization_error, hippo, legs, low_rank, nplr, nplr_legs
from models.layers.s4d import S4DConfig, S4DKernel
from models.layers.ssm_init import ALIASES, INIT_METHODS, REAL_PART_MAX, canonical_init


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", INIT_METHODS)
def test_kernel_equals_explicit_recurrence(init, disc):
    torch.manual_seed(0)
    k = S4DKernel(4, 8, init=init, disc=disc).double()
    L = 33
    u = torch.randn(2, L, 4, dtype=torch.float64)
    with torch.no_grad():
        y_conv, _ = k(u)
        # explicit complex recurrence x_t = Ā x_{t-1} + B̄ u_t, y_t = 2 Re(C x_t) + D u_t
        dA_re, dA_im, dB_re, dB_im = k.discretize()
        dA, dB = torch.complex(dA_re, dA_im), torch.complex(dB_re, dB_im)
        C = torch.complex(k.C[0, ..., 0], k.C[0, ..., 1])
        x = torch.zeros(2, 4, 4, dtype=torch.complex128)
        ys = []
        for t in range(L):
            x = dA * x + dB * u[:, t].unsqueeze(-1)
            ys.append(2 * (C * x).sum(-1).real + k.D * u[:, t])
    assert torch.allclose(y_conv, torch.stack(ys, 1), atol=1e-12, rtol=0)


def test_zoh_matches_matrix_exponential():
    torch.manual_seed(0)
    k = S4DKernel(2, 4, init="diag-inv", disc="zoh").double()
    dA_re, dA_im, _, _ = k.discretize()
    A = k.continuous_poles()
    dt = torch.exp(k.log_dt).unsqueeze(-1)
    assert torch.allclose(torch.complex(dA_re, dA_im), torch.exp(A * dt), atol=1e-14)


NORMAL_REAL_PART = {"legs": -0.5, "legt": 0.0, "lagt": -0.5, "fourier": 0.0}  # w of A + PᵀP = w·I + skew


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [8, 64, 256])
def test_hippo_diagonalization_error(N, measure):
    """A = V Λ V* − PᵀP to ≤ 1e-5, V unitary, A + PᵀP = w·I + skew-symmetric (rank 2 for LegT, 1 otherwise)."""
    assert diagonalization_error(N, measure) <= 1e-5
    Lam, V, P, _ = nplr(measure, N)
    assert P.shape == ((2 if measure == "legt" else 1), N)
    assert np.allclose(Lam.real, NORMAL_REAL_PART[measure], atol=1e-9)
    assert abs(V.conj().T @ V - np.eye(N)).max() < 1e-10
    A, _ = hippo(measure, N)
    S = A + P.T @ P - NORMAL_REAL_PART[measure] * np.eye(N)
    assert abs(S + S.T).max() < 1e-9
    assert (np.diff(Lam.imag) <= 0).all() and np.allclose(Lam[N // 2 :], Lam[: N // 2][::-1].conj())
    if measure == "legs":
        Lam_s, _, P_s, _ = nplr_legs(N)
        assert np.array_equal(Lam_s, Lam) and np.array_equal(P_s, P[0])


def test_hippo_matrices_are_the_papers():
    """Each matrix entry by entry from its formula (HiPPO, Gu et al. 2020; FouT, Gu et al. 2022), written out."""
    N = 6
    q = [math.sqrt(2 * n + 1) for n in range(N)]
    A, B = legs(N)
    for n in range(N):
        for k in range(N):
            assert A[n, k] == (-q[n] * q[k] if n > k else -(n + 1) if n == k else 0.0)
    assert np.allclose(B, q)
    # LegT in the paper's form: c' = −A c + B u, A_nk = (2n+1)·((−1)^{n−k} if k ≤ n else 1), B_n = (2n+1)(−1)^n;
    # ours is the same system in the basis scaled by √(2n+1): A_ours = D⁻¹(−A_paper)D, B_ours = D⁻¹B_paper
    A_paper = np.array([[(2 * n + 1) * ((-1.0) ** (n - k) if k <= n else 1.0) for k in range(N)] for n in range(N)])
    B_paper = np.array([(2 * n + 1) * (-1.0) ** n for n in range(N)])
    D = np.diag(q)
    A, B = hippo("legt", N)
    assert np.allclose(A, np.linalg.inv(D) @ -A_paper @ D) and np.allclose(B, np.linalg.inv(D) @ B_paper)
    A, B = hippo("lagt", N)
    assert all(A[n, k] == (-1.0 if n >= k else 0.0) for n in range(N) for k in range(N)) and (B == 1).all()
    assert np.allclose(np.linalg.eigvals(A), -1.0)  # the Laguerre measure decays as e^{−(t−s)}
    A, B = hippo("fourier", N)  # basis (cos 2πk·, sin 2πk·), k = 1 … 3: Ω − e eᵀ, B = e
    e = np.array([math.sqrt(2), 0, math.sqrt(2), 0, math.sqrt(2), 0])
    omega = np.zeros((N, N))
    for k in range(1, 4):
        omega[2 * k - 2, 2 * k - 1], omega[2 * k - 1, 2 * k - 2] = -2 * math.pi * k, 2 * math.pi * k
    assert np.allclose(A, omega - np.outer(e, e)) and np.allclose(B, e)
    Lam, _, _, _ = nplr("fourier", N)  # the normal part's spectrum: the window's frequencies ±2πk
    assert np.allclose(Lam, 1j * 2 * math.pi * np.array([3, 2, 1, -1, -2, -3]))
    assert np.array_equal(low_rank("fourier", N)[0], e) and np.allclose(low_rank("lagt", N), 0.5**0.5)


def _projection(measure: str, N: int, u, t: float) -> np.ndarray:
    """The measure's coefficients x(t) of the input u's history, by Gauss quadrature (exact for the inputs used)."""
    xg, wg = legendre.leggauss(60)
    P = [legendre.Legendre.basis(n) for n in range(N)]
    if measure == "legs":  # √(2n+1)/t ∫_0^t u(s) P_n(2s/t − 1) ds
        s = t * (xg + 1) / 2
        return np.array([math.sqrt(2 * n + 1) / 2 * np.sum(wg * u(s) * P[n](xg)) for n in range(N)])
    if measure == "legt":  # √(2n+1) ∫_{t−1}^t u(s) P_n(2(t−s) − 1) ds
        s = t - 1 + (xg + 1) / 2
        return np.array([math.sqrt(2 * n + 1) / 2 * np.sum(wg * u(s) * P[n](2 * (t - s) - 1)) for n in range(N)])
    if measure == "lagt":  # ∫_{−∞}^t u(s) e^{−(t−s)} L_n(t−s) ds
        xl, wl = laguerre.laggauss(60)
        return np.array([np.sum(wl * u(t - xl) * laguerre.Laguerre.basis(n)(xl)) for n in range(N)])
    s = t - 1 + (xg + 1) / 2  # fourier: ∫_{t−1}^t u(s) (√2 cos 2πk(t−s), √2 sin 2πk(t−s)) ds
    out = []
    for k in range(1, N // 2 + 1):
        out += [np.sum(wg * u(s) * math.sqrt(2) * np.cos(2 * math.pi * k * (t - s))) / 2,
                np.sum(wg * u(s) * math.sqrt(2) * np.sin(2 * math.pi * k * (t - s))) / 2]
    return np.array(out)


@pytest.mark.parametrize("measure", MEASURES)
def test_hippo_state_is_the_projection_of_the_history(measure):
    """The defining property: for an input the basis represents exactly (a polynomial of degree < N; for Fourier a
    trigonometric polynomial of the window's frequencies) the measure's coefficients of the history solve
    x' = A x + B u (LegS: x' = (A x + B u)/t) — checked by a central difference at two times."""
    N = 6
    rng = np.random.default_rng(0)
    if measure == "fourier":
        a, b = rng.standard_normal(N // 2), rng.standard_normal(N // 2)

        def u(s):
            return sum(a[k] * np.cos(2 * math.pi * (k + 1) * s) + b[k] * np.sin(2 * math.pi * (k + 1) * s)
                       for k in range(N // 2))
    else:
        coef = rng.standard_normal(N)

        def u(s):
            return np.polyval(coef, s)
    A, B = hippo(measure, N)
    h = 1e-5
    for t in (0.4, 1.3):
        x = _projection(measure, N, u, t)
        dx = (_projection(measure, N, u, t + h) - _projection(measure, N, u, t - h)) / (2 * h)
        rhs = A @ x + B * u(t)
        if measure == "legs":
            rhs = rhs / t
        assert np.abs(dx - rhs).max() <= 1e-6 * max(1.0, np.abs(rhs).max())


@pytest.mark.parametrize("init", INIT_METHODS)
def test_every_init_has_its_defining_spectrum(init):
    """S4D's A at init: S4D-Lin λ_n = −½ + iπn, S4D-Inv λ_n = −½ + i(N/π)(N/(2n+1) − 1), S4D-Real −(n+1), random
    −½ + i·U[0, πN/2) per channel, and the HiPPO measures' normal-part eigenvalues (Re 0 clamped to −1e-4) with
    B̃ = V_h*B; B = 1 otherwise."""
    torch.manual_seed(0)
    N, N2, H = 8, 4, 16
    k = S4DKernel(H, N, init=init)
    lam = k.continuous_poles().detach().to(torch.complex128)  # (H, N2)
    b = torch.view_as_complex(k.B.detach().double().contiguous())
    n = torch.arange(N2, dtype=torch.float64)
    half = torch.full((N2,), -0.5, dtype=torch.float64)
    expected = {
        "diag-lin": torch.complex(half, math.pi * n),
        "diag-inv": torch.complex(half, N / math.pi * (N / (2 * n + 1) - 1)),
        "real": torch.complex(-(n + 1), torch.zeros(N2, dtype=torch.float64)),
    }
    if init in MEASURES:
        Lam, V, _, B = nplr(init, N)
        Lam = Lam[:N2]
        expected[init] = torch.from_numpy(np.minimum(Lam.real, REAL_PART_MAX) + 1j * Lam.imag)
        assert torch.allclose(b, torch.from_numpy(V[:, :N2].conj().T @ B).expand(H, N2), atol=1e-6)
    else:
        assert torch.equal(b, torch.ones(H, N2, dtype=torch.complex128))
    if init == "random":
        assert torch.allclose(lam.real, half.expand(H, N2), atol=1e-6)
        assert (lam.imag >= 0).all() and (lam.imag < math.pi * N2).all() and lam.imag.std(0).min() > 0
    else:
        assert torch.allclose(lam, expected[init].expand(H, N2), atol=1e-5)
    assert (lam.real < 0).all()


def test_init_names_and_the_seeds_aliases():
    assert {a: canonical_init(a) for a in ("lin", "inv", "legendre", "hippo", "fout", "LegS", "real")} == {
        "lin": "diag-lin", "inv": "diag-inv", "legendre": "legs", "hippo": "legs", "fout": "fourier",
        "LegS": "legs", "real": "real"}
    assert all(canonical_init(alias) in INIT_METHODS for alias in ALIASES)
    assert S4DConfig(init="inv").init == "diag-inv"  # stored under our name: bundles rebuild the same init
    assert S4DLayer(d_model=4, d_state=4, init_method="lin").kernel.A_imag[0, 1].item() == pytest.approx(math.pi)
    with pytest.raises(ValueError, match="init must be one of"):
        canonical_init("chebyshev")


def test_seed_style_entry_point():
    m = create_model(architecture="ssm", ssm_layer="s4d", d_model=16, d_state=8, num_layers=3)
    assert m.name == "s4d" and m.config.n_layers == 3 and m.config.d_state == 8
