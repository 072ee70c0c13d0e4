from __future__ import annotations

import pytest
import torch

from models import H3Layer, create_model
from models.layers.h3 import ShiftSSM


def _random_layer_state(layer: H3Layer, batch: int, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, *f.shape, generator=g, dtype=torch.float64) for f in layer.state_spec())


def _zero_state(layer: H3Layer, batch: int):
    return tuple(torch.zeros(batch, *f.shape, dtype=torch.float64) for f in layer.state_spec())


def _steps(layer, u, state):
    ys = []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("d_head", [1, 2, 4])
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_layer_step_reproduces_forward_from_nonzero_state(d_head, disc):
    torch.manual_seed(0)
    layer = H3Layer.build(8, d_state=6, shift_size=3, d_head=d_head, disc=disc).double()
    u = torch.randn(2, 40, 8, dtype=torch.float64)
    for s0 in (None, _random_layer_state(layer, 2)):
        with torch.no_grad():
            y_par, s_par = layer(u, s0, return_state=True)
            y_rec, s_rec = _steps(layer, u, s0 if s0 is not None else _zero_state(layer, 2))
        assert torch.allclose(y_rec, y_par, atol=1e-12, rtol=0)
        for a, b in zip(s_rec, s_par):
            assert torch.allclose(a, b, atol=1e-12, rtol=0)
        y_only, none = layer(u, s0)
        assert none is None and torch.allclose(y_only, y_par, atol=1e-13, rtol=0)


def test_shift_kernel_equals_shift_register_recurrence():
    """x_t = S x_{t-1} + e_1 u_t, y_t = C x_t with the explicit W×W shift matrix S, from a non-zero x_{-1}."""
    torch.manual_seed(0)
    H, W, L = 3, 5, 17
    ssm = ShiftSSM(H, W).double()
    C = ssm.C.detach()
    S = torch.diag(torch.ones(W - 1, dtype=torch.float64), -1)  # (S x)_0 = 0, (S x)_i = x_{i-1}
    e1 = torch.zeros(W, dtype=torch.float64)
    e1[0] = 1
    # the kernel is C S^j e_1: the taps themselves, then zeros
    K = torch.stack([C @ torch.linalg.matrix_power(S, j) @ e1 for j in range(L)], -1)  # (H, L)
    assert torch.allclose(K[:, :W], ssm.kernel()) and (K[:, W:] == 0).all()

    u = torch.randn(2, L, H, dtype=torch.float64)
    x = torch.randn(2, H, W, dtype=torch.float64)  # x_{-1} = (u_{-1}, …, u_{-W})
    register = x[..., : W - 1].flip(-1)  # the last W-1 inputs, oldest first; u_{-W} is forgotten
    ys = []
    for t in range(L):
        x = x @ S.T + u[:, t].unsqueeze(-1) * e1
        ys.append((C * x).sum(-1))
    with torch.no_grad():
        y, s = ssm(u, register, return_state=True)
        y_step, s_step = _steps(ssm, u, register)
    assert torch.allclose(y, torch.stack(ys, 1), atol=1e-13, rtol=0)
    assert torch.allclose(s, x[..., : W - 1].flip(-1), atol=0, rtol=0)
    assert torch.allclose(y_step, y, atol=1e-13, rtol=0) and torch.equal(s_step, s)


def test_shift_state_shorter_sequence_than_register():
    """L < W-1: the new register keeps part of the old one."""
    torch.manual_seed(0)
    ssm = ShiftSSM(2, 6).double()
    s0 = torch.randn(1, 2, 5, dtype=torch.float64)
    u = torch.randn(1, 2, 2, dtype=torch.float64)
    _, s = ssm(u, s0, return_state=True)
    assert torch.equal(s, torch.cat([s0[..., 2:], u.transpose(1, 2)], -1))


