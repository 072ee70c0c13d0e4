"""Informer (models.baselines.informer): the paper's formula on explicit windows against a direct re-implementation,
ProbSparse attention (fixed key samples, the sparsity measure, lazy queries), distilling, the generative decoder,
the float64 selection of the embedding layers, the window streaming contract and the config's checks. The zoo-wide
contract runs in test_contract / test_framing / test_export_zoo."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from models import create_model
from models.baselines.informer import (
    DistilLayer,
    InformerConfig,
    ProbSparseAttention,
    distilled_length,
    encoder_lengths,
    key_sample,
    sparse_count,
)
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

F64 = torch.float64


def randomize(model, seed: int = 0):
    """Random weights everywhere (norm gains around 1) and BatchNorm statistics away from (0, 1), so the formula
    tests see every parameter and statistic."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if p.ndim >= 2:
                p.copy_(r / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * r)
            else:
                p.copy_(0.3 * r)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype))
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model


def small(dtype=F64, init_seed=0, **kw):
    """A randomized small Informer (window 12, label_len 6, d_model 8, 2 heads, factor 1: every ProbSparse
    attention has lazy queries), in eval mode."""
    cfg = {"window": 12, "label_len": 6, "d_model": 8, "n_heads": 2, "n_layers": 2, "d_ff": 16, "factor": 1,
           "dropout": 0.0, **kw}
    torch.manual_seed(init_seed)
    m = create_model("informer", d_input=D_IN, n_targets=N_TGT, horizon=HORIZON, target_index=TARGET_INDEX, **cfg)
    return randomize(m.to(dtype), init_seed).eval()


