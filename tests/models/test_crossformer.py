"""Crossformer (models.baselines.crossformer): the formula on explicit windows against a direct re-implementation
(front padding, segment merging with end padding, the two-stage attention, the hierarchical decoder), what the
design implies (the routers are the only path between variates and keep the cross-dimension cost linear in D),
the window streaming contract and the config's checks. The zoo-wide contract runs in test_contract / test_framing."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import create_model
from models.baselines.crossformer import CrossformerConfig, SegmentMerge, TwoStageAttention, segment_counts
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

EPS = 1e-5  # LayerNorm's ε


def randomize(model, seed: int = 0):
    """Random weights everywhere (LayerNorm gains around 1), so the formula tests see every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if name.endswith(("router", "enc_pos", "dec_pos")):
                p.copy_(r)
            elif p.ndim >= 2:
                p.copy_(r / math.sqrt(p.shape[-1]))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * r)
            else:
                p.copy_(0.3 * r)
    return model


SMALL = {"window": 22, "seg_len": 4, "n_layers": 3, "win_size": 2, "factor": 2, "horizon": 6}  # pads 2 in front,
# segments 6, 6, 3, 2 (the last merge pads), 2 output segments of which 6 of 8 values are kept


def small(dtype=torch.float64, seed=0, **kw):
    """A randomized small Crossformer (d_model 8, 2 heads, d_ff 16), in eval mode."""
    cfg = {**SMALL, "d_model": 8, "n_heads": 2, "d_ff": 16, **kw}
    torch.manual_seed(seed)
    m = create_model("crossformer", d_input=D_IN, n_targets=N_TGT, target_index=TARGET_INDEX, **cfg)
    return randomize(m.to(dtype), seed).eval()


# -- an independent computation of the formula, one window, one token at a time -------------------------------
def ref_linear(lin, x):
    return x @ lin.weight.T + lin.bias


def ref_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS) * ln.weight + ln.bias


def ref_mlp(mlp, x):
    u = ref_linear(mlp[0], x)
    u = 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))  # exact GELU
    return ref_linear(mlp[2], u)


def ref_attention(att, q_in, kv_in):
    """Multi-head attention of queries q_in (Lq, d) on keys / values kv_in (S, d), head by head."""
    q, k, v = ref_linear(att.query, q_in), ref_linear(att.key, kv_in), ref_linear(att.value, kv_in)
    dh = att.d_head
    heads = []
    for i in range(att.n_heads):
        s = slice(i * dh, (i + 1) * dh)
        scores = q[:, s] @ k[:, s].T / math.sqrt(dh)
        weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
        heads.append(weights / weights.sum(-1, keepdim=True) @ v[:, s])
    return ref_linear(att.out, torch.cat(heads, -1))


def ref_tsa(tsa, h):
    """Two-stage attention on h (D, N, d): over time per variate, then through the routers per segment."""
    D, N = h.shape[0], h.shape[1]
    a = []
    for d in range(D):  # cross-time stage
        x = ref_norm(h[d] + ref_attention(tsa.time_attention, h[d], h[d]), tsa.norm1)
        a.append(ref_norm(x + ref_mlp(tsa.mlp1, x), tsa.norm2))
    a = torch.stack(a)  # (D, N, d)
    out = []
    for i in range(N):  # cross-dimension stage
        s = a[:, i]  # (D, d): the variates at segment i
        buffer = ref_attention(tsa.dim_sender, tsa.router[i], s)  # (c, d): the routers gather from the variates
        o = ref_norm(s + ref_attention(tsa.dim_receiver, s, buffer), tsa.norm3)  # the variates receive
        out.append(ref_norm(o + ref_mlp(tsa.mlp2, o), tsa.norm4))
    return torch.stack(out, 1)  # (D, N, d)


def ref_merge(merge, h, win):
    """The reference's merge: the last segments repeated up to a multiple of win, then the strided slices
    h[:, j::win] side by side, LayerNorm, linear."""
    N = h.shape[1]
    if N % win:
        pad = win - N % win
        h = torch.cat([h, h[:, N - pad :]], 1)
    h = torch.cat([h[:, j::win] for j in range(win)], -1)  # (D, ⌈N/win⌉, win·d)
    return ref_linear(merge.linear, ref_norm(h, merge.norm))


