from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import GatedMLPLayer, create_model


def _steps(layer, u, state):
    ys = []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("init", ["diag-lin", "legs"])
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_layer_step_reproduces_forward_from_nonzero_state(init, disc):
    torch.manual_seed(0)
    layer = GatedMLPLayer.build(6, d_ff=16, d_ssm=3, d_state=8, init=init, disc=disc).double()
    u = torch.randn(2, 50, 6, dtype=torch.float64)
    zero = (torch.zeros(2, 2, 4, 3, dtype=torch.float64),)
    nonzero = (torch.randn(2, 2, 4, 3, dtype=torch.float64),)
    for s0 in (zero, nonzero):
        with torch.no_grad():
            y_par, s_par = layer(u, s0, return_state=True)
            y_rec, s_rec = _steps(layer, u, s0)
        assert torch.allclose(y_rec, y_par, atol=1e-12, rtol=0)
        assert torch.allclose(s_rec[0], s_par[0], atol=1e-12, rtol=0)
    with torch.no_grad():
        y_none, none = layer(u)
        assert none is None and torch.allclose(y_none, layer(u, zero)[0], atol=1e-13, rtol=0)


def test_forward_equals_gss_formula_with_explicit_recurrence():
    """y_t = W_o(GELU(W_v u_t) ⊙ W_up z'_t), z' the explicit complex recurrence on GELU(W_z u)."""
    torch.manual_seed(0)
    layer = GatedMLPLayer.build(4, d_ff=8, d_ssm=2, d_state=4).double()
    L = 20
    u = torch.randn(1, L, 4, dtype=torch.float64)
    with torch.no_grad():
        z = F.gelu(layer.to_z(u))[0]  # (L, d_ssm)
        k = layer.kernel
        dA_re, dA_im, dB_re, dB_im = k.discretize()
        dA, dB = torch.complex(dA_re, dA_im), torch.complex(dB_re, dB_im)
        C = torch.complex(k.C[0, ..., 0], k.C[0, ..., 1])
        x = torch.zeros(2, 2, dtype=torch.complex128)
        zs = []
        for t in range(L):
            x = dA * x + dB * z[t].unsqueeze(-1)
            zs.append(2 * (C * x).sum(-1).real + k.D * z[t])
        expected = layer.out(F.gelu(layer.to_v(u[0])) * layer.up(torch.stack(zs)))
        got, _ = layer(u)
    assert torch.allclose(got[0], expected, atol=1e-12, rtol=0)


def test_gss_default_widths_and_state():
    m = create_model("gated_mlp", d_input=2, n_targets=1, horizon=3, d_model=32, d_state=8, n_layers=2)
    layer = m.layers[0]
    assert (layer.d_ff, layer.d_ssm) == (128, 8)  # F = 4E, H = E/4
    assert [f.shape for f in m.state_spec()] == [(2, 4, 8), (2, 4, 8)]
    poles = m.ssm_poles()
    assert poles.shape == (2 * 8 * 4,) and (poles.abs() < 1).all()
    m = create_model("gated_mlp", d_model=2, d_ff=16, d_ssm=5)
    assert (m.layers[0].d_ff, m.layers[0].d_ssm) == (16, 5)
    assert create_model("gated_mlp", d_model=2).layers[0].d_ssm == 1


def test_other_cores_on_the_ssm_branch():
    """y = W_o(act(W_v u) ⊙ W_up core(act(W_z u))) for any core; `expand` sizes the wide branch (the seed's
    expand_factor), `activation` both branches."""
    torch.manual_seed(0)
    layer = GatedMLPLayer.build(4, expand=3, d_ssm=2, d_state=4, ssm_layer="s5", activation="silu").double()
    assert layer.d_ff == 12 and [f.shape for f in layer.state_spec()] == [(2, 2)]
    u = torch.randn(2, 9, 4, dtype=torch.float64)
    with torch.no_grad():
        z = layer.kernel(F.silu(layer.to_z(u)))[0]
        expected = layer.out(F.silu(layer.to_v(u)) * layer.up(z))
        assert torch.allclose(layer(u)[0], expected, atol=1e-12)
    assert GatedMLPLayer.build(4, expand=3, d_ff=5).d_ff == 5  # an explicit d_ff wins


def test_no_ssm_is_a_position_wise_gated_mlp():
    """ssm_layer "none" (the seed's ssm_layer=None): z' = z, no state; each position on its own."""
    torch.manual_seed(0)
    layer = GatedMLPLayer.build(4, d_ff=8, ssm_layer="none").double()
    assert layer.state_spec() == []
    u = torch.randn(2, 6, 4, dtype=torch.float64)
    with torch.no_grad():
        y, s = layer(u, (), return_state=True)
        assert s == () and torch.allclose(y, layer.out(F.gelu(layer.to_v(u)) * layer.up(F.gelu(layer.to_z(u)))))
        y_t, s_t = layer.step(u[:, 3], ())
        assert s_t == () and torch.allclose(y_t, y[:, 3], atol=1e-14)