# -- a direct re-implementation of the paper's formula, one window at a time ---------------------------------------
def ref_pe(n: int, d: int) -> torch.Tensor:
    """The sinusoid, written out, rounded to float32 as the model's buffer is stored."""
    pe = torch.zeros(n, d, dtype=F64)
    for i in range(n):
        for j in range(d):
            angle = i / 10000.0 ** (2 * (j // 2) / d)
            pe[i, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe.float().double()


def ref_conv3(weight: torch.Tensor, bias, u: torch.Tensor) -> torch.Tensor:
    """Kernel-3 convolution with circular padding: out_i = Σ_j W[:, :, j] u_{(i+j−1) mod n} (+ b); u (n, C)."""
    n = u.shape[0]
    out = torch.stack([sum(weight[:, :, j] @ u[(i + j - 1) % n] for j in range(3)) for i in range(n)])
    return out if bias is None else out + bias


def ref_ln(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def ref_ffn(ff, x):
    u = x @ ff.fc1.weight.T + ff.fc1.bias
    u = 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))  # exact GELU
    return u @ ff.fc2.weight.T + ff.fc2.bias


def ref_attention(att, x_q, x_kv, prob: bool, causal: bool = False) -> torch.Tensor:
    """Multi-head attention of x_q (n_q, d) over x_kv (n_k, d), head by head. prob: ProbSparse with the module's
    fixed key samples (M = max − mean over them, the u largest attend, the others get mean V or cumsum V)."""
    q = x_q @ att.query.weight.T + att.query.bias
    k = x_kv @ att.key.weight.T + att.key.bias
    v = x_kv @ att.value.weight.T + att.value.bias
    h, dh = att.n_heads, att.d_head
    n_q, n_k = x_q.shape[0], x_kv.shape[0]
    heads = []
    for i in range(h):
        c = slice(i * dh, (i + 1) * dh)
        s = q[:, c] @ k[:, c].T / math.sqrt(dh)  # (n_q, n_k)
        if not prob:
            heads.append(torch.softmax(s, -1) @ v[:, c])
            continue
        sample = att.sample_index[0, 0]  # (n_q, U)
        m = torch.stack([s[r, sample[r]].max() - s[r, sample[r]].mean() for r in range(n_q)])
        active = set(torch.argsort(m, descending=True)[: att.n_top].tolist())
        rows = []
        for r in range(n_q):
            if r in active:
                keys = r + 1 if causal else n_k
                rows.append(torch.softmax(s[r, :keys], -1) @ v[:keys, c])
            else:
                rows.append(v[: r + 1, c].sum(0) if causal else v[:, c].mean(0))
        heads.append(torch.stack(rows))
    return torch.cat(heads, -1) @ att.out.weight.T + att.out.bias


def ref_distil(layer, h: torch.Tensor) -> torch.Tensor:
    z = ref_conv3(layer.conv.weight, layer.conv.bias, h)  # (n, d)
    bn = layer.norm
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    z = torch.where(z > 0, z, torch.expm1(z))  # ELU
    n = z.shape[0]
    return torch.stack([z[max(2 * t - 1, 0) : min(2 * t + 2, n)].max(0).values for t in range((n + 1) // 2)])


def ref_informer(model, w: torch.Tensor) -> torch.Tensor:
    """The paper's Informer on one explicit window, written out: w (W, D) → (H, K)."""
    c = model.config
    prob_cross = c.cross_attention == "prob"
    h = ref_conv3(model.enc_embed.weight, None, w) + ref_pe(c.window, c.d_model)
    for i, layer in enumerate(model.encoder):
        h = ref_ln(h + ref_attention(layer.attention, h, h, prob=True), layer.norm1)
        h = ref_ln(h + ref_ffn(layer.ff, h), layer.norm2)
        if c.distil and i < c.n_layers - 1:
            h = ref_distil(model.distil[i], h)
    h = ref_ln(h, model.enc_norm)
    u = torch.cat([w[c.window - c.label_len :], torch.zeros(c.horizon, w.shape[1], dtype=w.dtype)])  # start, zeros
    g = ref_conv3(model.dec_embed.weight, None, u) + ref_pe(c.label_len + c.horizon, c.d_model)
    for layer in model.decoder:
        g = ref_ln(g + ref_attention(layer.self_attention, g, g, prob=True, causal=True), layer.norm1)
        g = ref_ln(g + ref_attention(layer.cross_attention, g, h, prob=prob_cross), layer.norm2)
        g = ref_ln(g + ref_ffn(layer.ff, g), layer.norm3)
    g = ref_ln(g, model.dec_norm)
    return g[c.label_len :] @ model.proj.weight.T + model.proj.bias  # (H, K)


@pytest.mark.parametrize("kw", [
    {},
    {"cross_attention": "prob"},
    {"distil": False, "d_layers": 2, "label_len": 0},
    {"n_layers": 3, "window": 13, "label_len": 13, "factor": 2},
], ids=["default", "prob-cross", "no-distil", "3-layers"])
def test_forward_equals_the_paper_formula_on_explicit_windows(kw):
    model = small(**kw)
    W = model.config.window
    B, L = 2, W + 6
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, L, D_IN, dtype=F64, generator=g)
    ring = torch.randn(B, W - 1, D_IN, dtype=F64, generator=g)
    with torch.no_grad():
        y = model(x)
        y_state, (ring_out,) = model.forward_with_state(x, (ring,))
        for b in range(B):
            zero_hist = torch.cat([torch.zeros(W - 1, D_IN, dtype=F64), x[b]])  # (W−1+L, D)
            ring_hist = torch.cat([ring[b], x[b]])
            for t in (0, W - 2, W - 1, L - 1):
                assert (y[b, t] - ref_informer(model, zero_hist[t : t + W])).abs().max() <= 1e-10
                assert (y_state[b, t] - ref_informer(model, ring_hist[t : t + W])).abs().max() <= 1e-10
    assert torch.equal(ring_out, x[:, L - W + 1 :])


def test_positional_embedding_is_the_sinusoid():
    model = tiny_model("informer")
    c = model.config
    assert model.pe.shape == (max(c.window, c.label_len + c.horizon), c.d_model)
    assert (model.pe - ref_pe(model.pe.shape[0], c.d_model)).abs().max() <= 1e-7


# -- ProbSparse attention -----------------------------------------------------------------------------------------
def test_sample_and_top_counts_are_c_ln_l():
    assert [sparse_count(3, n) for n in (96, 48, 144, 24, 52, 5, 2, 1)] == [15, 12, 15, 12, 12, 5, 2, 1]
    assert sparse_count(5, 96) == 25 and sparse_count(1, 12) == 3
    model = create_model("informer", d_input=7, n_targets=7, horizon=96)  # the default (ETTh1) size
    assert [(a.n_q, a.n_sample, a.n_top) for a in (model.encoder[0].attention, model.encoder[1].attention)] == [
        (96, 15, 15), (48, 12, 12)]
    dec = model.decoder[0].self_attention
    assert (dec.n_q, dec.n_sample, dec.n_top, dec.causal) == (144, 15, 15, True)


def test_key_samples_are_fixed_buffers_drawn_per_attention_length():
    a, b = small(), small(init_seed=5)  # other weights, same config: the same samples
    for m1, m2 in zip(a.modules(), b.modules()):
        if isinstance(m1, ProbSparseAttention):
            assert torch.equal(m1.sample_index, m2.sample_index)
            idx = m1.sample_index[0, 0]
            assert idx.shape == (m1.n_q, m1.n_sample) and idx.dtype == torch.int64
            assert int(idx.min()) >= 0 and int(idx.max()) < m1.n_k
    assert "sample_index" not in str(list(a.state_dict()))  # derived from the config, not stored
    assert torch.equal(key_sample(48, 48, 12, 0), key_sample(48, 48, 12, 0))
    assert not torch.equal(key_sample(48, 48, 12, 0), key_sample(48, 48, 12, 1))
    assert not torch.equal(key_sample(24, 24, 12, 0)[:, :12], key_sample(48, 48, 12, 0)[:24, :12])
    other = small(seed=7)
    assert not torch.equal(other.encoder[0].attention.sample_index, a.encoder[0].attention.sample_index)
    # the samples fix the function: forward twice, and a rebuilt model, give the same forecasts
    x = torch.randn(2, 20, D_IN, dtype=F64)
    with torch.no_grad():
        assert torch.equal(a(x), a(x))
        clone = small()
        assert torch.equal(clone(x), a(x))


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "masked"])
def test_lazy_queries_get_the_mean_or_the_cumulative_sum_of_the_values(causal):
    """With identity output projections, exactly u rows are full attention and every other row is mean V (the
    encoder's) or Σ_{j≤i} v_j (the masked decoder's); the active rows are those of largest M."""
    torch.manual_seed(0)
    n, d = 20, 4
    att = ProbSparseAttention(d, 1, n, n, factor=2, causal=causal, seed=0).double()
    with torch.no_grad():
        att.out.weight.copy_(torch.eye(d, dtype=F64))
        att.out.bias.zero_()
    x = torch.randn(3, n, d, dtype=F64)
    with torch.no_grad():
        y = att(x)
    assert att.n_top == 2 * math.ceil(math.log(n)) == 6
    for b in range(3):
        q = x[b] @ att.query.weight.T + att.query.bias
        k = x[b] @ att.key.weight.T + att.key.bias
        v = x[b] @ att.value.weight.T + att.value.bias
        s = q @ k.T / math.sqrt(d)
        sample = att.sample_index[0, 0]
        m = s.gather(1, sample).amax(1) - s.gather(1, sample).mean(1)
        top = set(m.topk(att.n_top).indices.tolist())
        for i in range(n):
            if i in top:
                keys = i + 1 if causal else n
                want = torch.softmax(s[i, :keys], -1) @ v[:keys]
            else:
                want = v[: i + 1].sum(0) if causal else v.mean(0)
            assert (y[b, i] - want).abs().max() <= 1e-12


def test_masked_attention_needs_self_attention():
    with pytest.raises(ValueError, match="self-attention"):
        ProbSparseAttention(8, 2, 16, 12, factor=2, causal=True, seed=0)


# -- distilling and the encoder -----------------------------------------------------------------------------------
def test_distilling_halves_the_tokens():
    assert encoder_lengths(96, 2, True) == [96, 48]  # the paper's (TSLib pads by 2: 49)
    assert encoder_lengths(48, 3, True) == [48, 24, 12]
    assert encoder_lengths(13, 3, True) == [13, 7, 4]
    assert encoder_lengths(96, 3, False) == [96, 96, 96]
    assert [distilled_length(n) for n in (1, 2, 3, 7, 96)] == [1, 1, 2, 4, 48]
    layer = randomize(DistilLayer(6).double()).eval()
    for n in (7, 12):
        h = torch.randn(2, n, 6, dtype=F64)
        with torch.no_grad():
            out = layer(h)
        assert out.shape == (2, distilled_length(n), 6)
        assert (out[1] - ref_distil(layer, h[1])).abs().max() <= 1e-12
    model = small()
    assert len(model.distil) == 1 and model.n_enc == 6
    assert len(small(distil=False).distil) == 0 and small(distil=False).n_enc == 12


def test_the_decoder_reads_the_last_label_len_inputs_and_the_encoder():
    """The decoder's start tokens are the window's last ℓ inputs: an input older than ℓ reaches the forecast only
    through the encoder; with label_len 0 the decoder sees zeros and every forecast still moves with the window."""
    model = small()
    W = model.config.window
    w = torch.randn(4, W, D_IN, dtype=F64)
    with torch.no_grad():
        y = model.forecast(w)
        model_no_cross = copy.deepcopy(model)
        for layer in model_no_cross.decoder:  # cut the cross-attention: the decoder alone
            layer.cross_attention.value.weight.zero_()
            layer.cross_attention.value.bias.zero_()
        old, recent = w.clone(), w.clone()
        old[:, 2] += 1.0  # before the start tokens (W − ℓ = 6)
        recent[:, W - 2] += 1.0
        base = model_no_cross.forecast(w)
        assert torch.equal(model_no_cross.forecast(old), base)
        assert not torch.allclose(model_no_cross.forecast(recent), base)
        assert not torch.allclose(model.forecast(old), y)
        zero_start = small(label_len=0)
        assert zero_start.n_dec == HORIZON
        assert not torch.allclose(zero_start.forecast(old), zero_start.forecast(w))


# -- the float64 selection of the embedding layers ------------------------------------------------------------------
def _captured_scores(model):
    """Record the sparsity measure M each ProbSparse attention ranks (by module name)."""
    seen: dict[str, list[torch.Tensor]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, ProbSparseAttention):
            orig = mod.sparsity

            def record(s, orig=orig, name=name):
                m = orig(s)
                seen.setdefault(name, []).append(m)
                return m

            mod.sparsity = record
    return seen


def test_embedding_layers_select_in_float64_and_identically_across_dtypes():
    """In eval mode the first encoder layer and the decoder's first self-attention rank M computed in float64 from
    the raw window: a float32 model and its float64 copy rank identical M there (so runtimes that round differently
    pick the same queries), while the later layers rank their own dtype's M."""
    m32 = tiny_model("informer", torch.float32)
    m64 = copy.deepcopy(m32).double()
    plain = copy.deepcopy(m64)
    plain.config.select_f64 = False
    seen32, seen64 = _captured_scores(m32), _captured_scores(m64)
    w = torch.randn(256, m32.config.window, D_IN)
    with torch.no_grad():
        y32, y64 = m32.forecast(w), m64.forecast(w.double())
    for name in ("encoder.0.attention", "decoder.0.self_attention"):
        a, b = seen32[name][0], seen64[name][0]
        assert a.dtype == F64 and torch.equal(a, b), name
    assert seen32["encoder.1.attention"][0].dtype == torch.float32
    assert rel_err(y32.double(), y64) <= 1e-5
    # the float64 path selects the same queries as the float32 one would (away from ties): the same forecasts
    with torch.no_grad():
        assert rel_err(plain.forecast(w.double()), y64) <= 1e-12


def test_train_mode_selects_from_the_float32_scores():
    model = small(distil=False)  # no BatchNorm: train and eval mode compute the same function without dropout
    seen = _captured_scores(model)
    x = torch.randn(2, 15, D_IN, dtype=F64)
    with torch.no_grad():
        y_eval = model(x)
        model.train()
        y_train = model(x)
    assert rel_err(y_train, y_eval) <= 1e-12
    assert len(seen["encoder.0.attention"]) == 2  # ranked in both modes
    m32 = tiny_model("informer", torch.float32).train()
    seen32 = _captured_scores(m32)
    m32(torch.randn(2, 5, D_IN))
    assert seen32["encoder.0.attention"][0].dtype == torch.float32


# -- the streaming contract ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(dtype, tol):
    check_window_steps(small(dtype), dtype, tol, 40)


def test_last_window_paths():
    check_last_window_paths(small())


def test_window_bounds_the_receptive_field():
    model = small()
    W = model.config.window
    x = torch.randn(1, 3 * W, D_IN, dtype=F64)
    x2 = x.clone()
    x2[:, 10, 1] += 1.0  # a covariate at t = 10
    with torch.no_grad():
        changed = (model(x) - model(x2)).abs().amax((0, 2, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))


def test_zero_windows_stay_finite():
    model = small()
    x = torch.zeros(2, 5, D_IN, dtype=F64, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    y_t, _ = model.step(torch.zeros(2, D_IN, dtype=F64), model.init_state(2))
    assert rel_err(y_t, y[:, 0].detach()) <= 1e-12


def test_exported_prob_cross_attention_matches_torch(tmp_path):
    """The variants the zoo tests do not export (ProbSparse cross-attention, no distilling) export too."""
    from models.export import export_onnx, onnx_has_complex
    from service.runtime.backends import OnnxStepRuntime

    model = tiny_model("informer", torch.float32, cross_attention="prob", distil=False)
    path = export_onnx(model, tmp_path / "informer.onnx")
    assert not onnx_has_complex(path)
    rt = OnnxStepRuntime(path)
    xs = np.random.default_rng(0).standard_normal((60, 2, D_IN), dtype=np.float32)
    state = model.init_state(2)
    rt_state = [s.numpy() for s in state]
    with torch.inference_mode():
        for t in range(60):
            y, state = model.step(torch.from_numpy(xs[t]), state)
            y_rt, rt_state = rt.run(xs[t], rt_state)
            assert np.abs(y_rt - y.numpy()).max() <= 1e-4 * np.abs(y.numpy()).max()


# -- sizes ----------------------------------------------------------------------------------------------------------
def param_count(D, d, f, K, n_layers, n_dec, distil=True):
    attn = 4 * (d * d + d)
    ffn = (d * f + f) + (f * d + d)
    enc = attn + ffn + 2 * 2 * d
    dec = 2 * attn + ffn + 3 * 2 * d
    conv = (d * d * 3 + d) + 2 * d  # distilling: convolution and BatchNorm
    return 2 * D * d * 3 + n_layers * enc + (n_layers - 1) * conv * distil + 2 * d + n_dec * dec + 2 * d + d * K + K


def test_shapes_and_parameters():
    model = tiny_model("informer")
    c = model.config
    assert (c.window, c.label_len, c.d_model, c.n_heads, c.n_layers, c.d_layers, c.d_ff) == (48, 24, 8, 2, 2, 1, 16)
    assert sum(p.numel() for p in model.parameters()) == param_count(D_IN, 8, 16, N_TGT, 2, 1) == 2514
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (47, D_IN))]
    assert model.state_bytes_per_cell() == 4 * 47 * D_IN
    x = torch.randn(3, 17, D_IN, dtype=F64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, 47, D_IN)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, 47, D_IN)
    no_distil = tiny_model("informer", distil=False)
    assert sum(p.numel() for p in no_distil.parameters()) == param_count(D_IN, 8, 16, N_TGT, 2, 1, distil=False)
    # the default: TSLib's ETTh1 script (D_in = K = 7, H = 96)
    default = create_model("informer", d_input=7, n_targets=7, horizon=96)
    n = sum(p.numel() for p in default.parameters())
    assert n == param_count(7, 512, 2048, 7, 2, 1) == 11_323_911
    assert default.state_bytes_per_cell() == 4 * 95 * 7