def ref_crossformer(model, w):
    """The paper's Crossformer (the authors' code) on one explicit window per variate: w (D, W) → (H, K)."""
    c = model.config
    D, S = w.shape[0], c.seg_len
    n_in = math.ceil(c.window / S)
    rows = [[w[d, 0].item()] * (n_in * S - c.window) + w[d].tolist() for d in range(D)]  # first value in front
    padded = torch.tensor(rows, dtype=w.dtype)  # (D, N₀·S)
    h = torch.stack([torch.stack([ref_linear(model.embed, padded[d, i * S : (i + 1) * S]) for i in range(n_in)])
                     for d in range(D)])  # (D, N₀, d)
    h = ref_norm(h + model.enc_pos, model.pre_norm)
    enc = [h]
    for layer, scale in enumerate(model.encoder):
        if layer > 0:
            h = ref_merge(scale.merge, h, c.win_size)
        h = ref_tsa(scale.tsa, h)
        enc.append(h)
    x, y = model.dec_pos, 0.0
    for layer, cross in zip(model.decoder, enc):
        x = ref_tsa(layer.tsa, x)
        x = torch.stack([ref_norm(x[d] + ref_attention(layer.cross_attention, x[d], cross[d]), layer.norm1)
                         for d in range(D)])
        x = ref_norm(x + ref_mlp(layer.mlp, x), layer.norm2)
        y = y + ref_linear(layer.predict, x)  # (D, N_out, S): each output segment's values, summed over scales
    y = y.reshape(D, -1)[:, : c.horizon]  # the first H of the N_out·S values
    return y[list(c.target_index)].T  # (H, K)


