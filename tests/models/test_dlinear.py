from __future__ import annotations

import math

import pytest
import torch

from models import create_model
from models.baselines.dlinear import DLinearConfig, moving_average, series_decomp
from tests.models.zoo_helpers import (
    D_IN,
    HORIZON,
    N_TGT,
    TARGET_INDEX,
    check_target_windows,
    check_window_steps,
    tiny_model,
)


def ref_moving_average(w: list[float], m: int) -> list[float]:
    """The reference trend, one window, by a direct loop: replicate the ends (m−1)//2 times, mean of m."""
    p = (m - 1) // 2
    padded = [w[0]] * p + list(w) + [w[-1]] * p
    return [sum(padded[i : i + m]) / m for i in range(len(w))]


def ref_dlinear(model, w: torch.Tensor) -> torch.Tensor:
    """The reference DLinear formula on one explicit window per channel: w (K, W) → (H, K)."""
    c = model.config
    out = []
    for k in range(c.n_targets):
        trend = torch.tensor(ref_moving_average(w[k].tolist(), c.moving_avg), dtype=w.dtype)
        seasonal = w[k] - trend
        i = k if c.individual else 0
        ls, lt = model.linear_seasonal[i], model.linear_trend[i]
        out.append(ls.weight @ seasonal + ls.bias + lt.weight @ trend + lt.bias)
    return torch.stack(out, -1)


def randomize(model, seed: int = 0):
    """Replace the uniform 1/W init by random weights, so the formula tests see every weight."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p.shape[-1]))
    return model


@pytest.mark.parametrize("m", [1, 3, 7, 25, 61])
def test_decomposition_equals_reference_loop(m):
    w = torch.randn(3, 4, 20, dtype=torch.float64)
    seasonal, trend = series_decomp(w, m)
    ref = torch.tensor([[ref_moving_average(row.tolist(), m) for row in batch] for batch in w], dtype=torch.float64)
    assert torch.allclose(trend, ref, atol=1e-14, rtol=0)
    assert torch.allclose(seasonal + trend, w, atol=1e-14, rtol=0)
    assert torch.allclose(moving_average(torch.full((2, 9), 1.5, dtype=torch.float64), m), torch.full((2, 9), 1.5,
                          dtype=torch.float64), atol=1e-15, rtol=0)


@pytest.mark.parametrize("individual", [False, True])
def test_forward_equals_reference_formula_on_explicit_windows(individual):
    model = randomize(tiny_model("dlinear", individual=individual))
    W = model.config.window
    L = W + 30
    check_target_windows(model, ref_dlinear, [*range(0, L, 5), W - 2, W - 1, L - 1], 1e-12, L)
    x = torch.randn(2, L, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    for b in range(2):
        for t in range(W - 1, L, 7):  # a full window: exactly the reference model on x[t−W+1 … t]
            explicit = x[b, t - W + 1 : t + 1, list(TARGET_INDEX)].T  # (K, W)
            assert (y[b, t] - ref_dlinear(model, explicit)).abs().max() <= 1e-12


def test_short_input_continues_the_ring():
    model = randomize(tiny_model("dlinear"))
    W = model.config.window
    ring = torch.randn(2, N_TGT, W - 1, dtype=torch.float64)
    x = torch.randn(2, 5, D_IN, dtype=torch.float64)
    with torch.no_grad():
        _, (ring_out,) = model.forward_with_state(x, (ring,))
    expected = torch.cat([ring, x[..., list(TARGET_INDEX)].transpose(1, 2)], -1)[..., 5:]
    assert torch.equal(ring_out, expected)


@pytest.mark.parametrize("individual", [False, True])
def test_shapes_and_parameters(individual):
    model = tiny_model("dlinear", individual=individual)
    W, n_pairs = model.config.window, N_TGT if individual else 1
    assert len(model.linear_seasonal) == len(model.linear_trend) == n_pairs
    assert sum(p.numel() for p in model.parameters()) == n_pairs * 2 * (HORIZON * W + HORIZON)
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (N_TGT, W - 1))]
    x = torch.randn(3, 17, D_IN, dtype=torch.float64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, N_TGT, W - 1)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, N_TGT, W - 1)


def test_reference_init():
    model = tiny_model("dlinear", torch.float32, individual=True)
    W = model.config.window
    for lin in (*model.linear_seasonal, *model.linear_trend):
        assert torch.equal(lin.weight, torch.full((HORIZON, W), 1.0 / W))
        assert (lin.bias.abs() <= 1 / math.sqrt(W)).all()  # nn.Linear's default bias init


def test_channel_independent():
    model = randomize(tiny_model("dlinear", individual=True))
    x = torch.randn(2, 60, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 1] += torch.randn(2, 60, dtype=torch.float64)  # not a target: ignored
    x2[..., TARGET_INDEX[1]] += torch.randn(2, 60, dtype=torch.float64)  # the second target only
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert torch.equal(y[..., 0], y2[..., 0])
    assert not torch.allclose(y[..., 1], y2[..., 1])


def test_window_bounds_the_receptive_field():
    model = randomize(tiny_model("dlinear"))
    W = model.config.window
    x = torch.randn(1, 2 * W, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 10] += 1.0
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    changed = (y - y2).abs().amax((0, 2, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))


@pytest.mark.parametrize("individual", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(individual, dtype, tol):
    check_window_steps(randomize(tiny_model("dlinear", dtype, individual=individual)), dtype, tol, 130)


@pytest.mark.parametrize("individual", [False, True])
def test_gradcheck(individual):
    model = create_model("dlinear", d_input=D_IN, n_targets=N_TGT, horizon=2, target_index=TARGET_INDEX,
                         window=6, moving_avg=3, individual=individual).double()
    x = torch.randn(1, 8, D_IN, dtype=torch.float64, requires_grad=True)
    ring = torch.randn(1, N_TGT, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: model.forward_with_state(x, (r,))[0], (x, ring))
    assert torch.autograd.gradcheck(lambda x, r: model.step(x[:, 0], (r,))[0], (x, ring))
    names = [n for n, _ in model.named_parameters()]

    def through_params(*ps):  # the parameters as explicit inputs
        return torch.func.functional_call(model, dict(zip(names, ps)), (x.detach(),))

    ps = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(through_params, ps)


def test_config_validation_and_target_index():
    with pytest.raises(ValueError, match="target_index"):
        DLinearConfig(d_input=3, n_targets=2)
    assert DLinearConfig(d_input=7, n_targets=7).target_index == tuple(range(7))
    with pytest.raises(ValueError, match="moving_avg"):
        DLinearConfig(moving_avg=24)
    with pytest.raises(ValueError, match="window"):
        DLinearConfig(window=1)
    cfg = DLinearConfig()
    assert (cfg.window, cfg.moving_avg, cfg.individual) == (96, 25, False)
