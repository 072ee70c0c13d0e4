"""AFSSM (models/seeds/afssm.py): the streaming contract at several compression ratios and options, the spectral
recurrence against an explicit time-domain circulant SSM, the adaptive mask (one function in train and eval
mode, straight-through gradients, re-selection in buffers), stability, state size, the hybrid attention option."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import create_model
from models.framing import FramedModel
from models.scan import linear_scan_ref
from models.seeds.afssm import (
    AFSSM,
    AdaptiveFrequencySSM,
    AdaptiveFrequencySSMConfig,
    AFSSMConfig,
    AFSSMLayer,
    WindowAttentionLayer,
    kept_components,
)
from models.seeds.afssm_spectral import dft_rows, pair_scan
from tests.models.zoo_helpers import (
    D_IN,
    HORIZON,
    N_TGT,
    horizon_targets,
    random_state,
    rel_err,
    run_steps,
    synthetic_kpis,
    tiny_model,
)

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
RATIOS = (0.25, 0.5, 1.0)
VARIANTS = {  # options away from the defaults, each exercised under the contract
    "plain": {"use_multi_scale": False, "use_adaptive_mask": False},
    "no-spectral-norm": {"use_spectral_norm": False},
    "three-scales": {"num_scales": 3, "compression_ratio": 0.25},
    "hybrid": {"use_hybrid_attention": True, "attention_layers": (1,), "attention_window": 5},
}


def check_step_equals_forward(model, dtype, lengths=(1, 7, 64, 257)) -> None:
    """Steps from the zero and from a reached state reproduce forward_with_state (outputs and final state)."""
    for L in lengths:
        x = torch.randn(2, L, D_IN, dtype=dtype, generator=torch.Generator().manual_seed(L))
        for s0 in (model.init_state(2), random_state(model, 2)):
            with torch.no_grad():
                y_par, s_par = model.forward_with_state(x, s0)
                y_rec, s_rec = run_steps(model, x, s0)
            assert y_par.shape == (2, L, HORIZON, N_TGT)
            assert rel_err(y_rec, y_par) <= TOL[dtype], f"L={L}"
            assert all(rel_err(a, b) <= 10 * TOL[dtype] for a, b in zip(s_rec, s_par)), f"L={L}"


def check_chunks_and_causality(model) -> None:
    x = torch.randn(2, 90, D_IN, dtype=torch.float64)
    s0 = random_state(model, 2)
    with torch.no_grad():
        y_full, s_full = model.forward_with_state(x, s0)
        y1, s1 = model.forward_with_state(x[:, :37], s0)
        y2, s2 = model.forward_with_state(x[:, 37:], s1)
        x2 = x.clone()
        x2[:, 24:] += torch.randn_like(x2[:, 24:])
        y_pert = model(x2)
        y = model(x)
    assert rel_err(torch.cat([y1, y2], 1), y_full) <= 1e-10
    assert all(rel_err(a, b) <= 1e-9 for a, b in zip(s2, s_full))
    assert rel_err(y_pert[:, :24], y[:, :24]) < 1e-12 and not torch.allclose(y_pert[:, 24:], y[:, 24:])


# -- the streaming contract at the ablation's ratios and with every option --------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("ratio", RATIOS)
def test_step_reproduces_forward_at_each_ratio(ratio, dtype):
    check_step_equals_forward(tiny_model("afssm", dtype, compression_ratio=ratio), dtype)


@pytest.mark.parametrize("ratio", RATIOS)
def test_chunked_continuation_and_causality_at_each_ratio(ratio):
    check_chunks_and_causality(tiny_model("afssm", compression_ratio=ratio))


@pytest.mark.parametrize("variant", VARIANTS)
def test_contract_for_each_option(variant):
    model = tiny_model("afssm", **VARIANTS[variant])
    check_step_equals_forward(model, torch.float64, lengths=(1, 9, 70))
    check_chunks_and_causality(model)


def test_train_mode_is_the_same_function_as_eval_mode_and_as_step():
    """With the adaptive mask, train mode with gradients also runs the N − k candidate components; the
    straight-through gate removes them from the value exactly, so forward (train, eval) and step agree."""
    model = tiny_model("afssm", compression_ratio=0.25).train()
    assert all(layer.adaptive for _, layer in model.spectral_layers())
    x = torch.randn(2, 50, D_IN, dtype=torch.float64)
    s0 = random_state(model, 2)
    y_train, s_train = model.forward_with_state(x, s0)  # gradients on: the candidates path
    assert y_train.requires_grad
    with torch.no_grad():
        y_step, s_step = run_steps(model, x, s0)
        y_eval, s_eval = model.eval().forward_with_state(x, s0)
    assert rel_err(y_train.detach(), y_eval) <= 1e-12 and rel_err(y_step, y_eval) <= 1e-10
    for a, b, c in zip(s_train, s_eval, s_step):
        assert rel_err(a.detach(), b) <= 1e-12 and rel_err(c, b) <= 1e-9


def test_mask_scores_learn_from_the_components_left_out():
    model = tiny_model("afssm", compression_ratio=0.5).train()
    layer = model.layers[0]
    x = torch.randn(3, 40, D_IN, dtype=torch.float64)
    model(x).pow(2).mean().backward()
    grad = layer.mask_logits.grad
    left_out = torch.ones(layer.d_state, dtype=torch.bool).index_fill(0, layer.kept, False)
    assert grad is not None and (grad[left_out].abs() > 0).all() and (grad[~left_out].abs() > 0).all()
    gate = layer.selection_gate()
    assert torch.equal(gate.detach(), (~left_out).to(gate.dtype))  # exactly the hard mask in value


def test_reselection_keeps_the_top_scores_in_a_buffer_and_stays_one_function():
    model = tiny_model("afssm", compression_ratio=0.5, mask_update_every=10)
    layer = model.layers[0]
    with torch.no_grad():
        layer.mask_logits.copy_(torch.tensor([0.0, -1.0, 0.5, 2.0, -2.0, 1.0, 3.0, -0.5]))
    assert model.training_event(7, plateau=False) is None  # not a multiple of mask_update_every
    event = model.training_event(10, plateau=False)
    assert event == {"afssm_mask": {"layer0": [2, 3, 5, 6]}}  # layer 1 kept its (initial) top four
    assert layer.kept.tolist() == [2, 3, 5, 6] and model.describe()["kept_indices"]["layer0"] == [2, 3, 5, 6]
    assert model.training_event(20, plateau=False) is None  # same scores: no change, no event
    check_step_equals_forward(model, torch.float64, lengths=(1, 33))
    for train in (True, False):  # a checkpoint restores the selection
        clone = create_model("afssm", **model.config.to_dict()).double().train(train)
        assert clone.layers[0].kept.tolist() == [0, 1, 2, 3]
        clone.load_state_dict(model.state_dict())
        assert clone.layers[0].kept.tolist() == [2, 3, 5, 6]
        x = torch.randn(2, 20, D_IN, dtype=torch.float64)
        with torch.no_grad():
            assert torch.equal(clone.eval()(x), model(x))


def test_fixed_mask_keeps_the_lowest_components_and_has_no_schedule():
    model = tiny_model("afssm", compression_ratio=0.25, use_adaptive_mask=False)
    assert [layer.kept.tolist() for _, layer in model.spectral_layers()] == [[0, 1], [0, 1]]
    assert not any("mask_logits" in n for n, _ in model.named_parameters())
    assert model.training_event(200, plateau=True) is None
    full = tiny_model("afssm", compression_ratio=1.0)  # at ratio 1 there is nothing to select
    assert not any(layer.adaptive for _, layer in full.spectral_layers()) and not full.describe()["adaptive_mask"]


# -- the spectral recurrence is a selective SSM with a circulant transition ------------------------------------------
def circulant(first_column: torch.Tensor) -> torch.Tensor:
    """(..., N) → (..., N, N) with M[m, n] = c[(m − n) mod N]: the circulant matrix with that first column."""
    N = first_column.shape[-1]
    i = torch.arange(N)
    return first_column[..., (i[:, None] - i[None, :]) % N]


def time_domain_ssm(layer: AFSSMLayer, x, delta, B, C, h0=None, projector=None):
    """h_t = Ā_t h_{t−1} + Δ_t x_t B_t per channel and scale with Ā_t the explicit N × N circulant matrix whose
    eigenvalues are exp(Δ_t λ_j); y_t = Σ_s w_s Re(C_t · h_t) + D x_t. projector (N, N): B_t ← P B_t (the state
    stays in P's range). x, Δ (B, L, E); B, C (B, L, N); h0 (B, S, E, N) complex → y (B, L, E), h (B, S, E, N)."""
    re, im = layer.eigenvalues()
    lam = torch.complex(re, im).T  # (E, N)
    scales = torch.tensor(layer.scale_values, dtype=x.dtype)
    w = layer.scale_weights()
    Bsz, L, E = x.shape
    N = lam.shape[1]
    h = torch.zeros(Bsz, len(scales), E, N, dtype=torch.complex128) if h0 is None else h0
    ys = []
    for t in range(L):
        dt = delta[:, t, None, :] * scales[None, :, None]  # (B, S, E)
        eig = torch.exp(dt.unsqueeze(-1) * lam)  # (B, S, E, N): the eigenvalues of Ā_t
        A_bar = circulant(torch.fft.ifft(eig, dim=-1))  # (B, S, E, N, N): eigenvalues fft(first column)
        b = B[:, t].to(torch.complex128)  # (B, N)
        if projector is not None:
            b = b @ projector.T
        h = (A_bar @ h.unsqueeze(-1)).squeeze(-1) + (dt * x[:, t, None, :]).unsqueeze(-1) * b[:, None, None, :]
        y_s = (h * C[:, t, None, None, :]).sum(-1).real  # (B, S, E)
        ys.append((y_s * w[:, None]).sum(1) + layer.D * x[:, t])
    return torch.stack(ys, 1), h


def layer_inputs(layer: AFSSMLayer, L: int = 25):
    u = torch.randn(2, L, layer.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x, z, delta, B, C, _ = layer.mixer_inputs(u, torch.zeros(2, layer.d_conv - 1, layer.d_inner,
                                                                 dtype=torch.float64))
    return u, x, z, delta, B, C


@pytest.mark.parametrize("multi_scale", [False, True], ids=["one-scale", "two-scales"])
def test_full_ratio_is_a_selective_ssm_with_a_circulant_transition(multi_scale):
    """At ratio 1.0 with the full fixed mask, the layer's spectral scan equals the direct time-domain recurrence
    with the circulant Ā_t built from the eigenvalues, from the zero and from a non-zero state (float64)."""
    model = tiny_model("afssm", compression_ratio=1.0, use_adaptive_mask=False, use_multi_scale=multi_scale)
    layer = model.layers[0]
    assert layer.kept.tolist() == list(range(layer.d_state))
    with torch.no_grad():  # eigenvalues and mixing off their init, so every degree of freedom matters
        g = torch.Generator().manual_seed(2)
        layer.A_log.add_(0.5 * torch.randn(layer.A_log.shape, generator=g, dtype=torch.float64))
        layer.A_imag.add_(torch.randn(layer.A_imag.shape, generator=g, dtype=torch.float64))
        if multi_scale:
            layer.scale_logits.copy_(torch.tensor([0.3, -0.4]))
    u, x, z, delta, B, C = layer_inputs(layer)
    Fu = torch.fft.fft(torch.eye(layer.d_state, dtype=torch.complex128), dim=0, norm="ortho")  # unitary DFT
    S, N, E = layer.n_scales, layer.d_state, layer.d_inner
    h0_time = torch.randn(2, S, E, N, dtype=torch.complex128, generator=torch.Generator().manual_seed(3))
    h0_spec = torch.einsum("jn,bsen->bjse", Fu, h0_time)  # (B, N, S, E)
    with torch.no_grad():
        for h_time, h_spec in ((None, None), (h0_time, (h0_spec.real, h0_spec.imag))):
            y_ref, hT_ref = time_domain_ssm(layer, x, delta, B, C, h_time)
            y, hT = layer.ssm(x, delta, B, C, h_spec)
            assert rel_err(y, y_ref) <= 1e-10
            hT_spec = torch.einsum("jn,bsen->bjse", Fu, hT_ref)  # the final state moved to the Fourier basis
            assert rel_err(torch.complex(*hT), hT_spec) <= 1e-10
        out, _ = layer(u)
        assert rel_err(out, layer.out_proj(time_domain_ssm(layer, x, delta, B, C)[0] * F.silu(z))) <= 1e-10


def test_compressed_state_is_the_circulant_ssm_confined_to_the_kept_fourier_modes():
    """At ratio 0.5 the layer is the same time-domain circulant SSM with the input projected onto the span of the
    kept Fourier modes (P_S commutes with every circulant Ā_t); its state is that span's coordinates."""
    model = tiny_model("afssm", compression_ratio=0.5, mask_update_every=1)
    layer = model.layers[0]
    with torch.no_grad():
        layer.mask_logits.copy_(torch.tensor([0.0, 2.0, -1.0, 2.5, 1.5, -2.0, 3.0, -3.0]))
    model.training_event(1, plateau=False)
    assert layer.kept.tolist() == [1, 3, 4, 6]
    Fu = torch.fft.fft(torch.eye(layer.d_state, dtype=torch.complex128), dim=0, norm="ortho")
    Fs = Fu[layer.kept]  # (k, N)
    P = Fs.conj().T @ Fs  # (N, N) orthogonal projector onto the kept modes
    _, x, _, delta, B, C = layer_inputs(layer)
    S, k, E = layer.n_scales, layer.n_kept, layer.d_inner
    h0_spec = torch.randn(2, k, S, E, dtype=torch.complex128, generator=torch.Generator().manual_seed(4))
    h0_time = torch.einsum("jn,bjse->bsen", Fs.conj(), h0_spec)  # in the span of the kept modes
    with torch.no_grad():
        y_ref, hT_ref = time_domain_ssm(layer, x, delta, B, C, h0_time, projector=P)
        y, hT = layer.ssm(x, delta, B, C, (h0_spec.real, h0_spec.imag))
    assert rel_err(y, y_ref) <= 1e-10
    assert rel_err(torch.complex(*hT), torch.einsum("jn,bsen->bjse", Fs, hT_ref)) <= 1e-10
    assert rel_err(torch.einsum("nm,bsem->bsen", P, hT_ref), hT_ref) <= 1e-10  # never left the span


def test_dft_rows_are_the_unitary_dft_and_pair_scan_is_the_linear_recurrence():
    idx = torch.tensor([0, 3, 5, 7])
    re, im = dft_rows(idx, 8, torch.float64)
    Fu = torch.fft.fft(torch.eye(8, dtype=torch.complex128), dim=0, norm="ortho")
    assert torch.allclose(torch.complex(re, im), Fu[idx], atol=1e-15, rtol=0)
    g = torch.Generator().manual_seed(0)
    for L in (1, 2, 5, 16, 37):
        shape = (2, L, 3, 4)
        a = torch.polar(torch.rand(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g,
                                                                                         dtype=torch.float64))
        b = torch.randn(shape, generator=g, dtype=torch.complex128)
        h0 = torch.randn(2, 3, 4, generator=g, dtype=torch.complex128)
        for init in (None, h0):
            assert torch.allclose(pair_scan(a, b, init), linear_scan_ref(a, b, init, dim=1), atol=1e-13, rtol=0)


# -- stability, state size, description -------------------------------------------------------------------------------
def test_spectral_normalization_keeps_every_pole_inside_the_unit_circle():
    model = tiny_model("afssm")
    with torch.no_grad():
        for _, layer in model.spectral_layers():  # push toward the boundary and far outside the init
            layer.A_log.copy_(torch.linspace(-8.0, 4.0, layer.A_log.numel(), dtype=torch.float64).view_as(layer.A_log))
            layer.A_imag.mul_(50.0)
            layer.dt_proj.bias.fill_(5.0)
    poles = model.ssm_poles()
    assert poles.shape == (2 * 2 * 4 * 16,) and (poles.abs() < 1).all()
    layer = model.layers[0]
    x = torch.randn(4, 30, layer.d_model, dtype=torch.float64) * 5
    with torch.no_grad():  # the input-dependent transitions too: |exp(Δ_t s λ_j)| < 1 for every input
        delta = layer.mixer_inputs(x, torch.zeros(4, layer.d_conv - 1, layer.d_inner, dtype=torch.float64))[2]
    re = layer.continuous_poles().real  # (k, E)
    scales = torch.tensor(layer.scale_values, dtype=torch.float64)
    mags = torch.exp(delta[:, :, None, None, :] * scales[:, None] * re[:, None])  # (B, L, k, S, E)
    assert (re < 0).all() and (mags < 1).all()
    free = tiny_model("afssm", use_spectral_norm=False)  # the ablation: Re λ is unconstrained
    with torch.no_grad():
        free.layers[0].A_real.fill_(0.2)
    assert (free.layers[0].discrete_poles().abs() > 1).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_state_bytes_per_cell_fall_with_the_compression_ratio(dtype):
    sizes = {}
    for ratio in (1.0, 0.75, 0.5, 0.25, 0.1):
        model = tiny_model("afssm", dtype, compression_ratio=ratio)
        k = kept_components(ratio, 8)
        E, S = 16, 2
        per_layer = 2 * E + 2 * k * S * E  # conv (d_conv − 1, E) + ssm_re, ssm_im (k, S, E)
        assert model.state_bytes_per_cell() == 2 * per_layer * 4
        assert model.describe()["state_bytes_per_cell"] == model.state_bytes_per_cell()
        assert all(t.dtype == dtype and t[0].numel() == f.numel for t, f in
                   zip(model.init_state(1), model.state_spec()))
        sizes[ratio] = model.state_bytes_per_cell()
    assert sizes[1.0] > sizes[0.75] > sizes[0.5] > sizes[0.25] > sizes[0.1]
    assert sizes[1.0] - sizes[0.5] == 2 * (sizes[0.5] - sizes[0.25])  # the spectral part is linear in k


def test_kept_components_round_up_without_float_noise():
    assert kept_components(0.1, 30) == 3 and kept_components(0.25, 8) == 2 and kept_components(0.3, 8) == 3
    assert kept_components(1.0, 16) == 16 and kept_components(0.01, 16) == 1


def test_describe_reports_the_compression():
    model = tiny_model("afssm", compression_ratio=0.25)
    info = model.describe()
    assert info["compression_ratio"] == 0.25 and info["kept_components_per_channel"] == 2
    assert info["d_state"] == 8 and info["num_scales"] == 2 and info["adaptive_mask"] is True
    assert info["kept_indices"] == {"layer0": [0, 1], "layer1": [0, 1]}
    assert info["spectral_state_bytes_per_cell"] == 2 * (2 * 2 * 2 * 16) * 4
    assert info["state_bytes_per_cell"] == model.state_bytes_per_cell()


# -- configuration, aliases -----------------------------------------------------------------------------------------
def test_seed_names_build_the_forecaster():
    cfg = AdaptiveFrequencySSMConfig(d_input=2, n_targets=1, target_index=(0,), d_model=8, n_layers=1, d_state=4)
    assert AdaptiveFrequencySSMConfig is AFSSMConfig
    model = AdaptiveFrequencySSM(cfg)
    assert isinstance(model, AFSSM) and model.name == "afssm"
    framed = AdaptiveFrequencySSM(AFSSMConfig(d_input=2, n_targets=2, normalization="causal", d_model=8))
    assert isinstance(framed, FramedModel)
    seeded = create_model("afssm", d_input=1, n_targets=1, n_layer=3, d_model=8, compression_ratio=0.25)
    assert seeded.config.n_layers == 3 and len(seeded.layers) == 3 and seeded.layers[0].n_kept == 4


@pytest.mark.parametrize("bad, match", [
    ({"compression_ratio": 0.0}, "compression_ratio"),
    ({"compression_ratio": 1.5}, "compression_ratio"),
    ({"num_scales": 0}, "num_scales"),
    ({"scale_factor": 0.0}, "scale_factor"),
    ({"mask_update_every": -1}, "mask_update_every"),
    ({"d_conv": 1}, "d_conv"),
    ({"use_hybrid_attention": True}, "attention_layers"),
    ({"use_hybrid_attention": True, "attention_layers": (2,)}, "out of range"),
    ({"use_hybrid_attention": True, "attention_layers": (0,), "n_heads": 3}, "n_heads"),
    ({"attention_layers": (0,)}, "use_hybrid_attention"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        AFSSMConfig(d_model=8, n_layers=2, **bad)


# -- the hybrid attention option ------------------------------------------------------------------------------------
def test_window_attention_is_causal_softmax_attention_over_the_last_window():
    model = tiny_model("afssm", use_hybrid_attention=True, attention_layers=(0,), attention_window=4)
    layer = model.layers[0]
    assert isinstance(layer, WindowAttentionLayer) and isinstance(model.layers[1], AFSSMLayer)
    assert [f.name for f in model.state_spec()] == ["layer0.keys", "layer0.values", "layer1.conv", "layer1.ssm_re",
                                                    "layer1.ssm_im"]
    with torch.no_grad():
        layer.pos_bias.normal_(generator=torch.Generator().manual_seed(0))
        u = torch.randn(2, 9, 8, dtype=torch.float64)
        y, _ = layer(u)
        q, k, v = layer.qkv(u).chunk(3, -1)
        pad = torch.zeros(2, 3, 8, dtype=torch.float64)
        K, V = torch.cat([pad, k], 1), torch.cat([pad, v], 1)
        for t in range(9):
            heads = []
            for h in range(2):
                sl = slice(4 * h, 4 * h + 4)
                scores = K[:, t : t + 4, sl] @ q[:, t, sl].unsqueeze(-1) / 2.0  # (B, W, 1), √d_head = 2
                att = torch.softmax(scores.squeeze(-1) + layer.pos_bias[h], -1)  # (B, W)
                heads.append((att.unsqueeze(-1) * V[:, t : t + 4, sl]).sum(1))
            assert torch.allclose(y[:, t], layer.out(torch.cat(heads, -1)), atol=1e-13, rtol=0)


def test_bundle_of_a_hybrid_compressed_model_serves_the_trained_function(tmp_path):
    """A bundle of a compressed model with attention and a re-selected mask: the kept indices travel with the weights
    (the exported step has them as constants), the compression facts are in model_info, and both the rebuilt model
    and the bundled ONNX step (real tensors only) compute the trained function."""
    import json

    import onnxruntime as ort

    from contract.bundle import MANIFEST
    from models.export import graph_io_names, load_bundle_model, onnx_has_complex, write_bundle

    model = tiny_model("afssm", torch.float32, compression_ratio=0.25, mask_update_every=1, use_hybrid_attention=True,
                       attention_layers=(0,), attention_window=6, n_layers=3)
    with torch.no_grad():
        model.layers[1].mask_logits.copy_(torch.tensor([0.0, -1.0, 0.5, 2.0, -2.0, 1.0, 3.0, -0.5]))
    model.training_event(1, plateau=False)
    assert model.layers[1].kept.tolist() == [3, 6]
    root = write_bundle(model, tmp_path / "afssm", name="afssm-tiny", inputs=["a", "b", "c"], targets=["a", "c"],
                        period_ms=1000, torchscript=False)
    manifest = json.loads((root / MANIFEST).read_text())
    info = manifest["model_info"]
    assert info["kept_components_per_channel"] == 2 and info["kept_indices"] == {"layer1": [3, 6], "layer2": [0, 1]}
    assert info["state_bytes_per_cell"] == 4 * sum(math.prod(f["shape"]) for f in manifest["state"])
    loaded, _ = load_bundle_model(root)
    assert loaded.layers[1].kept.tolist() == [3, 6]
    onnx_path = root / manifest["files"]["onnx"]["path"]
    assert not onnx_has_complex(onnx_path)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names, feeds = graph_io_names(loaded)[0], {i.name for i in sess.get_inputs()}
    ref_state = model.init_state(2)
    loaded_state = loaded.init_state(2)
    rt_state = [t.numpy() for t in ref_state]
    with torch.inference_mode():
        for x in torch.randn(100, 2, D_IN, generator=torch.Generator().manual_seed(0)):
            y_ref, ref_state = model.step(x, ref_state)
            y_loaded, loaded_state = loaded.step(x, loaded_state)
            out = sess.run(None, {n: v for n, v in zip(names, [x.numpy(), *rt_state]) if n in feeds})
            rt_state = out[1:]
            assert torch.equal(y_loaded, y_ref)
            assert rel_err(torch.from_numpy(out[0]), y_ref) <= 1e-4


# -- training (slow: the contract's training checks at the ablation's other ratios) -----------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.25, 1.0])
def test_stable_and_beats_last_value_at_other_ratios(ratio):
    model = tiny_model("afssm", torch.float32, compression_ratio=ratio).train()
    opt = torch.optim.AdamW(model.param_groups(lr=1e-2, weight_decay=0.01, ssm_lr=1e-2))
    g = torch.Generator().manual_seed(0)
    for step in range(1, 101):
        x = torch.randn(4, 32, D_IN, generator=g) * 3
        loss = F.mse_loss(model(x), torch.randn(4, 32, HORIZON, N_TGT, generator=g))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.training_event(step, plateau=False)
    assert all(torch.isfinite(p).all() for p in model.parameters()) and (model.ssm_poles().abs() < 1).all()

    torch.manual_seed(0)
    data = synthetic_kpis(24, 160)
    train, val = data[:18], data[18:]
    model = tiny_model("afssm", torch.float32, d_model=16, compression_ratio=ratio).train()
    opt = torch.optim.AdamW(model.param_groups(lr=3e-3, weight_decay=0.01))
    for step in range(1, 151):
        x = train[torch.randint(0, train.shape[0], (8,), generator=g)]
        loss = F.mse_loss(model(x)[:, : x.shape[1] - HORIZON], horizon_targets(x, HORIZON))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.training_event(step, plateau=False)
    model.eval()
    with torch.no_grad():
        truth = horizon_targets(val, HORIZON)
        pred = model(val)[:, : val.shape[1] - HORIZON]
        last = val[:, : val.shape[1] - HORIZON, [0, 2]].unsqueeze(2).expand_as(truth)
    assert torch.mean((pred - truth) ** 2) < torch.mean((last - truth) ** 2)
    assert math.isfinite(float(pred.abs().max()))
