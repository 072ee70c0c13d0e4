from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import MambaLayer, create_model
from models.layers.mamba import selective_scan, selective_scan_ref


def scan_inputs(L: int, Bsz: int = 2, E: int = 5, N: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    kw = {"generator": g, "dtype": torch.float64}
    u = torch.randn(Bsz, L, E, **kw)
    delta = F.softplus(torch.randn(Bsz, L, E, **kw) - 1)
    A = -torch.rand(E, N, **kw) * 2 - 0.1
    B, C = torch.randn(Bsz, L, N, **kw), torch.randn(Bsz, L, N, **kw)
    D = torch.randn(E, **kw)
    h0 = torch.randn(Bsz, E, N, **kw)
    return u, delta, A, B, C, D, h0


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 64])
@pytest.mark.parametrize("L", [1, 7, 37])
def test_parallel_scan_matches_sequential_reference(L, chunk_size):
    u, delta, A, B, C, D, h0 = scan_inputs(L)
    for init in (None, h0):
        y, h = selective_scan(u, delta, A, B, C, D, init, chunk_size)
        y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, init)
        assert torch.allclose(y, y_ref, atol=1e-12, rtol=0)
        assert torch.allclose(h, h_ref, atol=1e-12, rtol=0)  # final state


def tiny_layer(dtype=torch.float64, **kw) -> MambaLayer:
    torch.manual_seed(0)
    kw = {"d_state": 4, "d_conv": 3, "expand": 2, **kw}
    layer = MambaLayer.build(6, **kw).to(dtype).eval()
    with torch.no_grad():  # move D and the conv off their inits so every path matters
        layer.D.normal_()
    return layer


def random_layer_state(layer: MambaLayer, Bsz: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    conv = torch.randn(Bsz, layer.d_conv - 1, layer.d_inner, generator=g, dtype=dtype)
    ssm = torch.randn(Bsz, layer.d_state, layer.d_inner, generator=g, dtype=dtype)
    return conv, ssm


def test_zero_state_is_the_reference_zero_padded_conv():
    layer = tiny_layer(d_conv=4)
    u = torch.randn(2, 11, 6, dtype=torch.float64)
    with torch.no_grad():
        y, (conv, _) = layer(u, return_state=True)
        x = layer.in_proj(u).chunk(2, -1)[0].transpose(1, 2)  # (B, E, L)
        padded = F.conv1d(x, layer.conv1d.weight, layer.conv1d.bias, padding=3, groups=layer.d_inner)[..., :11]
        ref = F.silu(padded).transpose(1, 2)
    z = layer.in_proj(u).chunk(2, -1)[1]
    dt, B, C = layer.x_proj(ref).split([layer.dt_rank, 4, 4], -1)
    delta = F.softplus(dt @ layer.dt_proj.weight.T + layer.dt_proj.bias)
    y_ref, _ = selective_scan_ref(ref, delta, -torch.exp(layer.A_log), B, C, layer.D)
    assert torch.allclose(y, layer.out_proj(y_ref * F.silu(z)), atol=1e-12)
    assert torch.equal(conv, x[..., -3:].transpose(1, 2))  # the conv state is the last d_conv − 1 conv inputs


@pytest.mark.parametrize("split", [1, 2, 5, 16])
def test_conv_state_continuation(split):
    """A window split anywhere (also shorter than d_conv − 1) continues exactly from the returned state."""
    layer = tiny_layer(d_conv=4, chunk_size=3)
    u = torch.randn(2, 17, 6, dtype=torch.float64)
    s0 = random_layer_state(layer, 2)
    with torch.no_grad():
        y, s = layer(u, s0, return_state=True)
        y1, s1 = layer(u[:, :split], s0, return_state=True)
        y2, s2 = layer(u[:, split:], s1, return_state=True)
        y_zero = layer(u[:, split:], None)[0]
    assert torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-12, rtol=0)
    for a, b in zip(s2, s):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert not torch.allclose(y_zero[:, :3], y2[:, :3])  # the given conv state is used, not zero padding


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(dtype, tol):
    layer = tiny_layer(dtype, chunk_size=8)
    u = torch.randn(3, 29, 6, dtype=dtype)
    for s0 in (None, random_layer_state(layer, 3, dtype)):
        with torch.no_grad():
            y, s = layer(u, s0, return_state=True)
            state = s0 if s0 is not None else tuple(torch.zeros(3, *f.shape, dtype=dtype) for f in layer.state_spec())
            ys = []
            for t in range(u.shape[1]):
                y_t, state = layer.step(u[:, t], state)
                ys.append(y_t)
        scale = y.abs().max()
        assert (torch.stack(ys, 1) - y).abs().max() <= tol * scale
        for a, b in zip(state, s):
            assert (a - b).abs().max() <= tol * 10 * b.abs().max()


def test_reference_init():
    torch.manual_seed(0)
    layer = MambaLayer.build(40, d_state=16, expand=2, dt_min=1e-3, dt_max=1e-1, dt_init_floor=1e-4)
    assert layer.d_inner == 80 and layer.dt_rank == math.ceil(40 / 16) == 3
    assert MambaLayer.build(40, dt_rank=7).dt_rank == 7
    assert torch.allclose(layer.A_log, torch.log(torch.arange(1.0, 17)).expand(80, 16))  # S4D-real
    dt0 = F.softplus(layer.dt_proj.bias.double())
    assert dt0.min() >= 1e-3 * (1 - 1e-6) and dt0.max() <= 1e-1 * (1 + 1e-6)
    assert torch.allclose(layer.continuous_poles().real, -torch.arange(1.0, 17).expand(80, 16))
    poles = layer.discrete_poles()
    assert poles.shape == (80, 16)
    assert torch.allclose(poles.real, torch.exp(-torch.arange(1.0, 17) * dt0[:, None].float()))
    assert ((poles.abs() < 1) & (poles.abs() > 0)).all()


def test_ssm_params_have_no_weight_decay():
    m = create_model("mamba", d_input=2, d_model=8, n_layers=2, d_state=4, ssm_lr=5e-4)
    groups = m.param_groups(lr=1e-2, weight_decay=0.1)
    ssm_ids = {id(p) for g in groups if g["group"] == "ssm" for p in g["params"]}
    decay_ids = {id(p) for g in groups if g["group"] == "decay" for p in g["params"]}
    for layer in m.layers:
        assert {id(layer.A_log), id(layer.dt_proj.bias)} <= ssm_ids
        assert id(layer.D) not in decay_ids
    assert all(g["lr"] == 5e-4 for g in groups if g["group"] == "ssm")


def test_step_does_not_modify_state_and_has_no_complex():
    layer = tiny_layer(torch.float32)
    state = random_layer_state(layer, 2, torch.float32)
    frozen = tuple(t.clone() for t in state)
    _, new = layer.step(torch.randn(2, 6), state)
    assert all(torch.equal(a, b) for a, b in zip(state, frozen))
    assert [tuple(t.shape) for t in new] == [(2, 2, 12), (2, 4, 12)]  # (d_conv − 1, E), (N, E)


def test_config_defaults_and_entry_point():
    m = create_model(architecture="ssm", ssm_layer="mamba", d_model=32, num_layers=3)
    c = m.config
    assert m.name == "mamba" and type(m).__name__ == "Mamba" and c.n_layers == 3
    assert (c.d_state, c.d_conv, c.expand, c.dt_rank) == (8, 4, 2, "auto")
    assert m.layers[0].d_inner == 64 and m.layers[0].dt_rank == 2
    assert m.state_bytes_per_cell() == 4 * 3 * (64 * 3 + 64 * 8)
