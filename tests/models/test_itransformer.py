"""iTransformer (models.baselines.itransformer): the formula on explicit windows against a direct re-implementation,
what the inverted design implies (no variate order, cross-variate mixing, the normalization's affine equivariance),
the window streaming contract and the config's checks. The zoo-wide contract runs in test_contract / test_framing."""

from __future__ import annotations

import math

import pytest
import torch

from models import create_model
from models.baselines.itransformer import NORM_EPS, ITransformerConfig, normalize_windows
from tests.models.zoo_helpers import (
    D_IN,
    HORIZON,
    N_TGT,
    TARGET_INDEX,
    check_last_window_paths,
    check_window_steps,
    rel_err,
    tiny_model,
)


def randomize(model, seed: int = 0):
    """Random weights everywhere (LayerNorm gains around 1), so the formula tests see every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if p.ndim >= 2:
                p.copy_(r / math.sqrt(p.shape[-1]))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * r)
            else:
                p.copy_(0.3 * r)
    return model


def small(dtype=torch.float64, d_input=D_IN, target_index=TARGET_INDEX, seed=0, **kw):
    """A randomized small iTransformer (window 12, d_model 8, 2 heads, 2 layers), in eval mode."""
    cfg = {"window": 12, "d_model": 8, "n_heads": 2, "n_layers": 2, "d_ff": 16, **kw}
    torch.manual_seed(seed)
    m = create_model("itransformer", d_input=d_input, n_targets=len(target_index), horizon=HORIZON,
                     target_index=target_index, **cfg)
    return randomize(m.to(dtype), seed).eval()


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def ref_itransformer(model, w: torch.Tensor) -> torch.Tensor:
    """The paper's formula on one explicit window per variate, written out: w (D, W) → (H, K)."""
    c = model.config
    z = w
    if c.use_norm:
        mu = w.mean(1, keepdim=True)
        sigma = torch.sqrt(((w - mu) ** 2).mean(1, keepdim=True) + model.eps)
        z = (w - mu) / sigma
    h = z @ model.embed.weight.T + model.embed.bias  # (D, d): one token per variate
    for layer in model.layers:
        q, k, v = (h @ layer.qkv.weight.T + layer.qkv.bias).split(c.d_model, -1)
        dh = c.d_model // c.n_heads
        heads = []
        for i in range(c.n_heads):
            s = slice(i * dh, (i + 1) * dh)
            scores = q[:, s] @ k[:, s].T / math.sqrt(dh)  # (D, D): variate i attends to variate j
            heads.append(torch.softmax(scores, -1) @ v[:, s])
        a = torch.cat(heads, -1) @ layer.out.weight.T + layer.out.bias
        h = _layer_norm(h + a, layer.norm1)
        u = h @ layer.fc1.weight.T + layer.fc1.bias
        u = 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))  # exact GELU
        h = _layer_norm(h + u @ layer.fc2.weight.T + layer.fc2.bias, layer.norm2)
    y = _layer_norm(h, model.final_norm) @ model.proj.weight.T + model.proj.bias  # (D, H)
    if c.use_norm:
        y = y * sigma + mu
    return y[list(c.target_index)].T  # (H, K)


