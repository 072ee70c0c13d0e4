from __future__ import annotations

import math

import pytest
import torch

from models import LRULayer, create_model
from models.layers.lru import NU_MIN, LRURecurrence
from models.scan import linear_scan


def explicit_recurrence(rec: LRURecurrence, u: torch.Tensor, x0: torch.Tensor | None = None):
    """The paper's equations, one complex step per position: y (B, L, H), all states (B, L, N)."""
    lam = torch.exp(torch.complex(-torch.exp(rec.nu_log) - NU_MIN, torch.exp(rec.theta_log)))
    gamma = torch.exp(rec.gamma_log)
    B = torch.complex(rec.B[..., 0], rec.B[..., 1])  # (N, H)
    C = torch.complex(rec.C[..., 0], rec.C[..., 1])  # (H, N)
    x = torch.zeros(u.shape[0], rec.N, dtype=B.dtype) if x0 is None else x0
    ys, xs = [], []
    for t in range(u.shape[1]):
        x = lam * x + gamma * (u[:, t].to(B.dtype) @ B.T)
        ys.append((x @ C.T).real + rec.D * u[:, t])
        xs.append(x)
    return torch.stack(ys, 1), torch.stack(xs, 1)


@pytest.mark.parametrize("L", [1, 2, 33, 64, 101])
@pytest.mark.parametrize("init", ["zero", "nonzero"])
def test_scan_equals_explicit_loop(L, init):
    torch.manual_seed(0)
    rec = LRURecurrence(4, 6, r_min=0.5, r_max=0.99, max_phase=2 * math.pi).double()
    u = torch.randn(3, L, 4, dtype=torch.float64)
    s0 = None if init == "zero" else torch.randn(3, 6, 2, dtype=torch.float64)
    x0 = None if s0 is None else torch.complex(s0[..., 0], s0[..., 1])
    with torch.no_grad():
        y, s = rec(u, s0, return_state=True)
        y_ref, xs = explicit_recurrence(rec, u, x0)
    assert torch.allclose(y, y_ref, atol=1e-12, rtol=0)
    assert torch.allclose(torch.complex(s[..., 0], s[..., 1]), xs[:, -1], atol=1e-12, rtol=0)
    assert rec(u, s0)[1] is None  # no state unless asked


@pytest.mark.parametrize("r_min,r_max,max_phase", [(0.0, 0.99, 2 * math.pi), (0.9, 0.999, math.pi / 10),
                                                   (0.4, 0.6, 1.0)])
def test_ring_init(r_min, r_max, max_phase):
    mods2 = []
    for seed in range(50):
        torch.manual_seed(seed)
        rec = LRURecurrence(2, 64, r_min, r_max, max_phase).double()
        lam = rec.discrete_poles()
        mod, phase = lam.abs(), torch.exp(rec.theta_log)
        assert (mod >= r_min - 1e-6).all() and (mod <= r_max + 1e-6).all() and (mod < 1).all()
        assert (phase > 0).all() and (phase <= max_phase + 1e-6).all()
        assert torch.allclose(torch.exp(rec.gamma_log), torch.sqrt(1 - mod**2), rtol=1e-5)  # float32 params
        assert (rec.continuous_poles().real < 0).all()
        mods2.append(mod**2)
    # uniform on the ring's area: |λ|² uniform in [r_min², r_max²]
    mods2 = torch.cat(mods2)
    lo, hi = r_min**2, r_max**2
    assert abs(mods2.mean().item() - (lo + hi) / 2) < 0.03 * (hi - lo)
    assert abs(((mods2 - lo) / (hi - lo)).median().item() - 0.5) < 0.05


