from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import MambaLayer, create_model
from models.layers.mamba import MambaBlock, MambaConfig, selective_scan, selective_scan_ref
from models.layers.ssm_init import diagonal_init


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


def complex_scan_inputs(L: int, Bsz: int = 2, E: int = 5, N2: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    kw = {"generator": g, "dtype": torch.float64}
    u = torch.randn(Bsz, L, E, **kw)
    delta = F.softplus(torch.randn(Bsz, L, E, **kw) - 1)
    A = torch.complex(-torch.rand(E, N2, **kw) - 0.1, 3 * torch.randn(E, N2, **kw))

    def c(*shape):
        return torch.complex(torch.randn(*shape, **kw), torch.randn(*shape, **kw))

    return u, delta, A, c(Bsz, L, N2), c(Bsz, L, N2), torch.randn(E, **kw), c(Bsz, E, N2)


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
@pytest.mark.parametrize("L", [1, 7, 37])
def test_complex_scan_matches_sequential_reference(L, chunk_size):
    """A complex selective SSM (a non-real init): the conjugate-pair half, y = 2·Re(C·h) + D u."""
    u, delta, A, B, C, D, h0 = complex_scan_inputs(L)
    for init in (None, h0):
        y, h = selective_scan(u, delta, A, B, C, D, init, chunk_size)
        y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, init)
        assert not y.is_complex() and torch.allclose(y, y_ref, atol=1e-12, rtol=0)
        assert torch.allclose(h, h_ref, atol=1e-12, rtol=0)
    # the half is the real system: the full system (the modes and their conjugates, C·h summed, not doubled) gives
    # the same y, since Σ over both halves = 2·Re of the half's sum
    hs = selective_scan_ref(u, delta, A, B, C, D)[0]
    Af, Bf, Cf = (torch.cat([t, t.conj()], -1) for t in (A, B, C))
    h, ys = torch.zeros(u.shape[0], *Af.shape, dtype=Af.dtype), []
    for t in range(u.shape[1]):
        dt = delta[:, t].unsqueeze(-1)
        h = torch.exp(dt * Af) * h + dt * u[:, t].unsqueeze(-1) * Bf[:, t].unsqueeze(1)
        ys.append((h * Cf[:, t].unsqueeze(1)).sum(-1))
    full = torch.stack(ys, 1)
    assert full.imag.abs().max() < 1e-12 and torch.allclose(full.real + D * u, hs, atol=1e-12)


@pytest.mark.parametrize("init", ["diag-inv", "diag-lin", "legs", "fourier"])
def test_complex_init_spectrum_and_streaming(init):
    """init other than "real": A has the method's spectrum over N/2 modes (S4D-Inv λ_n = −½ + i(N/π)(N/(2n+1) − 1),
    …), the state is (2, N/2, E) re/im planes, and step ≡ forward from a non-zero state."""
    layer = tiny_layer(init=init)  # d_state 4, E = 12
    assert layer.complex_a and [f.shape for f in layer.state_spec()] == [(2, 12), (2, 2, 12)]
    lam, _ = diagonal_init(init, 12, 2)
    assert torch.allclose(layer.continuous_poles().to(torch.complex128), lam, atol=1e-5)
    if init == "diag-inv":
        n = torch.arange(2, dtype=torch.float64)
        assert torch.allclose(lam.imag[0], 4 / torch.pi * (4 / (2 * n + 1) - 1))
    poles = layer.discrete_poles()
    assert poles.shape == (12, 2) and (poles.abs() < 1).all()
    u = torch.randn(2, 23, 6, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    s0 = tuple(torch.randn(2, *f.shape, generator=g, dtype=torch.float64) for f in layer.state_spec())
    with torch.no_grad():
        y, s = layer(u, s0, return_state=True)
        state, ys = s0, []
        for t in range(u.shape[1]):
            y_t, state = layer.step(u[:, t], state)
            ys.append(y_t)
    assert torch.allclose(torch.stack(ys, 1), y, atol=1e-12, rtol=0)
    assert all(torch.allclose(a, b, atol=1e-12, rtol=0) for a, b in zip(state, s))


def test_complex_layer_equals_the_reference_scan():
    """The complex layer is the block around selective_scan_ref with B, C read as (real parts, imaginary parts)."""
    layer = tiny_layer(init="diag-lin", d_conv=2)
    u = torch.randn(2, 9, 6, dtype=torch.float64)
    with torch.no_grad():
        y, _ = layer(u)
        x, z = layer.in_proj(u).chunk(2, -1)
        xc = F.pad(x.transpose(1, 2), (1, 0))
        x = F.silu(F.conv1d(xc, layer.conv1d.weight, layer.conv1d.bias, groups=layer.d_inner)).transpose(1, 2)
        dt, B, C = layer.x_proj(x).split([layer.dt_rank, 4, 4], -1)
        delta = F.softplus(layer.dt_proj(dt))
        A = torch.complex(-torch.exp(layer.A_log), layer.A_imag)
        y_ref, _ = selective_scan_ref(x, delta, A, torch.complex(B[..., :2], B[..., 2:]),
                                      torch.complex(C[..., :2], C[..., 2:]), layer.D)
    assert torch.allclose(y, layer.out_proj(y_ref * F.silu(z)), atol=1e-12)


def test_mamba_block_around_another_core():
    """ssm_layer s4d: in_proj → causal conv → SiLU → S4D (on E channels) → ⊙ SiLU(z) → out_proj; state (conv, S4D's)."""
    torch.manual_seed(0)
    block = MambaBlock.build(6, d_state=4, d_conv=3, expand=2, ssm_layer="s4d").double()
    assert type(block.kernel).__name__ == "S4DKernel" and block.kernel.H == 12
    assert [f.shape for f in block.state_spec()] == [(2, 12), (2, 2, 12)]
    u = torch.randn(2, 11, 6, dtype=torch.float64)
    with torch.no_grad():
        y, _ = block(u)
        x, z = block.in_proj(u).chunk(2, -1)
        xc = F.pad(x.transpose(1, 2), (2, 0))
        x = F.silu(F.conv1d(xc, block.conv1d.weight, block.conv1d.bias, groups=12)).transpose(1, 2)
        expected = block.out_proj(block.kernel(x)[0] * F.silu(z))
    assert torch.allclose(y, expected, atol=1e-12)
    with pytest.raises(ValueError, match="MambaBlock"):
        MambaLayer.build(6, ssm_layer="s4d")
    m = create_model("mamba", d_model=8, n_layers=2, ssm_layer="lru", activation="gelu")
    assert all(type(layer).__name__ == "MambaBlock" for layer in m.layers) and m.layers[0].act is F.gelu


def test_seed_keywords():
    layer = MambaLayer(d_model=8, d_state=4, expand_factor=2, init_method="inv")
    assert layer.d_inner == 16 and layer.complex_a
    with pytest.raises(TypeError, match="a config or keywords"):
        MambaLayer(MambaConfig(), d_model=8)
