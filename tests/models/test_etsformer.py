"""ETSformer (models.baselines.etsformer): the real DFT against torch.fft, Frequency Attention and the smoothing
matrices against their definitions, the whole formula on explicit windows against a direct re-implementation
(recursions written out, torch.fft for the season), what the decomposition implies (a level-only model is nested
exponential smoothing, the season extrapolates periodically), the window streaming contract and the config's
checks. The zoo-wide contract runs in test_contract / test_framing / tests/export."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import create_model
from models.baselines.etsformer import (
    BAND_FLOOR,
    ETSformerConfig,
    FrequencyAttention,
    dft_matrices,
    n_frequencies,
    smoothing_matrices,
)
from models.export.step_graph import StepGraph
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

TARGETS = list(TARGET_INDEX)


def small(dtype=torch.float64, seed=0, **kw):
    """A small ETSformer (window 12: 5 frequencies, top_k 2, d_model 8, 2 heads, 2 layers), LayerNorms randomized,
    in eval mode."""
    cfg = {"window": 12, "d_model": 8, "n_heads": 2, "n_layers": 2, "d_ff": 16, "top_k": 2, "dropout": 0.0, **kw}
    torch.manual_seed(seed)
    m = create_model("etsformer", d_input=D_IN, n_targets=N_TGT, horizon=HORIZON, target_index=TARGET_INDEX, **cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m.to(dtype).eval()


# -- the written-out reference ----------------------------------------------------------------------------------

def ref_season(z: torch.Tensor, horizon: int, top_k: int, band: float) -> torch.Tensor:
    """Frequency Attention with torch.fft as the reference writes it: z (W, d) → (W+H, d)."""
    W = z.shape[0]
    X = torch.fft.rfft(z, dim=0)[1 : n_frequencies(W) + 1]  # (F, d): no DC, no Nyquist
    power = X.abs() ** 2
    if top_k == X.shape[0]:
        weight = torch.ones_like(power)
    elif band == 0.0:
        weight = torch.zeros_like(power).scatter(0, torch.topk(X.abs(), top_k, dim=0).indices, 1.0)
    else:
        top = torch.topk(power, top_k + 1, dim=0).values
        kth, nxt = top[top_k - 1], top[top_k]
        weight = torch.clamp(0.5 + (power - 0.5 * (kth + nxt)) / (band * kth + BAND_FLOOR), 0.0, 1.0)
    freq = torch.arange(1, X.shape[0] + 1, dtype=z.dtype)[:, None, None] / W  # (F, 1, 1)
    tau = torch.arange(W + horizon, dtype=z.dtype)[None, :, None]  # (1, W+H, 1)
    amp, phase = (X.abs() / W)[:, None], X.angle()[:, None]  # (F, 1, d)
    waves = amp * (torch.cos(2 * math.pi * freq * tau + phase) + torch.cos(-2 * math.pi * freq * tau - phase))
    return (weight[:, None] * waves).sum(0)


def _ln(x, ln):
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + ln.eps) * ln.weight + ln.bias


def _lin(x, lin):
    return x @ lin.weight.T + (lin.bias if lin.bias is not None else 0.0)


def ref_etsformer(model, w: torch.Tensor) -> torch.Tensor:
    """The paper's ETSformer on one explicit window, the smoothing as recursions: w (W, D) → (H, K)."""
    c = model.config
    W, H, h = c.window, c.horizon, c.n_heads
    padded = torch.cat([w[-1:], w, w[:1]], 0)  # circular
    z = F.conv1d(padded.T[None], model.embed_weight)[0].T  # (W, d)
    level = w[:, TARGETS]
    growth_sum, season_sum = torch.zeros(H, c.d_model, dtype=w.dtype), torch.zeros(H, c.d_model, dtype=w.dtype)
    act = {"gelu": lambda u: 0.5 * u * (1 + torch.erf(u / math.sqrt(2))), "sigmoid": torch.sigmoid,
           "relu": torch.relu}[c.activation]
    for layer, damping in zip(model.layers, model.damping):
        season = ref_season(z, H, c.top_k, c.topk_band)
        v = z - season[:W]
        g = layer.growth
        u = _lin(v, g.in_proj).view(W, h, -1)
        alpha = torch.sigmoid(g.alpha_logit)[:, None]
        s, prev, rows = g.v0, g.z0, [g.v0]
        for t in range(W):  # s_t = α s_{t−1} + (1 − α)(U_t − U_{t−1})
            s = alpha * s + (1 - alpha) * (u[t] - prev)
            prev = u[t]
            rows.append(s)
        growth = _lin(torch.stack(rows).flatten(1), g.out_proj)  # (W+1, d)
        lv = layer.level
        a = torch.sigmoid(lv.alpha_logit)
        obs = level - _lin(season[:W], lv.season_pred)
        aux = _lin(growth[:W], lv.growth_pred)
        e, rows = lv.e0, []
        for i in range(W):  # E_i = (1 − α)(E_i − L_s S_i) + α(E_{i−1} + L_g B_{i−1})
            e = (1 - a) * obs[i] + a * (e + aux[i])
            rows.append(e)
        level = torch.stack(rows)
        if not layer.last:
            y = _ln(v - growth[1:], layer.norm1)
            z = _ln(y + act(y @ layer.fc1.weight.T) @ layer.fc2.weight.T, layer.norm2)
        phi = torch.sigmoid(damping.phi_logit)
        for step in range(1, H + 1):
            factor = sum(phi**j for j in range(1, step + 1))  # (h,)
            growth_sum[step - 1] += (growth[W].view(h, -1) * factor[:, None]).flatten()
        season_sum += season[W:]
    return level[-1] + _lin(growth_sum, model.pred) + _lin(season_sum, model.pred)