def test_gamma_normalization_gives_unit_variance_to_white_noise():
    """At init, each mode's stationary power equals that of γ-free input B u (E|x_n|² = Σ_h |B_nh|²),
    whatever |λ|, and Re(C x) has about unit variance per channel; without γ modes near |λ| = 1
    would be 1/(1 − |λ|²) ≈ 50× louder."""
    torch.manual_seed(0)
    H, N, L, burn = 8, 32, 4000, 1000
    rec = LRURecurrence(H, N, r_min=0.0, r_max=0.99, max_phase=2 * math.pi).double()
    u = torch.randn(16, L, H, dtype=torch.float64)
    with torch.no_grad():
        W_in, _ = rec.io_matrices()
        y, _ = rec(u, return_state=True)
        lam = rec.discrete_poles()
        bu = (u @ W_in).unflatten(-1, (N, 2))
        x = linear_scan(lam, torch.complex(bu[..., 0], bu[..., 1]), None, dim=1)[:, burn:]  # (B, L', N)
        power = (x.abs() ** 2).mean((0, 1))  # (N,)
        b_power = (rec.B**2).sum((-2, -1))  # Σ_h |B_nh|², (N,)
        ratio = power / b_power
        assert abs(ratio.mean().item() - 1) < 0.05  # seeds 0–11: within 0.01
        assert (ratio > 0.85).all() and (ratio < 1.15).all()  # seeds 0–11: [0.94, 1.06]
        ssm_out = (y - rec.D * u)[:, burn:]  # Re(C x)
        assert abs(ssm_out.var().item() - 1) < 0.3  # random C: seeds 0–11 gave 0.90–1.12
        # the test has teeth: the same modes without γ
        raw = linear_scan(lam, torch.complex(bu[..., 0], bu[..., 1]) / torch.exp(rec.gamma_log), None, dim=1)
        slowest = lam.abs().argmax()
        assert (raw[:, burn:, slowest].abs() ** 2).mean().item() > 5 * power[slowest].item()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_layer_step_equals_forward(dtype, tol):
    torch.manual_seed(0)
    layer = LRULayer.build(6, d_state=10).to(dtype).eval()
    assert [f.shape for f in layer.state_spec()] == [(10, 2)]
    u = torch.randn(2, 129, 6, dtype=dtype)
    for s0 in (torch.zeros(2, 10, 2, dtype=dtype), torch.randn(2, 10, 2, dtype=dtype)):
        with torch.no_grad():
            y, (s,) = layer(u, (s0,), return_state=True)
            state, ys = (s0,), []
            for t in range(u.shape[1]):
                y_t, state = layer.step(u[:, t], state)
                ys.append(y_t)
        y_rec = torch.stack(ys, 1)
        assert ((y_rec - y).abs().max() / y.abs().max()).item() < tol
        assert ((state[0] - s).abs().max() / s.abs().max()).item() < 10 * tol


def test_recurrence_params_get_the_ssm_group():
    m = create_model("lru", d_model=8, d_state=4, n_layers=2, ssm_lr=5e-4)
    groups = m.param_groups(lr=1e-2, weight_decay=0.1)
    ssm = [g for g in groups if g["group"] == "ssm"]
    assert len(ssm) == 1 and ssm[0]["lr"] == 5e-4 and ssm[0]["weight_decay"] == 0.0
    names = {n.rsplit(".", 1)[-1] for n, p in m.named_parameters() if any(p is q for q in ssm[0]["params"])}
    assert names == {"nu_log", "theta_log", "gamma_log"}
    assert m.ssm_poles().shape == (2 * 4,) and (m.ssm_poles().abs() < 1).all()


def test_modulus_stays_below_one_for_any_nu_log():
    rec = LRURecurrence(2, 3)  # float32: exp(−ν) would round to 1 for ν < 6e-8 without the ν_min floor
    with torch.no_grad():
        rec.nu_log.copy_(torch.tensor([-60.0, 0.0, 5.0]))
    assert (rec.discrete_poles().abs() < 1).all() and (rec.continuous_poles().real < 0).all()


def test_seed_style_entry_point():
    m = create_model(architecture="ssm", ssm_layer="lru", d_model=16, d_state=8, num_layers=3)
    assert m.name == "lru" and type(m).__name__ == "LRU" and m.config.n_layers == 3
    assert m.init_state(5)[0].shape == (5, 8, 2)


def test_lru_as_a_core():
    """The LRU is a sequence core of the other architectures: its ring options travel in layer_options; it has no
    continuous-time A, so an init method is refused."""
    m = create_model("gated_mlp", d_model=8, d_state=4, n_layers=1, ssm_layer="lru",
                     layer_options={"r_min": 0.2, "r_max": 0.3, "max_phase": 1.0})
    rec = m.layers[0].kernel
    assert isinstance(rec, LRURecurrence) and rec.N == 4 and rec.H == 2
    assert ((rec.discrete_poles().abs() >= 0.2 - 1e-6) & (rec.discrete_poles().abs() <= 0.3 + 1e-6)).all()
    assert (rec.continuous_poles().imag <= 1.0 + 1e-6).all()
    assert m.state_spec()[0].shape == (4, 2)
    with pytest.raises(ValueError, match="no continuous-time A"):
        create_model("h3", ssm_layer="lru", init="legs")
    with pytest.raises(TypeError, match="valid fields"):
        create_model("lru", init="legs")  # the plain LRU stack has no init field at all
