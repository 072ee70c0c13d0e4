"""FEDformer (models.baselines.fedformer): the restricted DFT against torch.fft, the mode selection, the decomposition,
the whole formula on explicit windows against a re-implementation in the reference's own layout (torch.fft, complex
tensors, its loops and its view), the reference's quirks and the paper's variant, the window streaming contract and
the config's checks. The zoo-wide contract runs in test_contract / test_framing / test_export_zoo."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from models import create_model
from models.baselines.fedformer import (
    FEDformerConfig,
    circular_conv3,
    complex_block,
    dft_matrix,
    idft_matrix,
    moving_average_matrix,
    n_modes,
    select_modes,
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
    """Random weights everywhere (LayerNorm gains around 1, the Fourier planes at the scale of the other weights), so
    every parameter and path shows in the formula tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if name.endswith(("weight_re", "weight_im")):
                p.copy_(r / math.sqrt(p.shape[-1]))
            elif p.ndim == 3:  # conv (C_out, C_in, 3)
                p.copy_(r / math.sqrt(3 * p.shape[1]))
            elif p.ndim >= 2:
                p.copy_(r / math.sqrt(p.shape[-1]))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * r)
            else:
                p.copy_(0.3 * r)
    return model


SMALL = {"window": 12, "label_len": 6, "d_model": 8, "n_heads": 2, "n_layers": 2, "d_layers": 2, "d_ff": 16,
         "modes": 4, "moving_avg": 5}


def small(dtype=F64, d_input=D_IN, target_index=TARGET_INDEX, seed=0, **kw):
    """A randomized small FEDformer (window 12, 4 of the 6 modes drawn at random, 2 encoder and 2 decoder layers), in
    eval mode."""
    torch.manual_seed(seed)
    m = create_model("fedformer", d_input=d_input, n_targets=len(target_index), horizon=HORIZON,
                     target_index=target_index, **{**SMALL, **kw})
    return randomize(m.to(dtype), seed).eval()


# -- an independent computation in the reference's layout -----------------------------------------------------------
def ref_decomp(x, k):
    """x (L, C) → (seasonal, trend): pad with (k−1)/2 copies of the first and the last row, mean of k."""
    p = (k - 1) // 2
    padded = torch.cat([x[:1].repeat(p, 1), x, x[-1:].repeat(p, 1)])
    trend = torch.stack([padded[t : t + k].mean(0) for t in range(x.shape[0])])
    return x - trend, trend


def ref_conv(x, weight):
    """x (L, C_in) → (L, C_out): torch's Conv1d(k=3, padding=1, padding_mode='circular'), no bias."""
    return F.conv1d(F.pad(x.T[None], (1, 1), mode="circular"), weight)[0].T


def ref_linear(x, lin):
    return x @ lin.weight.T + (lin.bias if lin.bias is not None else 0.0)


def ref_gelu(u):
    return 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))


def ref_my_layernorm(x, ln):
    mu = x.mean(-1, keepdim=True)
    z = (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + ln.eps) * ln.weight + ln.bias
    return z - z.mean(0, keepdim=True)