def test_targets_need_no_target_index():
    """The projection forecasts the K targets directly (Informer's c_out = K): no target_index needed."""
    model = create_model("informer", d_input=3, n_targets=2, horizon=2, window=8, d_model=4, n_heads=1, d_ff=8)
    assert model.config.target_index is None and model.proj.out_features == 2
    assert model(torch.randn(1, 5, 3)).shape == (1, 5, 2, 2)


def test_dropout_only_in_training():
    model = small(dropout=0.3, distil=False).train()
    x = torch.randn(2, 15, D_IN, dtype=F64)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


@pytest.mark.slow  # minutes of float64 finite differences; the contract tests cover the gradients' use
def test_gradcheck():
    model = create_model("informer", d_input=D_IN, n_targets=N_TGT, horizon=2, target_index=TARGET_INDEX, window=6,
                         label_len=3, d_model=4, n_heads=2, n_layers=2, d_ff=8, factor=1, dropout=0.0).double().eval()
    randomize(model)
    x = torch.randn(1, 4, D_IN, dtype=F64, requires_grad=True)
    ring = torch.randn(1, 5, D_IN, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: model.forward_with_state(x, (r,))[0], (x, ring))
    assert torch.autograd.gradcheck(lambda x, r: model.step(x[:, 0], (r,))[0], (x, ring))
    names = [n for n, _ in model.named_parameters()]

    def through_params(*ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x.detach(),))

    ps = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(through_params, ps)