CONFIGS = {
    "pad-merge-pad": {},
    "win3": {"window": 26, "seg_len": 4, "win_size": 3, "n_layers": 3, "horizon": 5},  # 7, 7, 3, 1 segments
    "exact": {"window": 24, "seg_len": 4, "n_layers": 2, "horizon": 8, "factor": 1},  # no padding anywhere
}


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_forward_equals_reference_formula_on_explicit_windows(cfg):
    model = small(**cfg)
    W = model.config.window
    B, L = 2, W + 6
    x = torch.randn(B, L, D_IN, dtype=torch.float64)
    ring = torch.randn(B, D_IN, W - 1, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        y_state, (ring_out,) = model.forward_with_state(x, (ring,))
        assert y.shape == (B, L, model.config.horizon, N_TGT)
        for b in range(B):
            zero_hist = torch.cat([torch.zeros(D_IN, W - 1, dtype=torch.float64), x[b].T], -1)  # (D, W−1+L)
            ring_hist = torch.cat([ring[b], x[b].T], -1)
            for t in (0, W - 2, W - 1, L - 1):
                assert (y[b, t] - ref_crossformer(model, zero_hist[:, t : t + W])).abs().max() <= 1e-12
                assert (y_state[b, t] - ref_crossformer(model, ring_hist[:, t : t + W])).abs().max() <= 1e-12
    assert torch.equal(ring_out, x.transpose(1, 2)[..., L - W + 1 :])


def test_segment_counts_padding_and_merging():
    assert segment_counts(96, 12, 2, 2) == [8, 8, 4]  # the default: 8 segments, then 4 after one merge
    assert segment_counts(22, 4, 3, 2) == [6, 6, 3, 2]
    assert segment_counts(26, 4, 3, 3) == [7, 7, 3, 1]
    assert segment_counts(48, 12, 2, 2) == [4, 4, 2]  # the zoo's tiny size
    model = small()
    assert model.counts == [6, 6, 3, 2] and model.n_out == 2
    w = torch.randn(3, D_IN, 22, dtype=torch.float64)
    assert torch.equal(w[..., model.pad_index], torch.cat([w[..., :1], w[..., :1], w], -1))  # front padding
    assert small(window=24).pad_index is None
    for n, win in [(4, 2), (5, 2), (7, 3), (8, 3), (3, 3), (1, 2)]:
        merge = randomize(SegmentMerge(D_IN, n, 8, win).double())
        h = torch.randn(2, D_IN, n, 8, dtype=torch.float64)
        with torch.no_grad():
            out = merge(h)
            ref = torch.stack([ref_merge(merge, h[i], win) for i in range(2)])
        assert out.shape == (2, D_IN, math.ceil(n / win), 8) and rel_err(out, ref) <= 1e-13


def test_the_routers_are_the_only_path_between_variates():
    """Every other part acts per variate (embedding, cross-time attention, merging, the decoder's cross-attention):
    with the receivers' outputs zeroed in every TSA layer, a covariate no longer moves any target's forecast;
    with them, it moves every target's forecast at every position."""
    model = small()
    cov = next(d for d in range(D_IN) if d not in TARGET_INDEX)
    x = torch.randn(2, 30, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[..., cov] += torch.randn(2, 30, dtype=torch.float64)
    with torch.no_grad():
        y, y2 = model(x), model(x2)
        assert ((y - y2).abs().amax(2) > 1e-6).all()  # every position, every target
        tsas = [m for m in model.modules() if isinstance(m, TwoStageAttention)]
        assert len(tsas) == 3 + 4  # one per encoder scale, one per decoder layer
        for tsa in tsas:
            tsa.dim_receiver.out.weight.zero_()
            tsa.dim_receiver.out.bias.zero_()
        y, y2 = model(x), model(x2)
    assert (y - y2).abs().max() <= 1e-13


def test_cross_dimension_cost_is_linear_in_the_number_of_variates():
    """c routers per segment: gathering and distributing cost O(D·c), so a TSA layer's multiply-adds are affine in D
    (the routers' own query projection is the constant; full attention across the variates would add a D² term)."""
    flops = []
    for D in (2, 8, 32):
        tsa = TwoStageAttention(D, 4, 3, 8, 2, 16, 0.0).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            tsa(torch.randn(1, D, 4, 8))
        flops.append(counter.get_total_flops())
    assert flops[2] - flops[1] == 4 * (flops[1] - flops[0])  # D: 2 → 8 → 32, steps of 6 and 24
    assert flops[0] < flops[1] < flops[2]


def test_window_bounds_the_receptive_field():
    model = small()
    W = model.config.window
    x = torch.randn(1, 3 * W, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 10, 1] += 1.0  # a covariate at t = 10
    with torch.no_grad():
        changed = (model(x) - model(x2)).abs().amax((0, 2, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(dtype, tol):
    check_window_steps(small(dtype), dtype, tol, 40)


def test_last_window_paths():
    check_last_window_paths(small())


def param_count(D, W, S, H, d, d_ff, n_layers, factor, win=2):
    counts = segment_counts(W, S, n_layers, win)
    n_out = math.ceil(H / S)
    attention = 4 * (d * d + d)
    mlp = (d * d_ff + d_ff) + (d_ff * d + d)

    def tsa(n):
        return 3 * attention + n * factor * d + 4 * 2 * d + 2 * mlp

    embedding = (S * d + d) + D * counts[0] * d + 2 * d
    encoder = tsa(counts[1]) + sum(2 * win * d + (win * d * d + d) + tsa(n) for n in counts[2:])
    decoder_layer = tsa(n_out) + attention + 2 * 2 * d + 2 * (d * d + d) + (d * S + S)
    return embedding + encoder + D * n_out * d + (n_layers + 1) * decoder_layer


def test_shapes_and_parameters():
    model = tiny_model("crossformer")
    c = model.config
    assert (c.window, c.seg_len, c.d_model, c.n_heads, c.n_layers, c.d_ff, c.factor) == (48, 12, 8, 2, 2, 16, 3)
    assert sum(p.numel() for p in model.parameters()) == param_count(D_IN, 48, 12, HORIZON, 8, 16, 2, 3)
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (D_IN, 47))]
    x = torch.randn(3, 17, D_IN, dtype=torch.float64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, D_IN, 47)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, D_IN, 47)
    # the default size (TSLib's ETTh1 96→96): D enters through the position embeddings only
    m = create_model("crossformer", d_input=7, n_targets=7, horizon=96)
    assert sum(p.numel() for p in m.parameters()) == param_count(7, 96, 12, 96, 512, 2048, 2, 3) == 42_176_548
    assert m.state_bytes_per_cell() == 4 * 7 * 95
    assert param_count(3, 96, 12, 96, 512, 2048, 2, 3) == 42_176_548 - 4 * (8 + 8) * 512


def test_dropout_only_in_training_and_drawn_per_window():
    """Dropout acts in train mode only; there every window draws its own masks, the decoder's learned input
    included (two equal windows get different forecasts), as the reference's batch-expanded decoder input."""
    model = small(dropout=0.3).train()
    x = torch.randn(1, 15, D_IN, dtype=torch.float64).expand(2, -1, -1)  # the same sequence twice
    with torch.no_grad():
        y = model.forward_last(x)
        assert not torch.allclose(y[0], y[1]) and not torch.allclose(model(x), model(x))
        model.eval()
        y = model.forward_last(x)
        assert rel_err(y[0], y[1]) <= 1e-14 and torch.equal(model(x), model(x))


def test_embeddings_and_routers_are_not_decayed():
    model = tiny_model("crossformer", torch.float32)
    groups = {g["group"]: g for g in model.param_groups(lr=1e-3, weight_decay=0.1)}
    no_decay, decay = {id(p) for p in groups["no_decay"]["params"]}, {id(p) for p in groups["decay"]["params"]}
    routers = [m.router for m in model.modules() if isinstance(m, TwoStageAttention)]
    embeddings = [model.enc_pos, model.dec_pos, *routers]
    assert len(embeddings) == 2 + 2 + 3
    assert all(id(p) in no_decay and id(p) not in decay for p in embeddings)
    assert id(model.embed.weight) in decay and id(model.decoder[0].predict.weight) in decay


def test_gradcheck():
    model = create_model("crossformer", d_input=D_IN, n_targets=N_TGT, horizon=3, target_index=TARGET_INDEX,
                         window=7, seg_len=2, n_layers=2, factor=1, d_model=4, n_heads=2, d_ff=4,
                         dropout=0.0).double().eval()
    x = torch.randn(1, 3, D_IN, dtype=torch.float64, requires_grad=True)
    ring = torch.randn(1, D_IN, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: model.forward_with_state(x, (r,))[0], (x, ring))
    assert torch.autograd.gradcheck(lambda x, r: model.step(x[:, 0], (r,))[0], (x, ring))
    names, shapes = zip(*((n, p.shape) for n, p in model.named_parameters()))
    sizes = [math.prod(s) for s in shapes]

    def through_params(flat):
        ps = [t.view(s) for t, s in zip(flat.split(sizes), shapes)]
        return torch.func.functional_call(model, dict(zip(names, ps)), (x.detach(),))

    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).requires_grad_()
    # all 2,390 parameters as one vector, checked along random directions (finite differences per parameter
    # would take minutes)
    assert flat.numel() == 2390 and torch.autograd.gradcheck(through_params, (flat,), fast_mode=True)


