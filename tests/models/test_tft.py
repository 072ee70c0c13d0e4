"""Temporal Fusion Transformer (models.baselines.tft): the paper's network on explicit windows against a direct
re-implementation (GRNs, GLUs, variable selection, the encoder–decoder LSTM written out cell by cell, interpretable
attention head by head), the interpretability outputs, what the architecture implies (causal over the decoder
positions, a window-bounded receptive field, covariates selected in, the optional normalization's equivariance),
the window streaming contract and the config's checks. The zoo-wide contract runs in test_contract / test_framing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import create_model
from models.baselines.tft import NORM_EPS, InterpretableAttention, TFTConfig, normalize_window
from tests.models.zoo_helpers import (
    D_IN,
    HORIZON,
    N_TGT,
    TARGET_INDEX,
    check_last_window_paths,
    check_window_steps,
    random_state,
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
    """A randomized small TFT (window 10, d_model 8, 2 heads, 2 LSTM layers), in eval mode."""
    cfg = {"window": 10, "d_model": 8, "n_heads": 2, "n_layers": 2, **kw}
    torch.manual_seed(seed)
    m = create_model("tft", d_input=d_input, n_targets=len(target_index), horizon=HORIZON,
                     target_index=target_index, **cfg)
    return randomize(m.to(dtype), seed).eval()


# -- the paper's network, written out one window at a time ----------------------------------------------------
def _lin(x, mod):
    y = x @ mod.weight.T
    return y if mod.bias is None else y + mod.bias


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _glu(x, glu):
    """σ(W₄x + b₄) ⊙ (W₅x + b₅): the value rows first, the gate rows second in glu.proj."""
    n = glu.proj.weight.shape[0] // 2
    value = x @ glu.proj.weight[:n].T + glu.proj.bias[:n]
    gate = x @ glu.proj.weight[n:].T + glu.proj.bias[n:]
    return value / (1.0 + torch.exp(-gate))


def _grn(a, grn):
    """LayerNorm(S a + GLU(W₁ ELU(W₂a + b₂) + b₁)), S = I or the skip map."""
    u = _lin(a, grn.fc_in)
    eta2 = torch.where(u > 0, u, torch.exp(u) - 1.0)  # ELU, α = 1
    eta1 = _lin(eta2, grn.fc_hidden)
    skip = a if grn.skip is None else _lin(a, grn.skip)
    return _layer_norm(skip + _glu(eta1, grn.glu), grn.norm)


def _gated_skip(u, s, mod):
    return _layer_norm(s + _glu(u, mod.glu), mod.norm)


def _softmax(z):
    e = torch.exp(z - z.max())
    return e / e.sum()


def _lstm(lstm, inputs, h, c):
    """nn.LSTM's equations cell by cell (gate order i, f, g, o): inputs (T, d), per-layer lists h, c → (T, d)."""
    h, c, outs = list(h), list(c), []
    for u in inputs:
        for k in range(lstm.num_layers):
            gates = (getattr(lstm, f"weight_ih_l{k}") @ u + getattr(lstm, f"bias_ih_l{k}")
                     + getattr(lstm, f"weight_hh_l{k}") @ h[k] + getattr(lstm, f"bias_hh_l{k}"))
            i, f, g, o = gates.chunk(4)
            sig = lambda z: 1.0 / (1.0 + torch.exp(-z))  # noqa: E731
            c[k] = sig(f) * c[k] + sig(i) * torch.tanh(g)
            h[k] = sig(o) * torch.tanh(c[k])
            u = h[k]
        outs.append(u)
    return torch.stack(outs), h, c


