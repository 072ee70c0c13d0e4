from __future__ import annotations

import pytest
import torch

from models import create_model
from models.hippo import diagonalization_error, nplr_legs
from models.layers.s4d import S4DKernel


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", ["diag-lin", "diag-inv", "real", "legs"])
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


@pytest.mark.parametrize("N", [8, 64, 256])
def test_hippo_diagonalization_error(N):
    assert diagonalization_error(N) <= 1e-5
    Lam, V, _, _ = nplr_legs(N)
    assert (Lam.real < 0).all()
    assert abs(V.conj().T @ V - torch.eye(N).numpy()).max() < 1e-10


def test_seed_style_entry_point():
    m = create_model(architecture="ssm", ssm_layer="s4d", d_model=16, d_state=8, num_layers=3)
    assert m.name == "s4d" and m.config.n_layers == 3 and m.config.d_state == 8
