"""S4 (DPLR) against explicit dense N × N recurrences, in float64; rank 1 (HiPPO-LegS) and rank 2 (HiPPO-LegT)."""

from __future__ import annotations

import pytest
import torch

from models import create_model
from models.hippo import MEASURES, hippo, legs, nplr, nplr_legs
from models.layers.s4 import S4Kernel, s4_legs_init, small_inverse
from models.layers.ssm_init import INIT_METHODS, REAL_PART_MAX, diagonal_spectrum, dplr_init
from models.layers.ssm_options import SSMOptions


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def perturbed_kernel(H: int = 3, d_state: int = 8, seed: int = 0, n_directions: int = 1,
                     init: str = "legs") -> S4Kernel:
    """A float64 kernel whose parameters have left their HiPPO init (as after training)."""
    torch.manual_seed(seed)
    k = S4Kernel(H, d_state, SSMOptions(dt_min=1e-2, dt_max=3e-1), n_directions=n_directions, init=init).double()
    with torch.no_grad():
        for p in (k.log_A_real, k.A_imag, k.P, k.B):
            p.add_(0.3 * torch.randn_like(p))
    return k


def legs_kernel(H: int, d_state: int, seed: int = 0) -> S4Kernel:
    """A float64 kernel at its HiPPO-LegS init, without the float32 rounding of the stored init."""
    torch.manual_seed(seed)
    k = S4Kernel(H, d_state).double()
    lam, q, b = s4_legs_init(d_state // 2)
    with torch.no_grad():
        k.log_A_real.copy_(torch.log(-lam.real).expand_as(k.log_A_real))
        k.A_imag.copy_(lam.imag.expand_as(k.A_imag))
        k.P.copy_(torch.view_as_real(q).expand_as(k.P))
        k.B.copy_(torch.view_as_real(b).expand_as(k.B))
    return k


def dense_recurrence(k: S4Kernel, u: torch.Tensor, x0: torch.Tensor | None = None):
    """The full-N complex system built explicitly: A = diag(Λ, Λ̄) − p p*, dense bilinear Ā, B̄;
    x_t = Ā x_{t-1} + B̄ u_t, y_t = C x_t + D u_t (C x_t real). x0 (B, H, N) full. Returns y, x_{L-1}."""
    dt, lam, p, b, c = k.ssm()
    N = lam.shape[-1]
    A = torch.diag_embed(lam) - torch.einsum("rhn,rhm->hnm", p, p.conj())  # Λ − Σ_r p_r p_r*
    eye = torch.eye(N, dtype=A.dtype)
    inv = torch.linalg.inv(eye - dt.view(-1, 1, 1) / 2 * A)
    dA = inv @ (eye + dt.view(-1, 1, 1) / 2 * A)
    dB = (inv @ (dt.unsqueeze(-1) * b).unsqueeze(-1)).squeeze(-1)  # (H, N)
    Bt, L, H = u.shape
    x = torch.zeros(Bt, H, N, dtype=A.dtype) if x0 is None else x0
    ys = []
    for t in range(L):
        x = torch.einsum("hnm,bhm->bhn", dA, x) + dB * u[:, t].unsqueeze(-1)
        yc = (c[0] * x).sum(-1)
        assert yc.imag.abs().max() <= 1e-10 * max(yc.abs().max().item(), 1.0)  # the system is real
        ys.append(yc.real + k.D * u[:, t])
    return torch.stack(ys, 1), x


def half_to_full(s: torch.Tensor) -> torch.Tensor:
    z = torch.complex(s[..., 0], s[..., 1])
    return torch.cat([z, z.conj()], -1)


def test_init_is_hippo_legs_in_the_nplr_basis():
    N = 8
    k = legs_kernel(2, N)
    _, V, _, _ = nplr_legs(N)
    Vf = torch.from_numpy(V[:, : N // 2])
    Vf = torch.cat([Vf, Vf.conj()], -1)  # V' = [V_h, V̄_h], unitary
    _, lam, p, b, _ = k.ssm()
    A = torch.diag_embed(lam[0]) - torch.outer(p[0, 0], p[0, 0].conj())
    A_legs, B_legs = legs(N)
    assert (Vf @ A @ Vf.conj().T - torch.from_numpy(A_legs)).abs().max() < 1e-12
    assert (Vf @ b[0] - torch.from_numpy(B_legs)).abs().max() < 1e-12
    assert torch.allclose(k.continuous_poles()[0].real.sort().values,
                          torch.linalg.eigvals(torch.from_numpy(A_legs)).real.sort().values, atol=1e-8)


@pytest.mark.parametrize("L", [1, 2, 7, 8, 33, 64])
def test_forward_equals_real_legs_recurrence_at_init(L):
    """At init the layer IS HiPPO-LegS: same outputs and states as the real N × N system
    x' = Ā_LegS x + B̄_LegS u, y = C_real x with C_real = C V'*, x_real = V' x."""
    N, H = 8, 3
    k = legs_kernel(H, N, seed=1)
    _, V, _, _ = nplr_legs(N)
    Vf = torch.from_numpy(V[:, : N // 2])
    Vf = torch.cat([Vf, Vf.conj()], -1)
    A_legs, B_legs = (torch.from_numpy(a) for a in legs(N))
    _, _, _, _, c = k.ssm()
    C_real = (c[0] @ Vf.conj().T).real  # (H, N)
    dt = torch.exp(k.log_dt).view(-1, 1, 1)
    eye = torch.eye(N, dtype=torch.float64)
    inv = torch.linalg.inv(eye - dt / 2 * A_legs)
    dA, dB = inv @ (eye + dt / 2 * A_legs), (inv @ B_legs) * dt.squeeze(-1)  # (H, N, N), (H, N)
    u = torch.randn(2, L, H, dtype=torch.float64)
    s0 = torch.randn(2, H, N // 2, 2, dtype=torch.float64)
    x = (half_to_full(s0) @ Vf.T).real  # V' x̃ per (b, h)
    ys = []
    for t in range(L):
        x = torch.einsum("hnm,bhm->bhn", dA, x) + dB * u[:, t].unsqueeze(-1)
        ys.append((C_real * x).sum(-1) + k.D * u[:, t])
    with torch.no_grad():
        y, sL = k(u, s0, return_state=True)
    assert rel(y, torch.stack(ys, 1)) <= 1e-10
    assert rel((half_to_full(sL) @ Vf.T).real, x) <= 1e-10


@pytest.mark.parametrize("init", ["legs", "legt"], ids=["rank1", "rank2"])
@pytest.mark.parametrize("L", [1, 2, 7, 8, 64, 257])
def test_kernel_equals_dense_recurrence(L, init):
    k = perturbed_kernel(init=init)
    u = torch.randn(2, L, 3, dtype=torch.float64)
    s0 = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        y_ref, x_ref = dense_recurrence(k, u)
        y, s = k(u, return_state=True)
        assert rel(y, y_ref) <= 1e-10
        assert rel(s, torch.view_as_real(x_ref[..., :4])) <= 1e-10
        assert rel(half_to_full(s), x_ref) <= 1e-10  # the dense state is conjugate-symmetric
        y_ref, x_ref = dense_recurrence(k, u, half_to_full(s0))
        y, s = k(u, s0, return_state=True)
        assert rel(y, y_ref) <= 1e-10
        assert rel(s, torch.view_as_real(x_ref[..., :4])) <= 1e-10
        assert rel(k(u)[0], dense_recurrence(k, u)[0]) <= 1e-10


@pytest.mark.parametrize("init", ["legs", "legt"], ids=["rank1", "rank2"])
@pytest.mark.parametrize("L", [1, 16, 100])
def test_step_equals_dense_recurrence(L, init):
    """The O(N) real-arithmetic Woodbury step on the half state is the full-N update restricted to the half."""
    k = perturbed_kernel(seed=3, init=init)
    u = torch.randn(2, L, 3, dtype=torch.float64)
    s0 = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        y_ref, x_ref = dense_recurrence(k, u, half_to_full(s0))
        s, ys = s0, []
        for t in range(L):
            y_t, s = k.step(u[:, t], s)
            ys.append(y_t)
    assert rel(torch.stack(ys, 1), y_ref) <= 1e-10
    assert rel(s, torch.view_as_real(x_ref[..., :4])) <= 1e-10


@pytest.mark.parametrize("init", ["legs", "legt"], ids=["rank1", "rank2"])
def test_parameter_gradients_equal_dense_recurrence(init):
    k = perturbed_kernel(seed=5, init=init)
    u = torch.randn(2, 20, 3, dtype=torch.float64)
    s0 = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    w = torch.randn(2, 20, 3, dtype=torch.float64)

    def grads(fn):
        k.zero_grad()
        y, x = fn()
        ((y * w).sum() + x.abs().square().sum()).backward()
        return [p.grad.clone() for p in k.parameters()]

    g_kernel = grads(lambda: (lambda y, s: (y, half_to_full(s)))(*k(u, s0, return_state=True)))
    g_dense = grads(lambda: dense_recurrence(k, u, half_to_full(s0)))
    for a, b in zip(g_kernel, g_dense):
        assert rel(a, b) <= 1e-9


@pytest.mark.parametrize("init", ["legs", "legt"], ids=["rank1", "rank2"])
def test_poles_are_stable_for_any_low_rank_term(init):
    k = perturbed_kernel(seed=7, init=init)
    with torch.no_grad():
        k.P.mul_(10.0)  # a large P: −p p* only pushes eigenvalues further left
    cont, disc = k.continuous_poles(), k.discrete_poles()
    assert cont.shape == disc.shape == (3, 8)
    assert (cont.real < 0).all() and (disc.abs() < 1).all()
    half_dt = (torch.exp(k.log_dt) / 2).unsqueeze(-1)
    bilinear = (1 + half_dt * cont) / (1 - half_dt * cont)
    for h in range(3):  # Ā's eigenvalues are the bilinear images of A's
        assert (disc[h].unsqueeze(-1) - bilinear[h].unsqueeze(0)).abs().min(-1).values.max() < 1e-8


@pytest.mark.parametrize("init", ["legs", "legt"], ids=["rank1", "rank2"])
def test_step_has_no_complex_tensors(init):
    k = perturbed_kernel(init=init)
    s = torch.randn(2, 3, 4, 2, dtype=torch.float64)
    y, s2 = k.step(torch.randn(2, 3, dtype=torch.float64), s)
    assert not y.is_complex() and not s2.is_complex()
    assert all(not c.is_complex() for c in k.step_coefficients())


def test_seed_style_entry_point():
    m = create_model(architecture="ssm", ssm_layer="s4", d_model=16, d_state=8, num_layers=3)
    assert m.name == "s4" and m.config.n_layers == 3 and m.config.d_state == 8
    assert type(m.layers[0]).__name__ == "S4Layer"


@pytest.mark.parametrize("measure", MEASURES)
def test_hippo_init_is_the_measure_in_its_nplr_basis(measure):
    """What the kernel is initialized with, A = diag(Λ, Λ̄) − Σ_r p_r p_r* and B, is the HiPPO matrix in the eigenbasis
    V' = [V_h, V̄_h] of its normal part: V' A V'* = A_HiPPO, V' B = B_HiPPO; exactly for LegS and LagT (Re Λ = −½),
    and for LegT and Fourier (Re Λ = 0) up to the clamp to −1e-4: A_HiPPO − 1e-4·I. LegT has rank 2, the others 1."""
    N = 8
    lam, q, b = dplr_init(measure, 1, N // 2)  # (1, N2), (r, 1, N2), (1, N2) complex128
    _, V, _, _ = nplr(measure, N)
    Vh = torch.from_numpy(V[:, : N // 2])
    Vf = torch.cat([Vh, Vh.conj()], -1)
    p = torch.cat([q[:, 0], q[:, 0].conj()], -1)  # (r, N)
    A_used = torch.diag_embed(torch.cat([lam[0], lam[0].conj()])) - torch.einsum("rn,rm->nm", p, p.conj())
    A_h, B_h = (torch.from_numpy(a) for a in hippo(measure, N))
    shift = 0.0 if measure in ("legs", "lagt") else -REAL_PART_MAX
    assert q.shape[0] == (2 if measure == "legt" else 1)
    assert (Vf @ A_used @ Vf.conj().T - (A_h - shift * torch.eye(N))).abs().max() <= 1e-10
    assert (Vf @ torch.cat([b[0], b[0].conj()]) - B_h).abs().max() <= 1e-10
    k = S4Kernel(3, N, init=measure)  # and the kernel stores exactly these (float32 rounding aside)
    assert k.rank == q.shape[0]
    assert torch.allclose(torch.complex(-torch.exp(k.log_A_real), k.A_imag).cdouble(), lam.expand(3, -1), atol=1e-5)
    assert torch.allclose(torch.view_as_complex(k.low_rank().double().contiguous()), q.expand(-1, 3, -1), atol=1e-6)
    assert torch.allclose(torch.view_as_complex(k.B.double().contiguous()), b.expand(3, -1), atol=1e-6)
    assert (k.continuous_poles().real < 0).all()


@pytest.mark.parametrize("init", ["diag-lin", "diag-inv", "real", "random"])
def test_diagonal_inits_give_lambda_their_spectrum(init):
    """A non-HiPPO init: Λ is the method's spectrum, one random low-rank vector of total norm ≈ 1, B = 1."""
    torch.manual_seed(0)
    k = S4Kernel(64, 8, init=init)
    lam = torch.complex(-torch.exp(k.log_A_real.double()), k.A_imag.double())  # (H, N2)
    if init == "random":
        assert torch.allclose(lam.real, torch.full_like(lam.real, -0.5), atol=1e-6)
        assert (lam.imag >= 0).all() and (lam.imag < torch.pi * 4).all()  # S4D-Lin's band [0, π·N2)
        assert lam.imag.std(0).min() > 0  # drawn per channel
    else:
        assert torch.allclose(lam, diagonal_spectrum(init, 4).expand_as(lam), atol=1e-5)
    assert k.rank == 1
    assert 0.5 < (2 * k.low_rank()[0].double().square().sum((-2, -1))).mean() < 1.5  # E‖p‖² = 1 over the full state
    assert torch.equal(k.B[..., 0], torch.ones(64, 4)) and torch.equal(k.B[..., 1], torch.zeros(64, 4))


def test_every_init_method_streams_exactly():
    """Every init method, through the layer: step ≡ forward from a non-zero state."""
    for init in INIT_METHODS:
        torch.manual_seed(0)
        k = S4Kernel(3, 8, init=init).double()
        u = torch.randn(2, 23, 3, dtype=torch.float64)
        s0 = torch.randn(2, 3, 4, 2, dtype=torch.float64)
        with torch.no_grad():
            y, sL = k(u, s0, return_state=True)
            s, ys = s0, []
            for t in range(23):
                y_t, s = k.step(u[:, t], s)
                ys.append(y_t)
        assert rel(torch.stack(ys, 1), y) <= 1e-10 and rel(s, sL) <= 1e-10, init


def test_small_inverse_is_the_matrix_inverse():
    M = torch.randn(5, 2, 2, dtype=torch.float64) + 3 * torch.eye(2, dtype=torch.float64)
    assert torch.allclose(small_inverse(M), torch.linalg.inv(M), atol=1e-12)
    m = torch.randn(5, 1, 1, dtype=torch.complex128)
    assert torch.allclose(small_inverse(m), 1 / m)


def test_seed_layer_keywords():
    """The seed's S4Layer(…, bidirectional=True, hippo_method="legendre"): our S4Layer with init legs."""
    from models import S4Layer

    layer = S4Layer(d_model=4, d_state=8, dropout=0.1, bidirectional=True, hippo_method="legendre")
    assert layer.kernel.bidirectional and layer.kernel.rank == 1
    y, none = layer(torch.randn(2, 10, 4))
    assert y.shape == (2, 10, 4) and none is None
    assert S4Layer(d_model=4, d_state=8, init_method="legt").kernel.rank == 2