def ref_tft(model, w: torch.Tensor):
    """The TFT on one explicit window w (W, D), oldest first → forecasts (H, K), selection weights (W, D),
    head-averaged attention (H, W + H)."""
    c = model.config
    W, D, d, H = c.window, c.d_input, c.d_model, c.horizon
    if c.use_norm:
        mu = w.mean(0)
        sigma = torch.sqrt(((w - mu) ** 2).mean(0) + model.eps)
        w = (w - mu) / sigma
    sel = model.selection
    past, weights = [], []
    for tau in range(W):
        xi = [w[tau, j] * sel.embed_weight[j] + sel.embed_bias[j] for j in range(D)]  # each variable's own map
        v = _softmax(_grn(torch.cat(xi), sel.select))  # (D,)
        past.append(sum(v[j] * _grn(xi[j], sel.grns[j]) for j in range(D)))
        weights.append(v)
    past = torch.stack(past)  # (W, d)
    future = model.future_embed  # (H, d): the decoder reads the learned embedding of each future position
    zeros = [torch.zeros(d, dtype=w.dtype)] * c.n_layers
    phi_past, h, cell = _lstm(model.encoder, past, zeros, zeros)  # the encoder starts from zero
    phi_future, _, _ = _lstm(model.decoder, future, h, cell)  # the decoder from the encoder's final state
    phi = _gated_skip(torch.cat([phi_past, phi_future]), torch.cat([past, future]), model.lstm_skip)
    theta = _grn(phi, model.enrichment)  # (W+H, d)
    att = model.attention
    dh = d // c.n_heads
    values = theta @ att.value.weight.T  # (W+H, dh): one value map for every head
    avg = torch.zeros(H, W + H, dtype=w.dtype)
    for i in range(c.n_heads):
        rows = slice(i * dh, (i + 1) * dh)
        q = theta[W:] @ att.query.weight[rows].T  # (H, dh)
        k = theta @ att.key.weight[rows].T  # (W+H, dh)
        for n in range(H):
            p = W + n  # the query's position: it sees keys 0 … p
            avg[n, : p + 1] += _softmax(k[: p + 1] @ q[n] / math.sqrt(dh)) / c.n_heads
    beta = (avg @ values) @ att.out.weight.T  # (H, d)
    delta = _gated_skip(beta, theta[W:], model.attention_skip)
    psi = _gated_skip(_grn(delta, model.positionwise), phi[W:], model.final_skip)
    y = _lin(psi, model.head)  # (H, K)
    if c.use_norm:
        cols = list(c.target_index)
        y = y * sigma[cols] + mu[cols]
    return y, torch.stack(weights), avg