@pytest.mark.parametrize("use_norm", [True, False])
def test_forward_equals_reference_formula_on_explicit_windows(use_norm):
    model = small(use_norm=use_norm)
    W = model.config.window
    B, L = 2, W + 20
    x = torch.randn(B, L, D_IN, dtype=torch.float64)
    ring = torch.randn(B, D_IN, W - 1, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        y_state, (ring_out,) = model.forward_with_state(x, (ring,))
        for b in range(B):
            zero_hist = torch.cat([torch.zeros(D_IN, W - 1, dtype=torch.float64), x[b].T], -1)  # (D, W−1+L)
            ring_hist = torch.cat([ring[b], x[b].T], -1)
            for t in [*range(0, L, 4), W - 2, W - 1, L - 1]:
                assert (y[b, t] - ref_itransformer(model, zero_hist[:, t : t + W])).abs().max() <= 1e-12
                assert (y_state[b, t] - ref_itransformer(model, ring_hist[:, t : t + W])).abs().max() <= 1e-12
    assert torch.equal(ring_out, x.transpose(1, 2)[..., L - W + 1 :])


def test_normalize_windows():
    w = 3.0 + 2.0 * torch.randn(4, 3, 20, dtype=torch.float64)
    z, mu, sigma = normalize_windows(w)
    assert torch.allclose(mu[..., 0], w.mean(-1)) and torch.allclose(sigma[..., 0]**2, w.var(-1, unbiased=False) + 1e-5)
    assert torch.allclose(z * sigma + mu, w, atol=1e-13, rtol=0)
    z0, mu0, sigma0 = normalize_windows(torch.zeros(2, 5))  # an all-zero window (the zero state): finite, z = 0
    assert torch.equal(z0, torch.zeros(2, 5)) and torch.equal(mu0, torch.zeros(2, 1))
    assert torch.allclose(sigma0, torch.full((2, 1), math.sqrt(NORM_EPS)))


def test_permuting_the_variates_permutes_the_forecasts():
    """No positional embedding over variates: reordering the input columns (target_index following them) gives the
    same forecasts, and reordering the targets reorders the outputs."""
    D, targets = 5, (0, 3)
    model = small(d_input=D, target_index=targets)
    perm = [3, 1, 4, 0, 2]  # new column j is old column perm[j]
    moved = tuple(perm.index(t) for t in targets)  # where the targets went: (3, 0)
    x = torch.randn(2, 30, D, dtype=torch.float64)
    ring = torch.randn(2, D, model.config.window - 1, dtype=torch.float64)
    same = small(d_input=D, target_index=moved)
    same.load_state_dict(model.state_dict())
    swapped = small(d_input=D, target_index=moved[::-1])
    swapped.load_state_dict(model.state_dict())
    with torch.no_grad():
        y, (r,) = model.forward_with_state(x, (ring,))
        y_perm, (r_perm,) = same.forward_with_state(x[..., perm], (ring[:, perm],))
        y_swap = swapped.forward_with_state(x[..., perm], (ring[:, perm],))[0]
    assert rel_err(y_perm, y) <= 1e-12
    assert rel_err(y_swap, y.flip(-1)) <= 1e-12
    assert torch.equal(r_perm, r[:, perm])


@pytest.mark.parametrize("seed", [0, 1])
def test_normalization_makes_the_forecast_equivariant_to_per_variate_affine_maps(seed):
    """With use_norm the encoder sees each window normalized, (w − μ)/σ, which per-variate maps w_d → a_d·w_d + b_d
    (a_d > 0) leave unchanged, so each target's forecast moves by its own variate's map even though attention mixes
    the variates: exactly for shifts, and for scales up to ε in σ = √(var + ε) (exact with ε = 0). A negative scale
    flips the token the encoder sees, and without use_norm the raw levels enter the tokens: neither is equivariant."""
    model = small(seed=seed)
    W, cols = model.config.window, list(TARGET_INDEX)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 40, D_IN, dtype=torch.float64, generator=g)
    ring = torch.randn(2, D_IN, W - 1, dtype=torch.float64, generator=g)

    def forecasts(m, a, b):
        """Forecasts of the mapped stream (state mapped too) and the mapped forecasts of the original."""
        a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        with torch.no_grad():
            y = m.forward_with_state(x, (ring,))[0]
            y_mapped = m.forward_with_state(a * x + b, (a[:, None] * ring + b[:, None],))[0]
        return y_mapped, a[cols] * y + b[cols]

    shift = ([1.0, 1.0, 1.0], [-3.0, 5.0, 0.7])
    affine = ([2.5, 0.3, 7.0], [-1.0, 4.0, 0.5])
    assert rel_err(*forecasts(model, *shift)) <= 1e-12
    assert 1e-12 < rel_err(*forecasts(model, *affine)) <= 1e-3  # ε: approximate
    model.eps = 0.0
    assert rel_err(*forecasts(model, *affine)) <= 1e-12
    assert rel_err(*forecasts(model, [1.0, 1.0, -2.0], [0.0, 0.0, 0.0])) > 1e-2  # sign flips the token

    raw = small(seed=seed, use_norm=False)
    raw.load_state_dict(model.state_dict())
    assert rel_err(*forecasts(raw, *affine)) > 1e-2
    assert rel_err(*forecasts(raw, *shift)) > 1e-2


