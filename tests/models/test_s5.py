from __future__ import annotations

import numpy as np
import pytest
import torch

from models import S5Layer, create_model
from models.hippo import hippo, legs, legs_low_rank, low_rank, nplr
from models.layers.s5 import S5SSM, s5_hippo_init
from models.layers.ssm_init import REAL_PART_MAX, diagonal_spectrum, pairing_basis
from models.layers.ssm_options import SSMOptions
from models.scan import linear_scan_ref


def _complex(ssm: S5SSM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dA_re, dA_im, dB_re, dB_im = ssm.discretize()
    C = torch.complex(ssm.C[..., 0], ssm.C[..., 1])  # (H, P)
    return torch.complex(dA_re, dA_im), torch.complex(dB_re, dB_im), C


def _normal_part(d_state: int, blocks: int) -> np.ndarray:
    """Block-diagonal A + P Pᵀ of HiPPO-LegS."""
    n = d_state // blocks
    A, _ = legs(n)
    p = legs_low_rank(n)
    return np.kron(np.eye(blocks), A + np.outer(p, p))


@pytest.mark.parametrize("L", [1, 2, 7, 33, 64])
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("blocks", [1, 2])
def test_scan_equals_sequential_loop(L, disc, blocks):
    torch.manual_seed(L)
    ssm = S5SSM(5, 8, blocks=blocks, disc=disc).double()
    u = torch.randn(3, L, 5, dtype=torch.float64)
    s0 = torch.randn(3, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        dA, dB, C = _complex(ssm)
        Bu = torch.einsum("ph,blh->blp", dB, u.to(dB.dtype))
        for state in (None, s0):
            y, s = ssm(u, state, return_state=True)
            x0 = None if state is None else torch.view_as_complex(state)
            xs = linear_scan_ref(dA, Bu, x0, dim=1)  # (B, L, P)
            y_ref = 2 * torch.einsum("hp,blp->blh", C, xs).real + ssm.D * u
            assert torch.allclose(y, y_ref, atol=1e-12, rtol=0)
            assert torch.allclose(torch.view_as_complex(s), xs[:, -1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_step_reproduces_forward(dtype, tol, disc):
    torch.manual_seed(0)
    layer = S5Layer.build(6, d_state=16, blocks=2, disc=disc).to(dtype).eval()
    u = torch.randn(2, 101, 6, dtype=dtype)
    s0 = (torch.randn(2, 8, 2, dtype=dtype),)
    with torch.no_grad():
        y, (s_par,) = layer(u, s0, return_state=True)
        s, ys = s0, []
        for t in range(u.shape[1]):
            y_t, s = layer.step(u[:, t], s)
            ys.append(y_t)
    y_rec = torch.stack(ys, 1)
    assert ((y_rec - y).abs().max() / y.abs().max()).item() <= tol
    assert ((s[0] - s_par).abs().max() / s_par.abs().max()).item() <= tol
    assert not any(t.is_complex() for t in s)


@pytest.mark.parametrize("d_state,blocks", [(2, 1), (8, 1), (8, 2), (64, 1), (64, 4)])
def test_hippo_init_reproduces_normal_part(d_state, blocks):
    Lam, V = s5_hippo_init(d_state, blocks)
    assert Lam.shape == (d_state // 2,) and V.shape == (d_state, d_state // 2)
    assert (Lam.real < 0).all() and (Lam.imag > 0).all()  # the conjugate-symmetric half
    assert torch.allclose(V.conj().T @ V, torch.eye(d_state // 2, dtype=V.dtype), atol=1e-12)
    # the kept modes and their conjugates rebuild the real normal part A + P Pᵀ
    recon = 2 * (V * Lam) @ V.conj().T
    assert np.abs(recon.real.numpy() - _normal_part(d_state, blocks)).max() < 1e-10
    # V* V̄ = 0: the dropped half is exactly the conjugate half
    assert (V.conj().T @ V.conj()).abs().max() < 1e-12


@pytest.mark.parametrize("blocks", [1, 2])
def test_layer_init_is_hippo(blocks):
    torch.manual_seed(0)
    ssm = S5SSM(4, 16, blocks=blocks).double()
    Lam, V = s5_hippo_init(16, blocks)
    poles = ssm.continuous_poles()
    assert (poles.real < 0).all()
    assert torch.allclose(poles, Lam, atol=1e-6)  # stored as float32, then cast
    assert (ssm.discrete_poles().abs() < 1).all()
    dt = torch.exp(ssm.log_dt)
    assert ssm.log_dt.shape == (8,) and (dt >= 1e-3 - 1e-9).all() and (dt <= 1e-1 + 1e-9).all()
    # B̃ = V* B₀ with B₀ real: B̃ lies in the range of V* (V V* is the projector, 2·Re(V B̃) = B₀ real)
    B = torch.view_as_complex(ssm.B.contiguous())
    assert torch.allclose(V.conj().T @ (2 * (V @ B).real).to(B.dtype), B, atol=1e-6)


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_diagonal_system_equals_real_hippo_system(disc):
    """With a common Δ, real B₀ and real C₀, the S5 SSM at init is the real system (A + P Pᵀ, B₀, C₀)
    discretized by matrix functions: the diagonalization, the conjugate half and 2·Re are exact."""
    torch.manual_seed(0)
    H, N, dt = 3, 8, 0.05
    ssm = S5SSM(H, N, blocks=2, disc=disc).double()
    Lam, V = s5_hippo_init(N, 2)
    B0 = torch.randn(N, H, dtype=torch.float64)
    C0 = torch.randn(H, N, dtype=torch.float64)
    with torch.no_grad():
        ssm.log_dt.fill_(np.log(dt))
        ssm.log_Lambda_real.copy_(torch.log(-Lam.real))  # the float64 init (parameters were stored as float32)
        ssm.Lambda_imag.copy_(Lam.imag)
        ssm.B.copy_(torch.view_as_real(V.conj().T @ B0.to(V.dtype)))
        ssm.C.copy_(torch.view_as_real(C0.to(V.dtype) @ V))
        ssm.D.zero_()
    A = torch.from_numpy(_normal_part(N, 2))
    I = torch.eye(N, dtype=torch.float64)
    if disc == "zoh":
        Ad = torch.linalg.matrix_exp(dt * A)
        Bd = torch.linalg.solve(A, (Ad - I) @ B0)
    else:
        Ad = torch.linalg.solve(I - dt / 2 * A, I + dt / 2 * A)
        Bd = torch.linalg.solve(I - dt / 2 * A, dt * B0)
    u = torch.randn(2, 40, H, dtype=torch.float64)
    x, ys = torch.zeros(2, N, dtype=torch.float64), []
    for t in range(u.shape[1]):
        x = x @ Ad.T + u[:, t] @ Bd.T
        ys.append(x @ C0.T)
    with torch.no_grad():
        y, _ = ssm(u)
    assert torch.allclose(y, torch.stack(ys, 1), atol=1e-10, rtol=0)


def test_state_is_shared_across_channels():
    m = create_model("s5", d_input=2, n_targets=1, horizon=2, d_model=32, d_state=16, n_layers=3)
    assert [f.shape for f in m.state_spec()] == [(8, 2)] * 3  # P complex modes per layer, independent of H
    assert m.state_bytes_per_cell() == 4 * 16 * 3


def test_ssm_params_are_marked():
    ssm = S5SSM(4, 8, options=SSMOptions(ssm_lr=5e-4))
    marked = {n for n, p in ssm.named_parameters() if hasattr(p, "_ssm_optim")}
    assert marked == {"log_Lambda_real", "Lambda_imag", "log_dt", "B"}
    assert all(p._ssm_optim["lr"] == 5e-4 for n, p in ssm.named_parameters() if n in marked)


def test_seed_style_entry_point():
    m = create_model(architecture="ssm", ssm_layer="s5", d_model=16, d_state=8, num_layers=2, blocks=2)
    assert m.name == "s5" and m.config.n_layers == 2 and m.config.blocks == 2
    y = m(torch.randn(2, 10, 1))
    assert y.shape == (2, 10, 1, 1)


@pytest.mark.parametrize("init", ["legt", "lagt", "fourier"])
@pytest.mark.parametrize("blocks", [1, 2])
def test_other_hippo_inits_reproduce_their_normal_parts(init, blocks):
    """legt, lagt, fourier as S5 takes LegS: the Im Λ > 0 half of the normal part's eigenpairs, per block; Re Λ = 0
    (LegT, Fourier) clamped to −1e-4."""
    d_state = 8
    Lam, V = s5_hippo_init(d_state, blocks, init)
    n = d_state // blocks
    A, _ = hippo(init, n)
    normal = np.kron(np.eye(blocks), A + low_rank(init, n).T @ low_rank(init, n))
    lam_exact, _, _, _ = nplr(init, n)
    w = lam_exact[0].real
    assert torch.allclose(Lam.real, torch.full_like(Lam.real, min(w, REAL_PART_MAX)))
    assert torch.allclose(V.conj().T @ V, torch.eye(d_state // 2, dtype=V.dtype), atol=1e-12)
    recon = 2 * (V * torch.complex(torch.full_like(Lam.real, w), Lam.imag)) @ V.conj().T  # unclamped real part
    assert np.abs(recon.real.numpy() - normal).max() < 1e-10


@pytest.mark.parametrize("init", ["diag-lin", "diag-inv", "real", "random"])
def test_diagonal_inits_use_their_spectrum_and_the_pairing_basis(init):
    torch.manual_seed(0)
    Lam, V = s5_hippo_init(8, 2, init)
    if init == "random":
        assert (Lam.real == -0.5).all() and (Lam.imag >= 0).all() and (Lam.imag < 2 * torch.pi).all()
        assert not torch.equal(Lam[:2], Lam[2:])  # each block draws its own
    else:
        assert torch.allclose(Lam, diagonal_spectrum(init, 2).repeat(2))
    assert torch.allclose(V.conj().T @ V, torch.eye(4, dtype=V.dtype), atol=1e-12)
    assert torch.allclose(V[:4, :2], torch.from_numpy(pairing_basis(4)))
    torch.manual_seed(0)
    ssm = S5SSM(3, 8, blocks=2, init=init)  # the layer draws the same spectrum from the same seed
    assert torch.allclose(ssm.continuous_poles().to(torch.complex128), Lam, atol=1e-5)


def test_init_through_the_config():
    m = create_model("s5", d_model=8, d_state=8, init="lin")
    assert m.config.init == "diag-lin"
    assert torch.allclose(m.layers[0].ssm.Lambda_imag, torch.tensor([0.0, 1, 2, 3]) * torch.pi, atol=1e-5)