@pytest.mark.parametrize("use_norm", [False, True])
def test_forward_equals_the_paper_formula_on_explicit_windows(use_norm):
    model = small(use_norm=use_norm)
    W = model.config.window
    B, L = 2, W + 6
    x = torch.randn(B, L, D_IN, dtype=torch.float64)
    ring = torch.randn(B, W - 1, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        y_state, (ring_out,) = model.forward_with_state(x, (ring,))
        v_last, a_last = model.variable_importance(x, (ring,)), model.attention_weights(x, (ring,))
        for b in range(B):
            zero_hist = torch.cat([torch.zeros(W - 1, D_IN, dtype=torch.float64), x[b]])  # (W−1+L, D)
            ring_hist = torch.cat([ring[b], x[b]])
            for t in (0, 3, W - 2, W - 1, L - 1):
                assert (y[b, t] - ref_tft(model, zero_hist[t : t + W])[0]).abs().max() <= 1e-12
                assert (y_state[b, t] - ref_tft(model, ring_hist[t : t + W])[0]).abs().max() <= 1e-12
            _, v_ref, a_ref = ref_tft(model, ring_hist[L - 1 : L - 1 + W])
            assert (v_last[b] - v_ref).abs().max() <= 1e-12 and (a_last[b] - a_ref).abs().max() <= 1e-12
    assert torch.equal(ring_out, torch.cat([ring, x], 1)[:, L:])


def test_normalize_window():
    w = 3.0 + 2.0 * torch.randn(4, 20, 3, dtype=torch.float64)
    z, mu, sigma = normalize_window(w)
    assert torch.allclose(mu[:, 0], w.mean(1)) and torch.allclose(sigma[:, 0] ** 2, w.var(1, unbiased=False) + 1e-5)
    assert torch.allclose(z * sigma + mu, w, atol=1e-13, rtol=0)
    z0, _, sigma0 = normalize_window(torch.zeros(2, 5, 3))  # the zero state's window: finite
    assert torch.equal(z0, torch.zeros(2, 5, 3)) and torch.allclose(sigma0, torch.full((2, 1, 3), NORM_EPS**0.5))


# -- interpretability -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_norm", [False, True])
def test_interpretability_outputs_are_normalized_weights(use_norm):
    """variable_importance: (B, W, D_in) softmax weights per window position; attention_weights: (B, H, W + H),
    each forecast position's head-averaged attention, a distribution over the positions up to itself."""
    model = small(use_norm=use_norm)
    W, H = model.config.window, HORIZON
    x = torch.randn(3, 25, D_IN, dtype=torch.float64)
    with torch.no_grad():
        v = model.variable_importance(x)
        a = model.attention_weights(x, random_state(model, 3))
    assert v.shape == (3, W, D_IN) and a.shape == (3, H, W + H)
    assert (v > 0).all() and torch.allclose(v.sum(-1), torch.ones(3, W, dtype=torch.float64), atol=1e-14, rtol=0)
    assert torch.allclose(a.sum(-1), torch.ones(3, H, dtype=torch.float64), atol=1e-14, rtol=0)
    for n in range(H):  # forecast position t + n + 1 sits at W + n: it sees 0 … W + n, nothing after
        after = a[:, n, W + n + 1 :]
        assert (a[:, n, : W + n + 1] > 0).all() and torch.equal(after, torch.zeros_like(after))
    with torch.no_grad():  # the last window of x, however long x is
        assert torch.equal(model.variable_importance(x[:, -W:]), v)


def test_interpretable_attention_averages_heads_over_shared_values():
    """Ã V W_H with Ã the mean of the heads' weights equals the mean of the heads' outputs A_h V W_H: the paper's
    H̃ = (1/m_H) Σ_h A_h V W_V; one value map of width d_model / n_heads serves every head."""
    torch.manual_seed(0)
    att = InterpretableAttention(8, 4, 0.0).double().eval()
    assert att.value.weight.shape == (2, 8) and att.out.weight.shape == (8, 2)
    assert all(m.bias is None for m in (att.query, att.key, att.value, att.out))
    q, kv = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 7, 8, dtype=torch.float64)
    mask = torch.zeros(5, 7, dtype=torch.float64)
    mask[0, 4:] = float("-inf")
    out, avg = att(q, kv, mask)
    heads = []
    for i in range(4):
        rows = slice(2 * i, 2 * i + 2)
        scores = (q @ att.query.weight[rows].T) @ (kv @ att.key.weight[rows].T).transpose(1, 2) / math.sqrt(2)
        heads.append(torch.softmax(scores + mask, -1))
    assert torch.allclose(avg, torch.stack(heads).mean(0), atol=1e-14, rtol=0)
    per_head = torch.stack([h @ att.value(kv) @ att.out.weight.T for h in heads]).mean(0)
    assert torch.allclose(out, per_head, atol=1e-13, rtol=0)
    assert torch.equal(avg[:, 0, 4:], torch.zeros(3, 3, dtype=torch.float64))


# -- what the architecture implies ----------------------------------------------------------------------------
def test_forecast_step_n_depends_on_the_decoder_inputs_up_to_n_only():
    """The decoder LSTM runs forward over the future positions and the attention is causal, everything else is
    position-wise: the forecast for t + n reads the decoder embeddings e_1 … e_n, never a later one."""
    model = small()
    x = torch.randn(2, 15, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        for n in range(HORIZON):
            other = small()
            other.future_embed[n] += 1.0
            y2 = other(x)
            assert torch.equal(y2[:, :, :n], y[:, :, :n])
            assert ((y2[:, :, n:] - y[:, :, n:]).abs().amax((0, 1, 3)) > 1e-6).all()


@pytest.mark.parametrize("use_norm", [False, True])
def test_a_covariate_is_selected_into_every_forecast(use_norm):
    """Variable selection mixes every input column: a column that is no target moves both targets' forecasts, at
    every position (with use_norm from t = 1: the first window holds one non-zero value per column, which the
    normalization maps to ±√(W − 1) whatever its size)."""
    model = small(use_norm=use_norm)
    cov = next(d for d in range(D_IN) if d not in TARGET_INDEX)
    x = torch.randn(2, 20, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[..., cov] += torch.randn(2, 20, dtype=torch.float64)
    with torch.no_grad():
        changed = (model(x) - model(x2)).abs().amax(2) > 1e-6  # (B, L, K)
    assert changed[:, int(use_norm) :].all()


def test_window_bounds_the_receptive_field():
    """The LSTMs restart at each window's first input: an input reaches exactly the W forecasts whose window holds
    it."""
    for use_norm in (False, True):
        model = small(use_norm=use_norm)
        W = model.config.window
        x = torch.randn(1, 3 * W, D_IN, dtype=torch.float64)
        x2 = x.clone()
        x2[:, 10, 1] += 1.0
        with torch.no_grad():
            changed = (model(x) - model(x2)).abs().amax((0, 2, 3)) > 0
        assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))