def test_config_defaults_and_target_index():
    cfg = CrossformerConfig(d_input=7, n_targets=7, horizon=96)
    assert cfg.target_index == tuple(range(7))
    assert (cfg.window, cfg.seg_len, cfg.win_size, cfg.factor, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff,
            cfg.dropout) == (96, 12, 2, 3, 512, 8, 2, 2048, 0.1)
    assert CrossformerConfig.from_dict(cfg.to_dict()) == cfg
    assert CrossformerConfig(window=96, seg_len=12, n_layers=4).n_layers == 4  # 8, 8, 4, 2 segments: feasible
    with pytest.raises(ValueError, match="target_index is required"):
        CrossformerConfig(d_input=3, n_targets=2)


@pytest.mark.parametrize("fields,message", [
    ({"window": 1, "seg_len": 1}, "window must be ≥ 2"),
    ({"seg_len": 0}, r"seg_len must be in \[1, window=48\]"),
    ({"seg_len": 49}, r"seg_len must be in \[1, window=48\]"),
    ({"win_size": 1}, "win_size must be ≥ 2"),
    ({"factor": 0}, "factor must be ≥ 1"),
    ({"d_model": 0}, "d_model must be ≥ 1"),
    ({"n_heads": 0}, "n_heads must be ≥ 1"),
    ({"n_layers": 0}, "n_layers must be ≥ 1"),
    ({"d_ff": 0}, "d_ff must be ≥ 1"),
    ({"d_model": 12, "n_heads": 8}, "d_model must be a multiple of n_heads"),
    ({"seg_len": 12, "n_layers": 4}, r"n_layers=4 scales do not fit the window: window 48 / seg_len 12 gives 4 "
                                     r"segments, and scale 4 would merge 1 < win_size=2 segments; use n_layers ≤ 3"),
    ({"seg_len": 48, "n_layers": 2}, r"scale 2 would merge 1 < win_size=2 segments; use n_layers ≤ 1"),
    ({"seg_len": 4, "win_size": 4, "n_layers": 3}, r"scale 3 would merge 3 < win_size=4 .*use n_layers ≤ 2"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"target_index": (0, 5)}, "out of range"),
])
def test_bad_configs_raise(fields, message):
    base = {"d_input": 3, "n_targets": 2, "target_index": (0, 2), "window": 48, "d_model": 8, "n_heads": 2}
    with pytest.raises(ValueError, match=message):
        CrossformerConfig(**{**base, **fields})
    with pytest.raises(ValueError, match=message):
        create_model("crossformer", **{**base, **fields})