# -- config -------------------------------------------------------------------------------------------------------
def test_config_defaults_are_tslibs_etth1_script():
    cfg = InformerConfig(d_input=7, n_targets=7, horizon=96)
    assert (cfg.window, cfg.label_len, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_layers, cfg.d_ff) == (
        96, 48, 512, 8, 2, 1, 2048)
    assert (cfg.factor, cfg.dropout, cfg.distil, cfg.cross_attention, cfg.seed, cfg.select_f64) == (
        3, 0.1, True, "full", 0, True)
    assert cfg.target_index is None
    assert InformerConfig(window=20).label_len == 10  # None → window // 2
    assert InformerConfig(window=20, label_len=0).label_len == 0
    assert InformerConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("fields,message", [
    ({"window": 1}, "window must be ≥ 2"),
    ({"window": 10, "label_len": 11}, "label_len must be in"),
    ({"label_len": -1}, "label_len must be in"),
    ({"d_model": 0}, "d_model must be ≥ 1"),
    ({"n_heads": 0}, "n_heads must be ≥ 1"),
    ({"n_layers": 0}, "n_layers must be ≥ 1"),
    ({"d_layers": 0}, "d_layers must be ≥ 1"),
    ({"d_ff": 0}, "d_ff must be ≥ 1"),
    ({"factor": 0}, "factor must be ≥ 1"),
    ({"d_model": 12, "n_heads": 8}, "d_model must be a multiple of n_heads"),
    ({"distil": 1}, "distil must be true or false"),
    ({"select_f64": "yes"}, "select_f64 must be true or false"),
    ({"cross_attention": "sparse"}, "cross_attention must be one of"),
    ({"seed": -1}, "seed must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"target_index": (0, 5)}, "out of range"),
])
def test_bad_configs_raise(fields, message):
    with pytest.raises(ValueError, match=message):
        InformerConfig(**{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
    with pytest.raises(ValueError, match=message):
        create_model("informer", **{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