def test_window_normalization_makes_forecasts_shift_equivariant():
    """use_norm: shifting every input column (state included) by its own constant shifts each target's forecasts by
    its column's constant, exactly; scaling too, up to ε in σ (exact with ε = 0). The paper's network (no window
    normalization, use_norm=False) is not equivariant."""
    model = small(use_norm=True)
    W, cols = model.config.window, list(TARGET_INDEX)
    x = torch.randn(2, 20, D_IN, dtype=torch.float64)
    ring = torch.randn(2, W - 1, D_IN, dtype=torch.float64)

    def gap(m, a, b):
        a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        with torch.no_grad():
            y = m.forward_with_state(x, (ring,))[0]
            y_mapped = m.forward_with_state(a * x + b, (a * ring + b,))[0]
        return rel_err(y_mapped, a[cols] * y + b[cols])

    shift, affine = ([1.0, 1.0, 1.0], [-3.0, 5.0, 0.7]), ([2.5, 0.3, 7.0], [-1.0, 4.0, 0.5])
    assert gap(model, *shift) <= 1e-12
    assert 1e-12 < gap(model, *affine) <= 1e-3
    model.eps = 0.0
    assert gap(model, *affine) <= 1e-12
    raw = small(use_norm=False)
    assert gap(raw, *shift) > 1e-2


# -- streaming ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_norm", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(dtype, tol, use_norm):
    check_window_steps(small(dtype, use_norm=use_norm), dtype, tol, 25)


@pytest.mark.parametrize("use_norm", [False, True])
def test_last_window_paths(use_norm):
    check_last_window_paths(small(use_norm=use_norm))


def test_zero_windows_stay_finite():
    """The zero state is zero padding; with use_norm an all-zero window divides by √ε, not by 0."""
    for use_norm in (False, True):
        model = small(use_norm=use_norm)
        x = torch.zeros(2, 4, D_IN, dtype=torch.float64, requires_grad=True)
        y = model(x)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


# -- sizes -------------------------------------------------------------------------------------------------
def param_count(D, K, H, d, n_heads, n_layers):
    dh = d // n_heads
    grn = (d * d + d) * 2 + (d * 2 * d + 2 * d) + 2 * d  # W₂, W₁, the GLU (2d outputs), LayerNorm
    select = (D * d * d + d) + (d * d + d) + (d * 2 * D + 2 * D) + (D * d * D + D) + 2 * D  # + skip D·d → D
    gated_skip = (d * 2 * d + 2 * d) + 2 * d
    lstm = n_layers * (4 * d * d + 4 * d * d + 8 * d)  # W_ih, W_hh, b_ih, b_hh per layer
    attention = 2 * d * d + d * dh + dh * d  # W_Q, W_K (every head), W_V (shared), W_H; no biases
    return (2 * D * d + select + D * grn  # variable selection: D linear maps, the selection GRN, D GRNs
            + H * d + 2 * lstm + 3 * gated_skip + 2 * grn + attention + (d * K + K))


def test_shapes_state_and_parameters():
    model = tiny_model("tft")
    c = model.config
    assert (c.window, c.d_model, c.n_heads, c.n_layers, c.dropout, c.use_norm) == (48, 8, 2, 2, 0.1, True)
    assert sum(p.numel() for p in model.parameters()) == param_count(D_IN, N_TGT, HORIZON, 8, 2, 2) == 5001
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (47, D_IN))]
    assert model.state_bytes_per_cell() == 4 * 47 * D_IN
    x = torch.randn(3, 17, D_IN, dtype=torch.float64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, 47, D_IN)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, 47, D_IN)
    # the default (ETTh1: 7 inputs, all targets, W = H = 96): d_model 64, 4 heads, 1 LSTM layer
    default = create_model("tft", d_input=7, n_targets=7, horizon=96)
    assert sum(p.numel() for p in default.parameters()) == param_count(7, 7, 96, 64, 4, 1) == 297_514
    assert default.state_bytes_per_cell() == 4 * 95 * 7