@pytest.mark.parametrize("d_head", [1, 2])
def test_forward_equals_per_head_linear_attention_form(d_head):
    """y_t = W_o [Σ_i q_t[i] (Σ_{s≤t} K_{t-s} k̃_s[i] v_s[:] + D k̃_t[i] v_t[:])] per head, written out."""
    torch.manual_seed(0)
    D, L = 4, 12
    layer = H3Layer.build(D, d_state=4, shift_size=2, d_head=d_head).double()
    u = torch.randn(1, L, D, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = layer.qkv(u)[0].chunk(3, -1)  # (L, D)
        c = layer.shift.C
        ks = k * c[:, 0] + torch.cat([torch.zeros(1, D, dtype=k.dtype), k[:-1]]) * c[:, 1]  # k̃
        dA_re, dA_im, dB_re, dB_im = layer.kernel.discretize()
        dA, dB = torch.complex(dA_re, dA_im), torch.complex(dB_re, dB_im)  # (nh, N2)
        C = torch.complex(layer.kernel.C[0, ..., 0], layer.kernel.C[0, ..., 1])
        K = torch.stack([2 * (C * dB * dA**j).sum(-1).real for j in range(L)])  # (L, nh)
        nh = D // d_head
        y = torch.zeros(L, D, dtype=torch.float64)
        for t in range(L):
            for h in range(nh):
                sl = slice(h * d_head, (h + 1) * d_head)
                kv = sum(K[t - s, h] * torch.outer(ks[s, sl], v[s, sl]) for s in range(t + 1))
                kv = kv + layer.kernel.D[h] * torch.outer(ks[t, sl], v[t, sl])
                y[t, sl] = q[t, sl] @ kv
        expected = layer.out(y)
        got, _ = layer(u)
    assert torch.allclose(got[0], expected, atol=1e-12, rtol=0)


def test_model_state_and_poles():
    m = create_model("h3", d_input=2, n_targets=1, horizon=3, d_model=8, d_state=6, n_layers=2, d_head=2)
    spec = m.state_spec()
    assert [f.name for f in spec] == ["layer0.shift", "layer0.ssm", "layer1.shift", "layer1.ssm"]
    assert spec[0].shape == (8, 5) and spec[1].shape == (2, 2, 2, 3, 4)  # shift_size defaults to d_state
    poles = m.ssm_poles()
    assert poles.shape == (2 * 4 * 3,) and (poles.abs() < 1).all()  # the diagonal SSMs' only (per head)
    assert create_model("h3", shift_size=4, d_state=8).state_spec()[0].shape == (32, 3)


@pytest.mark.parametrize("core,shape", [("s4", (2, 2, 2, 3, 2)), ("s4d", (2, 2, 2, 3, 2)), ("s5", (2, 2, 3, 2)),
                                        ("lru", (2, 2, 6, 2)), ("mamba", (2, 2, 6, 2))])
def test_every_core_as_the_diagonal_ssm(core, shape):
    """The diagonal SSM is the chosen core over the n_heads channels; its state per (i, j) entry of the head."""
    torch.manual_seed(0)
    layer = H3Layer.build(4, d_state=6, shift_size=3, d_head=2, ssm_layer=core).double()
    assert [f.shape for f in layer.state_spec()] == [(4, 2), shape]
    s0 = _random_layer_state(layer, 2)
    u = torch.randn(2, 17, 4, dtype=torch.float64)
    with torch.no_grad():
        y_par, s_par = layer(u, s0, return_state=True)
        y_rec, s_rec = _steps(layer, u, s0)
    assert torch.allclose(y_rec, y_par, atol=1e-12, rtol=0)
    assert all(torch.allclose(a, b, atol=1e-11, rtol=0) for a, b in zip(s_rec, s_par))


def test_d_head_1_is_q_times_the_core_of_shifted_k_times_v():
    """d_head = 1: y = W_o(q ⊙ core(act(shift(k)) ⊙ v)), with the core (here S5, MIMO over the heads) and the
    activation (here GELU, the seed's) as given."""
    torch.manual_seed(0)
    layer = H3Layer.build(4, d_state=4, shift_size=2, ssm_layer="s5", activation="gelu").double()
    u = torch.randn(2, 10, 4, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = layer.qkv(u).chunk(3, -1)
        k = torch.nn.functional.gelu(layer.shift(k)[0])
        expected = layer.out(q * layer.kernel(k * v)[0])
        assert torch.allclose(layer(u)[0], expected, atol=1e-12)


def test_bidirectional_h3_is_offline():
    m = create_model("h3", d_model=4, d_state=4, n_layers=1, ssm_layer="s4", bidirectional=True)
    assert m.layers[0].kernel.bidirectional
    x = torch.randn(1, 12, 1)
    assert m(x).shape == (1, 12, 1, 1)
    with pytest.raises(RuntimeError, match="non-causal"):
        m.layers[0].state_spec()