def test_a_covariate_changes_every_target_forecast():
    """Attention across variates: a column that is no target still moves both targets' forecasts (DLinear's would
    not move)."""
    model = small()
    cov = next(d for d in range(D_IN) if d not in TARGET_INDEX)
    x = torch.randn(2, 30, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[..., cov] += torch.randn(2, 30, dtype=torch.float64)
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert ((y - y2).abs().amax(2) > 1e-6).all()  # every position, every target


def test_window_bounds_the_receptive_field():
    model = small()
    W = model.config.window
    x = torch.randn(1, 3 * W, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 10, 1] += 1.0  # a covariate at t = 10
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    changed = (y - y2).abs().amax((0, 2, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))


def test_zero_windows_stay_finite():
    """The zero state is zero padding: the normalization of an all-zero window divides by √ε, not by 0."""
    model = small()
    x = torch.zeros(2, 5, D_IN, dtype=torch.float64, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    y_t, _ = model.step(torch.zeros(2, D_IN, dtype=torch.float64), model.init_state(2))
    assert torch.isfinite(y_t).all() and rel_err(y_t, y[:, 0].detach()) <= 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(dtype, tol):
    check_window_steps(small(dtype), dtype, tol, 40)


def test_last_window_paths():
    check_last_window_paths(small())


def param_count(W, d, d_ff, H, n_layers):
    layer = 4 * (d * d + d) + 4 * d + (d * d_ff + d_ff) + (d_ff * d + d)  # attention, 2 LayerNorms, FFN
    return (W * d + d) + n_layers * layer + 2 * d + (d * H + H)


def test_shapes_and_parameters():
    model = tiny_model("itransformer")
    c = model.config
    assert (c.window, c.d_model, c.n_heads, c.n_layers, c.d_ff) == (48, 8, 2, 2, 16)
    assert sum(p.numel() for p in model.parameters()) == param_count(48, 8, 16, HORIZON, 2)
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (D_IN, 47))]
    x = torch.randn(3, 17, D_IN, dtype=torch.float64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, D_IN, 47)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, D_IN, 47)
    # the default size (ETT: 7 variates, W = H = 96): tokens share every weight, so the count ignores D
    for d_input in (7, 3):
        m = create_model("itransformer", d_input=d_input, n_targets=d_input, horizon=96)
        assert sum(p.numel() for p in m.parameters()) == param_count(96, 128, 256, 96, 2) == 290_016


def test_dropout_only_in_training():
    model = small(dropout=0.3).train()
    x = torch.randn(2, 15, D_IN, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


def test_gradcheck():
    model = create_model("itransformer", d_input=D_IN, n_targets=N_TGT, horizon=2, target_index=TARGET_INDEX,
                         window=6, d_model=4, n_heads=2, n_layers=1, d_ff=8).double()
    x = torch.randn(1, 4, D_IN, dtype=torch.float64, requires_grad=True)
    ring = torch.randn(1, D_IN, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: model.forward_with_state(x, (r,))[0], (x, ring))
    assert torch.autograd.gradcheck(lambda x, r: model.step(x[:, 0], (r,))[0], (x, ring))
    names = [n for n, _ in model.named_parameters()]

    def through_params(*ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x.detach(),))

    ps = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(through_params, ps)


def test_config_defaults_and_target_index():
    cfg = ITransformerConfig(d_input=7, n_targets=7)
    assert cfg.target_index == tuple(range(7))
    assert (cfg.window, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff, cfg.use_norm) == (96, 128, 8, 2, 256, True)
    assert ITransformerConfig(d_model=64, n_heads=4).d_ff == 128  # None → 2·d_model
    assert ITransformerConfig(d_model=64, n_heads=4, d_ff=32).d_ff == 32
    assert ITransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="target_index is required"):
        ITransformerConfig(d_input=3, n_targets=2)


@pytest.mark.parametrize("fields,message", [
    ({"window": 1}, "window must be ≥ 2"),
    ({"d_model": 0}, "d_model must be ≥ 1"),
    ({"n_heads": 0}, "n_heads must be ≥ 1"),
    ({"n_layers": 0}, "n_layers must be ≥ 1"),
    ({"d_ff": 0}, "d_ff must be ≥ 1"),
    ({"d_model": 12, "n_heads": 8}, "d_model must be a multiple of n_heads"),
    ({"use_norm": 1}, "use_norm must be true or false"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"target_index": (0, 5)}, "out of range"),
])
def test_bad_configs_raise(fields, message):
    with pytest.raises(ValueError, match=message):
        ITransformerConfig(**{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
    with pytest.raises(ValueError, match=message):
        create_model("itransformer", **{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