def test_forget_gates_start_open_and_the_mask_is_causal():
    model = tiny_model("tft")
    d = model.config.d_model
    for lstm in (model.encoder, model.decoder):
        for k in range(model.config.n_layers):
            b = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
            assert torch.equal(b[d : 2 * d], torch.ones(d, dtype=b.dtype))
    W, H = model.config.window, HORIZON
    mask = model.causal_mask
    assert mask.shape == (H, W + H) and "causal_mask" not in model.state_dict()
    assert torch.equal(torch.isinf(mask), torch.arange(W + H) > torch.arange(W, W + H).unsqueeze(-1))


def test_future_embedding_is_not_decayed():
    model = tiny_model("tft", torch.float32)
    groups = {g["group"]: g for g in model.param_groups(lr=1e-3, weight_decay=0.1)}
    assert any(p is model.future_embed for p in groups["no_decay"]["params"])
    assert not any(p is model.future_embed for p in groups["decay"]["params"])
    assert any(p is model.head.weight for p in groups["decay"]["params"])


def test_state_and_step_cost_grow_with_the_window():
    flops = []
    for W in (8, 16, 32):
        model = tiny_model("tft", torch.float32, window=W)
        assert model.state_bytes_per_cell() == 4 * (W - 1) * D_IN
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.step(torch.randn(1, D_IN), model.init_state(1))
        flops.append(counter.get_total_flops())
    assert all(b > a for a, b in itertools.pairwise(flops)), flops
    assert flops[-1] > 2.5 * flops[0]  # the LSTMs restart at the window's start: (about) linear in W


def test_dropout_only_in_training():
    model = small(dropout=0.3).train()
    x = torch.randn(2, 15, D_IN, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


@pytest.mark.slow  # minutes of float64 finite differences; the contract tests cover the gradients' use
def test_gradcheck():
    for use_norm in (False, True):
        model = create_model("tft", d_input=D_IN, n_targets=N_TGT, horizon=2, target_index=TARGET_INDEX,
                             window=5, d_model=4, n_heads=2, n_layers=1, dropout=0.0, use_norm=use_norm).double()
        x = torch.randn(1, 3, D_IN, dtype=torch.float64, requires_grad=True)
        ring = torch.randn(1, 4, D_IN, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, r, m=model: m.forward_with_state(x, (r,))[0], (x, ring))
        assert torch.autograd.gradcheck(lambda x, r, m=model: m.step(x[:, 0], (r,))[0], (x, ring))
    # through one parameter of each kind of piece (all of them would take long): input maps, a GRN, both LSTMs,
    # the decoder embedding, attention, the output layer
    names = ["selection.embed_weight", "selection.grns.1.fc_in.weight", "encoder.weight_hh_l0",
             "decoder.weight_ih_l0", "future_embed", "attention.key.weight", "final_skip.glu.proj.bias", "head.weight"]
    params = dict(model.named_parameters())

    def through_params(*ps):
        return torch.func.functional_call(model, {**params, **dict(zip(names, ps))}, (x.detach(),))

    ps = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(through_params, ps)


# -- config ------------------------------------------------------------------------------------------------
def test_config_defaults_and_target_index():
    cfg = TFTConfig(d_input=7, n_targets=7)
    assert cfg.target_index == tuple(range(7))
    assert (cfg.window, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.dropout, cfg.use_norm) == (96, 64, 4, 1, 0.1, True)
    assert TFTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="target_index is required"):
        TFTConfig(d_input=3, n_targets=2)


@pytest.mark.parametrize("fields,message", [
    ({"window": 1}, "window must be ≥ 2"),
    ({"d_model": 0}, "d_model must be ≥ 1"),
    ({"n_heads": 0}, "n_heads must be ≥ 1"),
    ({"n_layers": 0}, "n_layers must be ≥ 1"),
    ({"d_model": 12, "n_heads": 8}, "n_heads must divide d_model"),
    ({"use_norm": 1}, "use_norm must be true or false"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"target_index": (0, 5)}, "out of range"),
])
def test_bad_configs_raise(fields, message):
    with pytest.raises(ValueError, match=message):
        TFTConfig(**{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
    with pytest.raises(ValueError, match=message):
        create_model("tft", **{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