# -- the DFT, Frequency Attention, the smoothing matrices -------------------------------------------------------

@pytest.mark.parametrize("W", [12, 47, 48, 96])
def test_dft_matrices_are_the_rfft_and_its_extrapolating_inverse(W):
    H = 7
    cos_a, sin_a, cos_s, sin_s = dft_matrices(W, H)
    Fn = n_frequencies(W)
    assert cos_a.shape == (Fn, W) and cos_s.shape == (W + H, Fn) and Fn == (W // 2 - 1 if W % 2 == 0 else W // 2)
    x = torch.randn(W, 5, dtype=torch.float64)
    X = torch.fft.rfft(x, dim=0)
    assert (torch.complex(cos_a @ x, -(sin_a @ x)) - X[1 : Fn + 1]).abs().max() <= 1e-12
    # synthesis of every frequency: x without its DC (and Nyquist) component, periodic beyond the window
    keep = X.clone()
    keep[0] = 0
    if W % 2 == 0:
        keep[-1] = 0
    inner = torch.fft.irfft(keep, n=W, dim=0)
    y = cos_s @ (cos_a @ x) + sin_s @ (sin_a @ x)  # (W+H, 5)
    assert (y[:W] - inner).abs().max() <= 1e-12
    assert (y[W:] - inner[:H]).abs().max() <= 1e-12


def test_dft_matrices_stay_float64_exact_through_dtype_casts():
    """The module builds them in float32 (the default dtype); .double() recomputes them from the closed form."""
    fa = FrequencyAttention(48, 4, 2)
    assert fa.cos_a.dtype == torch.float32
    fa = fa.double()
    for got, want in zip((fa.cos_a, fa.sin_a, fa.cos_s, fa.sin_s), dft_matrices(48, 4)):
        assert got.dtype == torch.float64 and torch.equal(got, want)
    assert "cos_a" not in fa.state_dict()  # derived from the config, not saved


@pytest.mark.parametrize("W,k,band", [(12, 2, 0.0), (48, 2, 0.0), (47, 3, 0.0), (48, 3, 0.2), (12, 5, 0.2)])
def test_frequency_attention_equals_the_fft_reference(W, k, band):
    fa = FrequencyAttention(W, HORIZON, k, band).double()
    z = torch.randn(6, W, 8, dtype=torch.float64)
    got = fa(z)
    assert got.shape == (6, W + HORIZON, 8)
    for n in range(6):
        assert (got[n] - ref_season(z[n], HORIZON, k, band)).abs().max() <= 1e-12


def test_frequency_attention_keeps_the_strongest_sinusoids_and_extrapolates_them_periodically():
    W, H = 24, 30
    tau = torch.arange(W + H, dtype=torch.float64)[:, None]
    wave = 2.0 * torch.cos(2 * math.pi * 3 * tau / W + 0.4) + 0.7 * torch.sin(2 * math.pi * 7 * tau / W)  # (W+H, 1)
    z = (wave + 0.05 * torch.cos(2 * math.pi * 5 * tau / W) + 1.5)[:W].unsqueeze(0)  # + a weak tone, a DC level
    fa = FrequencyAttention(W, H, 2).double()
    assert (fa(z)[0] - wave).abs().max() <= 1e-12  # the two strong tones, no DC, continued beyond W
    fa3 = FrequencyAttention(W, H, 3).double()
    assert (fa3(z)[0] - wave - 0.05 * torch.cos(2 * math.pi * 5 * tau / W)).abs().max() <= 1e-12


def test_tie_band_selection():
    """Powers separated by more than band · p_k: exactly torch.topk's selection. Closer: the k-th and the next share
    the last place continuously (½ each at a tie), so rounding cannot flip the selection."""
    fa = FrequencyAttention(12, HORIZON, 2, band=0.1).double()
    hard = FrequencyAttention(12, HORIZON, 2, band=0.0).double()
    p = torch.tensor([5.0, 1.0, 3.0, 0.5, 2.0], dtype=torch.float64)[None, :, None]  # gap 3 → 2: 1 > 0.1 · 3
    assert torch.equal(fa.selection(p), hard.selection(p))
    assert fa.selection(p).flatten().tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    for second in (2.0, 2.0 + 1e-9, 2.0 - 1e-9, 2.1, 1.9):
        q = p.clone()
        q[0, 2, 0] = second  # the 2nd strongest against the 3rd (2.0)
        w = fa.selection(q).flatten()
        assert w[0] == 1.0 and w[1] == w[3] == 0.0
        gap = second - 2.0
        expect = 0.5 + 0.5 * gap / (0.1 * max(second, 2.0) + BAND_FLOOR)
        assert abs(w[2] - expect) <= 1e-12 and abs(w[4] - (1 - expect)) <= 1e-12
    assert torch.equal(fa.selection(torch.zeros(1, 5, 3)), torch.full((1, 5, 3), 0.5))  # all-zero: finite


def test_smoothing_matrices_are_the_exponential_smoothing_recursion():
    W = 9
    i = torch.arange(W)
    lag = (i[:, None] - i[None, :]).clamp_min(0).double()
    causal = (i[:, None] >= i[None, :]).double()
    logit = torch.tensor([-1.3, 0.2, 2.5], dtype=torch.float64)
    A, G, a = smoothing_matrices(logit, lag, causal)
    v, s0 = torch.randn(3, W, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    alpha = torch.sigmoid(logit)
    s, rows = s0, []
    for t in range(W):
        s = alpha * s + (1 - alpha) * v[:, t]
        rows.append(s)
    assert rel_err((A @ v[..., None])[..., 0] + a * s0[:, None], torch.stack(rows, 1)) <= 1e-13
    want_G = alpha[:, None, None] ** (lag + 1) * causal
    assert rel_err(G, want_G) <= 1e-13
    extreme = torch.tensor([-60.0, 60.0], dtype=torch.float64, requires_grad=True)  # α ≈ 1e-26 and 1 − 1e-26
    out = smoothing_matrices(extreme, lag, causal)
    sum(t.sum() for t in out).backward()
    assert all(torch.isfinite(t).all() for t in out) and torch.isfinite(extreme.grad).all()


def test_damping_factors_are_the_damped_trend_sums():
    model = small()
    for damping in model.damping:
        phi = torch.sigmoid(damping.phi_logit)
        h = torch.arange(1, HORIZON + 1, dtype=torch.float64)[:, None]
        assert rel_err(damping.factors(), phi * (1 - phi**h) / (1 - phi)) <= 1e-13


# -- the model --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [{"topk_band": 0.0}, {}, {"activation": "sigmoid", "top_k": 5, "n_layers": 3}],
                         ids=["hard-topk", "default", "sigmoid-all-freqs-3-layers"])
def test_forward_equals_reference_formula_on_explicit_windows(kw):
    model = small(**kw)
    W = model.config.window
    B, L = 2, W + 10
    x = torch.randn(B, L, D_IN, dtype=torch.float64)
    ring = torch.randn(B, W - 1, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        y_state, (ring_out,) = model.forward_with_state(x, (ring,))
        for b in range(B):
            zero_hist = torch.cat([torch.zeros(W - 1, D_IN, dtype=torch.float64), x[b]], 0)  # (W−1+L, D)
            ring_hist = torch.cat([ring[b], x[b]], 0)
            for t in [0, 3, W - 2, W - 1, L - 1]:
                assert (y[b, t] - ref_etsformer(model, zero_hist[t : t + W])).abs().max() <= 1e-12
                assert (y_state[b, t] - ref_etsformer(model, ring_hist[t : t + W])).abs().max() <= 1e-12
    assert torch.equal(ring_out, x[:, L - W + 1 :])


def test_level_only_is_nested_simple_exponential_smoothing():
    """Without growth, season and forecast heads (all zero) the forecast is flat: the last level, the targets'
    inputs smoothed by each layer's level smoothing in turn (E^n_i = (1 − α_n) E^{n−1}_i + α_n E^n_{i−1})."""
    model = small()
    with torch.no_grad():
        for mod in [model.pred, *[m for layer in model.layers for m in (layer.level.growth_pred,
                                                                         layer.level.season_pred)]]:
            mod.weight.zero_()
            mod.bias.zero_()
    w = torch.randn(4, model.config.window, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y = model.forecast(w)
    e = w[..., TARGETS]
    for layer in model.layers:
        a, s, rows = torch.sigmoid(layer.level.alpha_logit), layer.level.e0, []
        for i in range(e.shape[1]):
            s = (1 - a) * e[:, i] + a * s
            rows.append(s)
        e = torch.stack(rows, 1)
    assert rel_err(y, e[:, -1:].expand_as(y)) <= 1e-13


def test_a_covariate_changes_the_forecasts_and_the_window_bounds_the_receptive_field():
    model = small()
    W = model.config.window
    cov = next(d for d in range(D_IN) if d not in TARGET_INDEX)
    x = torch.randn(1, 3 * W, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 10, cov] += 1.0  # a covariate at t = 10: only through the embedding
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    changed = (y - y2).abs().amax((0, 2, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))
    assert ((y - y2)[0, 10 : 10 + W].abs().amax(-2) > 1e-9).all()  # both targets, every affected position


def test_zero_windows_stay_finite():
    """The zero state is zero padding: every DFT power is 0 there (ties everywhere); the band's floor keeps it
    finite."""
    model = small()
    x = torch.zeros(2, 5, D_IN, dtype=torch.float64, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    y_t, _ = model.step(torch.zeros(2, D_IN, dtype=torch.float64), model.init_state(2))
    assert rel_err(y_t, y[:, 0].detach()) <= 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(dtype, tol):
    check_window_steps(small(dtype), dtype, tol, 30)


def test_last_window_paths():
    check_last_window_paths(small())


def test_the_step_graph_has_no_fft():
    model = small(torch.float32)
    x, ring = torch.randn(2, D_IN), torch.randn(2, model.config.window - 1, D_IN)
    with torch.no_grad():
        graph = str(torch.jit.trace(StepGraph(model), (x, ring), check_trace=False).inlined_graph)
    assert "fft" not in graph and "complex" not in graph.lower() and "aten::topk" in graph


def param_count(D, d, h, d_ff, K, n_layers):
    embed = 3 * D * d  # Conv1d kernel 3, no bias
    growth = 2 * (d * d + d) + 2 * d + h  # in/out projections, z₀, v₀, α per head
    level = 2 * (d * K + K) + 2 * K  # L_g, L_s, α and e₀ per target
    ff = 2 * d * d_ff + 4 * d  # FF (no biases) and two LayerNorms: every layer but the last
    return embed + n_layers * (growth + level + h) + (n_layers - 1) * ff + (d * K + K)  # + damping φ, P


def test_shapes_and_parameters():
    model = tiny_model("etsformer")
    c = model.config
    assert (c.window, c.d_model, c.n_heads, c.n_layers, c.d_ff, c.top_k) == (48, 8, 2, 2, 16, 2)
    assert sum(p.numel() for p in model.parameters()) == param_count(D_IN, 8, 2, 16, N_TGT, 2) == 786
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (47, D_IN))]
    x = torch.randn(3, 17, D_IN, dtype=torch.float64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, 47, D_IN)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, 47, D_IN)
    # the default size (TSLib's ETTh1 96 → 96: 7 variates, d_model 512, 8 heads, 2 layers, d_ff 2048)
    m = create_model("etsformer", d_input=7, n_targets=7, horizon=96)
    assert sum(p.numel() for p in m.parameters()) == param_count(7, 512, 8, 2048, 7, 2) == 3_180_639
    assert m.state_bytes_per_cell() == 4 * 95 * 7


def test_dropout_only_in_training():
    model = small(dropout=0.3).train()
    x = torch.randn(2, 15, D_IN, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("band", [0.0, 0.2])
def test_gradcheck(band):
    torch.manual_seed(0)
    model = create_model("etsformer", d_input=D_IN, n_targets=N_TGT, horizon=2, target_index=TARGET_INDEX,
                         window=7, d_model=4, n_heads=2, n_layers=2, d_ff=8, top_k=1, topk_band=band,
                         dropout=0.0).double()
    x = torch.randn(1, 3, D_IN, dtype=torch.float64, requires_grad=True)
    ring = torch.randn(1, 6, D_IN, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: model.forward_with_state(x, (r,))[0], (x, ring))
    assert torch.autograd.gradcheck(lambda x, r: model.step(x[:, 0], (r,))[0], (x, ring))
    if band == 0.0:
        return  # through the parameters once (the band only changes the selection's weights)
    names = [n for n, _ in model.named_parameters()]

    def through_params(*ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x.detach(), (ring.detach(),)))

    ps = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(through_params, ps)


def test_config_defaults_and_target_index():
    cfg = ETSformerConfig(d_input=7, n_targets=7)
    assert cfg.target_index == tuple(range(7))
    assert (cfg.window, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff, cfg.top_k, cfg.dropout, cfg.activation) \
        == (96, 512, 8, 2, 2048, 5, 0.1, "gelu")
    assert ETSformerConfig.from_dict(cfg.to_dict()) == cfg
    assert ETSformerConfig(window=7, top_k=3).top_k == 3  # ⌊(7 − 1)/2⌋ = 3 frequencies
    with pytest.raises(ValueError, match="target_index is required"):
        ETSformerConfig(d_input=3, n_targets=2)


@pytest.mark.parametrize("fields,message", [
    ({"window": 2}, "window must be ≥ 3"),
    ({"window": 10, "top_k": 5}, r"top_k must be ≤ ⌊\(window − 1\)/2⌋ = 4"),
    ({"top_k": 0}, "top_k must be ≥ 1"),
    ({"d_model": 0}, "d_model must be ≥ 1"),
    ({"n_heads": 0}, "n_heads must be ≥ 1"),
    ({"n_layers": 0}, "n_layers must be ≥ 1"),
    ({"d_ff": 0}, "d_ff must be ≥ 1"),
    ({"d_model": 12, "n_heads": 8}, "d_model must be a multiple of n_heads"),
    ({"topk_band": -0.1}, r"topk_band must be in \[0, 1\)"),
    ({"topk_band": 1.0}, r"topk_band must be in \[0, 1\)"),
    ({"activation": "tanh"}, "activation must be one of"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"target_index": (0, 5)}, "out of range"),
])
def test_bad_configs_raise(fields, message):
    with pytest.raises(ValueError, match=message):
        ETSformerConfig(**{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
    with pytest.raises(ValueError, match=message):
        create_model("etsformer", **{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