def ref_fourier_block(block, q):
    """The reference FourierBlock on q (L, d) → (h, E, L): rfft, mode i of index → slot of out_bins, irfft."""
    L, h, E = q.shape[0], block.n_heads, block.d_head
    x_ft = torch.fft.rfft(q.reshape(L, h, E).permute(1, 2, 0), dim=-1)  # (h, E, L//2+1)
    out_ft = torch.zeros(h, E, L // 2 + 1, dtype=torch.complex128)
    w = torch.complex(block.weight_re, block.weight_im)  # (M, h, E, O)
    for m, (i, j) in enumerate(zip(block.bins, block.out_bins)):
        out_ft[:, :, j] = torch.einsum("he,heo->ho", x_ft[:, :, i], w[m])
    return torch.fft.irfft(out_ft, n=L)


def ref_fourier_cross(block, q, k, v, d_model):
    """The reference FourierCrossAttention on q (L_q, d), k, v (L_kv, d) (v None: the keys) → (h, E, L_q)."""
    h, E, Lq = block.n_heads, block.d_head, q.shape[0]

    def coeffs(x, bins):
        return torch.fft.rfft(x.reshape(x.shape[0], h, E).permute(1, 2, 0), dim=-1)[..., bins]  # (h, E, M)

    xq, xk = coeffs(q, block.bins_q), coeffs(k, block.bins_kv)
    xv = xk if v is None else coeffs(v, block.bins_kv)
    xqk = torch.einsum("hex,hey->hxy", xq, xk)
    if block.activation == "tanh":
        xqk = torch.complex(xqk.real.tanh(), xqk.imag.tanh())
    else:
        xqk = torch.softmax(xqk.abs(), -1).to(torch.complex128)
    xqkv = torch.einsum("hxy,hey->hex", xqk, xv)
    w = torch.complex(block.weight_re, block.weight_im).permute(1, 2, 3, 0)  # the reference's (h, E, O, M)
    xqkvw = torch.einsum("hex,heox->hox", xqkv, w)
    out_ft = torch.zeros(h, E, Lq // 2 + 1, dtype=torch.complex128)
    for i, j in enumerate(block.bins_q):
        out_ft[:, :, j] = xqkvw[:, :, i]
    return torch.fft.irfft(out_ft / d_model / d_model, n=Lq)


def ref_fold(o, quirk):
    """(h, E, L) → (L, d): the reference's `.view(B, L, -1)` of the (B, h, E, L) tensor, or the axes moved back."""
    L = o.shape[-1]
    return o.reshape(L, -1) if quirk else o.permute(2, 0, 1).reshape(L, -1)


def ref_fedformer(model, w):
    """The reference FEDformer-f on one explicit window w (W, D) → (H, K), in its own layout."""
    c = model.config
    tgt, k, quirk = list(c.target_index), c.moving_avg, c.reference_quirks
    act = ref_gelu if c.activation == "gelu" else F.relu
    mean = w[:, tgt].mean(0, keepdim=True).repeat(c.horizon, 1)
    seasonal_init, trend_init = ref_decomp(w, k)
    trend = torch.cat([trend_init[-c.label_len :, tgt], mean])
    seasonal_init = torch.cat([seasonal_init[-c.label_len :], torch.zeros(c.horizon, w.shape[1], dtype=w.dtype)])

    def ffn(x, f):
        return act(x @ f.fc1.weight.T) @ f.fc2.weight.T

    def self_attention(x, a):  # AutoCorrelationLayer around FourierBlock: W_q, the block, the view, W_o
        return ref_linear(ref_fold(ref_fourier_block(a.block, ref_linear(x, a.query)), quirk), a.out)

    enc = ref_conv(w, model.enc_embed.conv.weight)
    for layer in model.encoder:
        enc, _ = ref_decomp(enc + self_attention(enc, layer.attention), k)
        enc, _ = ref_decomp(enc + ffn(enc, layer.ffn), k)
    enc = ref_my_layernorm(enc, model.enc_norm.norm)
    x = ref_conv(seasonal_init, model.dec_embed.conv.weight)
    for layer in model.decoder:
        ca = layer.cross_attention
        x, t1 = ref_decomp(x + self_attention(x, layer.self_attention), k)
        v = None if quirk else ref_linear(enc, ca.value)
        o = ref_fourier_cross(ca.block, ref_linear(x, ca.query), ref_linear(enc, ca.key), v, c.d_model)
        x, t2 = ref_decomp(x + ref_linear(ref_fold(o, quirk), ca.out), k)
        x, t3 = ref_decomp(x + ffn(x, layer.ffn), k)
        trend = trend + ref_conv(t1 + t2 + t3, layer.trend_proj.weight)
    x = ref_linear(ref_my_layernorm(x, model.dec_norm.norm), model.proj)
    return (trend + x)[-c.horizon :]


# -- the pieces -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("L", [48, 28, 96, 144, 7, 2])
def test_dft_matrices_are_rfft_and_irfft_restricted_to_the_bins(L):
    g = torch.Generator().manual_seed(L)
    bins = sorted(torch.randperm(L // 2 + 1, generator=g)[: max(1, L // 3)].tolist())
    bins = sorted({0, *bins})  # DC always among them (its imaginary part is dropped by both)
    x = torch.randn(5, L, dtype=F64, generator=g)
    X = x @ dft_matrix(L, bins).T  # (5, 2M)
    ref = torch.fft.rfft(x)[:, bins]
    assert torch.allclose(X[:, : len(bins)], ref.real, atol=1e-12, rtol=0)
    assert torch.allclose(X[:, len(bins) :], ref.imag, atol=1e-12, rtol=0)
    Y = torch.randn(5, 2 * len(bins), dtype=F64, generator=g)
    spectrum = torch.zeros(5, L // 2 + 1, dtype=torch.complex128)
    spectrum[:, bins] = torch.complex(Y[:, : len(bins)], Y[:, len(bins) :])
    assert torch.allclose(Y @ idft_matrix(L, bins), torch.fft.irfft(spectrum, n=L), atol=1e-12, rtol=0)
    assert torch.allclose(Y @ idft_matrix(L, bins, 0.25), 0.25 * torch.fft.irfft(spectrum, n=L), atol=1e-12, rtol=0)
    # a full spectrum round trip (every bin, Nyquist included): the identity on real series
    every = list(range(L // 2 + 1))
    assert torch.allclose(x @ dft_matrix(L, every).T @ idft_matrix(L, every), x, atol=1e-12, rtol=0)


def test_model_blocks_compute_their_fourier_maps_as_the_reference():
    model = small(reference_quirks=True, modes=3)
    feb = model.encoder[0].attention.block
    q = torch.randn(feb.length, 4, model.config.d_model, dtype=F64)  # (L, N, d)
    with torch.no_grad():
        out = feb(q)  # (L, N, h, E)
        for n in range(4):
            assert (out[:, n].permute(1, 2, 0) - ref_fourier_block(feb, q[:, n])).abs().max() <= 1e-13
        fea = model.decoder[0].cross_attention.block
        qd = torch.randn(fea.len_q, 3, model.config.d_model, dtype=F64)
        kd = torch.randn(fea.len_kv, 3, model.config.d_model, dtype=F64)
        o = fea(qd, kd)
        for n in range(3):
            ref = ref_fourier_cross(fea, qd[:, n], kd[:, n], None, model.config.d_model)
            assert (o[:, n].permute(1, 2, 0) - ref).abs().max() <= 1e-14


def test_complex_block_is_the_complex_product():
    g = torch.Generator().manual_seed(0)
    a = torch.complex(torch.randn(3, 4, dtype=F64, generator=g), torch.randn(3, 4, dtype=F64, generator=g))
    w = torch.complex(torch.randn(4, 5, dtype=F64, generator=g), torch.randn(4, 5, dtype=F64, generator=g))
    real = torch.cat([a.real, a.imag], -1) @ complex_block(w.real, w.imag)
    assert torch.allclose(torch.complex(real[:, :5], real[:, 5:]), a @ w, atol=1e-13, rtol=0)


def test_mode_selection_rule():
    assert [n_modes(L, 32) for L in (96, 144, 48, 28, 2, 3)] == [32, 32, 24, 14, 1, 1]  # min(modes, L // 2)
    assert select_modes(96, 5, "low") == [0, 1, 2, 3, 4]
    draw = select_modes(96, 32, "random", torch.Generator().manual_seed(7))
    assert draw == sorted(set(draw)) and len(draw) == 32 and max(draw) < 48  # never the Nyquist bin 48
    assert draw == select_modes(96, 32, "random", torch.Generator().manual_seed(7))
    assert draw != select_modes(96, 32, "random", torch.Generator().manual_seed(8))
    assert select_modes(48, 32, "random", torch.Generator().manual_seed(7)) == list(range(24))  # clipped: every bin


def test_the_models_modes_are_drawn_once_at_construction():
    """The blocks' bins come from mode_seed, in the reference's order; the same config gives the same function."""
    a, b = small(), small(seed=1)
    assert a.encoder[0].attention.block.bins == b.encoder[0].attention.block.bins
    c = small(mode_seed=3)
    blocks = [m.encoder[0].attention.block.bins for m in (a, c)]
    assert blocks[0] != blocks[1]
    L_d = SMALL["label_len"] + HORIZON
    g = torch.Generator().manual_seed(0)  # encoder FEB, decoder FEB, FEA queries, FEA keys
    expected = [select_modes(n, 4, "random", g) for n in (12, L_d, L_d, 12)]
    fea = a.decoder[0].cross_attention.block
    got = [a.encoder[0].attention.block.bins, a.decoder[0].self_attention.block.bins, fea.bins_q, fea.bins_kv]
    assert got == expected
    assert a.decoder[0].self_attention.block.out_bins == [0, 1, 2, 3]  # the reference writes to the lowest slots
    low = small(mode_select="low", reference_quirks=False)
    assert low.encoder[1].attention.block.bins == low.encoder[1].attention.block.out_bins == [0, 1, 2, 3]
    x = torch.randn(2, 20, D_IN, dtype=F64)
    with torch.no_grad():
        assert torch.equal(a(x), a(x))


@pytest.mark.parametrize("L,k", [(48, 25), (28, 25), (12, 5), (5, 9), (7, 1)])
def test_moving_average_matrix_is_the_edge_replicated_mean(L, k):
    x = torch.randn(L, 3, dtype=F64)
    A = moving_average_matrix(L, k)
    assert torch.allclose(A @ x, ref_decomp(x, k)[1], atol=1e-13, rtol=0)
    assert torch.allclose(A.sum(1), torch.ones(L, dtype=F64))  # a mean: constants are kept
    p = (k - 1) // 2  # the reference's route: replicate padding, then AvgPool1d
    pooled = F.avg_pool1d(F.pad(x.T[None], (p, p), mode="replicate"), k, stride=1)[0].T
    assert torch.allclose(A @ x, pooled, atol=1e-13, rtol=0)


@pytest.mark.parametrize("c_in,c_out", [(4, 6), (6, 2)], ids=["shift-inputs", "shift-outputs"])
def test_circular_conv3_is_torchs_circular_conv1d(c_in, c_out):
    conv = torch.nn.Conv1d(c_in, c_out, 3, padding=1, padding_mode="circular", bias=False).double()
    x = torch.randn(9, 2, c_in, dtype=F64)  # (L, N, C)
    with torch.no_grad():
        assert torch.allclose(circular_conv3(x, conv.weight), conv(x.permute(1, 2, 0)).permute(2, 0, 1), atol=1e-13)


# -- the formula ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {},  # the reference's code, tanh
    {"cross_activation": "softmax", "activation": "relu"},
    {"reference_quirks": False},  # the paper's description
    {"reference_quirks": False, "mode_select": "low", "cross_activation": "softmax", "label_len": 12, "d_layers": 1},
], ids=["reference", "softmax-relu", "paper", "paper-low-softmax"])
def test_forward_equals_reference_formula_on_explicit_windows(kw):
    model = small(**kw)
    W = model.config.window
    B, L = 2, W + 8
    x = torch.randn(B, L, D_IN, dtype=F64)
    ring = torch.randn(B, W - 1, D_IN, dtype=F64)
    with torch.no_grad():
        y = model(x)
        y_state, (ring_out,) = model.forward_with_state(x, (ring,))
        for b in range(B):
            zero_hist = torch.cat([torch.zeros(W - 1, D_IN, dtype=F64), x[b]])  # (W−1+L, D)
            ring_hist = torch.cat([ring[b], x[b]])
            for t in (0, 5, W - 2, W - 1, L - 1):
                assert (y[b, t] - ref_fedformer(model, zero_hist[t : t + W])).abs().max() <= 1e-12
                assert (y_state[b, t] - ref_fedformer(model, ring_hist[t : t + W])).abs().max() <= 1e-12
    assert torch.equal(ring_out, x[:, L - W + 1 :])


def test_reference_quirks_change_the_function():
    """The same weights under the paper's layout (outputs at the selected bins, axes moved back) give another map."""
    ref = small(d_layers=1)
    paper = small(d_layers=1, reference_quirks=False, mode_select="low")
    state = {k: v for k, v in ref.state_dict().items() if k in paper.state_dict()}
    x = torch.randn(2, 20, D_IN, dtype=F64)
    with torch.no_grad():
        assert rel_err(paper(x), ref(x)) > 1e-3
    assert set(paper.state_dict()) - set(state)  # the paper's FEA reads a value projection


def test_with_every_weight_zero_the_forecast_is_the_window_mean():
    """The decoder's trend starts at the window mean at every forecast position; every learned path adds to it."""
    model = small()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        w = torch.randn(3, model.config.window, D_IN, dtype=F64)
        y = model.forecast(w)
    expected = w[..., list(TARGET_INDEX)].mean(1, keepdim=True).expand(3, HORIZON, N_TGT)
    assert torch.allclose(y, expected, atol=1e-14, rtol=0)


def test_blocks_are_shared_as_in_the_reference_and_per_layer_in_the_paper():
    ref, paper = small(), small(reference_quirks=False)
    assert ref.encoder[0].attention.block is ref.encoder[1].attention.block
    assert ref.decoder[0].cross_attention.block is ref.decoder[1].cross_attention.block
    assert ref.decoder[0].cross_attention.value is None  # the keys serve as values
    assert paper.encoder[0].attention.block is not paper.encoder[1].attention.block
    assert paper.encoder[0].attention.block.bins != paper.encoder[1].attention.block.bins  # each its own draw
    assert paper.decoder[0].cross_attention.value is not None
    c, E = ref.config, ref.config.d_model // ref.config.n_heads
    unshared = 2 * (c.n_layers - 1) * 4 * c.n_heads * E * E + 2 * (c.d_layers - 1) * 2 * 4 * c.n_heads * E * E
    values = c.d_layers * (c.d_model * c.d_model + c.d_model)
    assert sum(p.numel() for p in paper.parameters()) - sum(p.numel() for p in ref.parameters()) == unshared + values


def test_a_covariate_changes_every_target_forecast():
    """The encoder and the seasonal path read every input column."""
    model = small()
    cov = next(d for d in range(D_IN) if d not in TARGET_INDEX)
    x = torch.randn(2, 30, D_IN, dtype=F64)
    x2 = x.clone()
    x2[..., cov] += torch.randn(2, 30, dtype=F64)
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert ((y - y2).abs().amax(2) > 1e-6).all()


def test_window_bounds_the_receptive_field():
    model = small()
    W = model.config.window
    x = torch.randn(1, 3 * W, D_IN, dtype=F64)
    x2 = x.clone()
    x2[:, 10, 1] += 1.0  # a covariate at t = 10
    with torch.no_grad():
        changed = (model(x) - model(x2)).abs().amax((0, 2, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))


@pytest.mark.parametrize("cross_activation", ["tanh", "softmax"])
def test_zero_windows_stay_finite(cross_activation):
    """The zero state: every Fourier coefficient but DC is 0, so |A| = 0 in FEA-f; gradients stay finite."""
    model = small(cross_activation=cross_activation)
    x = torch.zeros(2, 5, D_IN, dtype=F64, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# -- streaming ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-12), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_step_reproduces_forward(dtype, tol):
    check_window_steps(small(dtype), dtype, tol, 30)
    check_window_steps(small(dtype, reference_quirks=False, cross_activation="softmax"), dtype, tol, 20)


def test_last_window_paths():
    check_last_window_paths(small())


class _Calls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names, self.complex = set(), False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.names.add(getattr(func, "__name__", str(func)))
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor) and t.is_complex():
                self.complex = True
        return out


def test_step_uses_no_fft_and_no_complex_tensor():
    model = tiny_model("fedformer", torch.float32)
    calls = _Calls()
    with calls, torch.no_grad():
        model.step(torch.randn(2, D_IN), model.init_state(2))
    assert calls.names and not any("fft" in n for n in calls.names) and not calls.complex


def param_count(c, D, K):
    """Parameters at config c (reference_quirks: one FEB-f per stack, one FEA-f), d_input D, K targets."""
    d, E, h, f = c.d_model, c.d_model // c.n_heads, c.n_heads, c.d_ff
    W, Ld = c.window, c.label_len + c.horizon
    planes = 2 * h * E * E  # per mode
    attn = 2 * (d * d + d)  # W_q, W_o
    enc_layer = attn + 2 * d * f
    dec_layer = attn + 3 * (d * d + d) + 2 * d * f + 3 * d * K  # self, cross (W_q, W_k, W_o), FFN, trend conv
    fourier = planes * (n_modes(W, c.modes) + n_modes(Ld, c.modes) + n_modes(Ld, c.modes))
    return 2 * 3 * D * d + c.n_layers * enc_layer + c.d_layers * dec_layer + fourier + 2 * 2 * d + d * K + K


def test_shapes_and_parameters():
    model = tiny_model("fedformer")
    c = model.config
    assert (c.window, c.label_len, c.d_model, c.n_heads, c.n_layers, c.d_layers, c.d_ff) == (48, 24, 8, 2, 2, 1, 16)
    blocks = (model.encoder[0].attention.block, model.decoder[0].self_attention.block,
              model.decoder[0].cross_attention.block)
    assert [len(blocks[0].bins), len(blocks[1].bins), len(blocks[2].bins_q), len(blocks[2].bins_kv)] == [24, 14, 14, 24]
    assert sum(p.numel() for p in model.parameters()) == param_count(c, D_IN, N_TGT) == 4986
    assert [(f.name, f.shape) for f in model.state_spec()] == [("window", (47, D_IN))]
    assert model.state_bytes_per_cell() == 4 * 47 * D_IN
    x = torch.randn(3, 17, D_IN, dtype=F64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, 47, D_IN)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, 47, D_IN)
    # the default size (TSLib's ETTh1 script, 7 variates, W = H = 96)
    m = create_model("fedformer", d_input=7, n_targets=7, horizon=96)
    assert sum(p.numel() for p in m.parameters()) == param_count(m.config, 7, 7) == 14_984_711
    assert m.state_bytes_per_cell() == 4 * 95 * 7


def test_dropout_only_in_training():
    model = small(dropout=0.3).train()
    x = torch.randn(2, 15, D_IN, dtype=F64)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("kw", [{"reference_quirks": False, "cross_activation": "softmax"}, {}], ids=["paper", "ref"])
def test_gradcheck(kw):
    model = create_model("fedformer", d_input=D_IN, n_targets=N_TGT, horizon=2, target_index=TARGET_INDEX, window=6,
                         d_model=4, n_heads=2, n_layers=1, d_ff=4, modes=2, moving_avg=3, **kw)
    model = randomize(model.double()).eval()
    x = torch.randn(1, 3, D_IN, dtype=F64, requires_grad=True)
    ring = torch.randn(1, 5, D_IN, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: model.forward_with_state(x, (r,))[0], (x, ring))
    assert torch.autograd.gradcheck(lambda x, r: model.step(x[:, 0], (r,))[0], (x, ring))
    if not kw:  # through the parameters once, the paper's variant (it has the value projection too)
        return
    names = [n for n, _ in model.named_parameters()]

    def through_params(*ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x.detach(),))

    ps = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(through_params, ps)


# -- config ---------------------------------------------------------------------------------------------------------
def test_config_defaults_and_target_index():
    cfg = FEDformerConfig(d_input=7, n_targets=7, horizon=96)
    assert cfg.target_index == tuple(range(7))
    assert (cfg.window, cfg.label_len, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_layers, cfg.d_ff) == (
        96, 48, 512, 8, 2, 1, 2048)
    assert (cfg.modes, cfg.mode_select, cfg.moving_avg, cfg.activation, cfg.cross_activation) == (
        32, "random", 25, "gelu", "tanh")
    assert cfg.reference_quirks is True and cfg.dec_len == 144
    assert FEDformerConfig(window=20).label_len == 10  # None → W // 2
    assert FEDformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="target_index is required"):
        FEDformerConfig(d_input=3, n_targets=2)


@pytest.mark.parametrize("fields,message", [
    ({"window": 1}, "window must be ≥ 2"),
    ({"window": 12, "label_len": 13}, "label_len must be in"),
    ({"label_len": 0}, "label_len must be in"),
    ({"d_model": 0}, "d_model must be ≥ 1"),
    ({"n_heads": 0}, "n_heads must be ≥ 1"),
    ({"n_layers": 0}, "n_layers must be ≥ 1"),
    ({"d_layers": 0}, "d_layers must be ≥ 1"),
    ({"d_ff": 0}, "d_ff must be ≥ 1"),
    ({"modes": 0}, "modes must be ≥ 1"),
    ({"d_model": 12, "n_heads": 8}, "d_model must be a multiple of n_heads"),
    ({"moving_avg": 24}, "moving_avg must be odd"),
    ({"moving_avg": -1}, "moving_avg must be odd"),
    ({"mode_select": "lowest"}, "mode_select must be one of"),
    ({"activation": "tanh"}, "activation must be one of"),
    ({"cross_activation": "relu"}, "cross_activation must be one of"),
    ({"reference_quirks": 1}, "reference_quirks must be true or false"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"target_index": (0, 5)}, "out of range"),
])
def test_bad_configs_raise(fields, message):
    with pytest.raises(ValueError, match=message):
        FEDformerConfig(**{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})
    with pytest.raises(ValueError, match=message):
        create_model("fedformer", **{"d_input": 3, "n_targets": 2, "target_index": (0, 2), **fields})


@pytest.mark.parametrize("quirks", [True, False])
def test_weights_save_and_load_with_safetensors_shared_blocks_once(quirks, tmp_path):
    """The trainer's checkpoints and the bundles are safetensors, which refuse tensors stored twice: a block shared
    by several layers is in the state_dict once, and a fresh model loads it back to the same function."""
    from safetensors.torch import load_file, save_file

    model = small(reference_quirks=quirks)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    fresh = small(reference_quirks=quirks, seed=1)
    fresh.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    assert fresh.encoder[0].attention.block is fresh.encoder[-1].attention.block or not quirks
    x = torch.randn(2, 30, D_IN, dtype=F64)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
