"""PatchTST (models.baselines.patchtst): the paper's formula on explicit windows, patching with end padding,
RevIN's invariance, channel independence, the config's checks, and a step cost that grows with the window."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from models import create_model
from models.baselines.patchtst import PatchTSTConfig, n_patches, patch_index, patchify
from tests.models.zoo_helpers import (
    D_IN,
    HORIZON,
    N_TGT,
    TARGET_INDEX,
    check_target_windows,
    random_state,
    rel_err,
    run_steps,
    tiny_model,
)

EPS = 1e-5  # RevIN's and the norms' ε


def randomize(model, seed: int = 0):
    """Random weights, and BatchNorm running statistics away from (0, 1), so every parameter and statistic
    enters the formula tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p.shape[-1]))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype))
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model


# -- an independent computation of the paper's formula, one window at a time -------------------------------
def ref_patches(w: list[float], P: int, S: int) -> list[list[float]]:
    """Pad the end with S copies of the last value, then every P consecutive values from 0, S, 2S, …"""
    padded = list(w) + [w[-1]] * S
    return [padded[s : s + P] for s in range(0, len(padded) - P + 1, S)]


def ref_norm(z: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """z (N, d) through the layer's norm module, by its eval-mode formula."""
    if isinstance(norm, torch.nn.BatchNorm1d):  # fixed per-feature affine map with the running statistics
        return (z - norm.running_mean) / torch.sqrt(norm.running_var + EPS) * norm.weight + norm.bias
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    return (z - mean) / torch.sqrt(var + EPS) * norm.weight + norm.bias


def ref_layer(layer, z: torch.Tensor) -> torch.Tensor:
    """One post-norm encoder layer on the tokens z (N, d) of one window, attention head by head."""
    d = z.shape[-1]
    h, dh = layer.n_heads, d // layer.n_heads
    qkv = z @ layer.qkv.weight.T + layer.qkv.bias  # (N, 3d)
    q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
    heads = []
    for i in range(h):
        cols = slice(i * dh, (i + 1) * dh)
        scores = q[:, cols] @ k[:, cols].T / math.sqrt(dh)  # (N, N)
        weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
        heads.append(weights / weights.sum(-1, keepdim=True) @ v[:, cols])
    a = torch.cat(heads, -1) @ layer.out.weight.T + layer.out.bias
    z = ref_norm(z + a, layer.norm_attn.norm)
    u = z @ layer.fc1.weight.T + layer.fc1.bias
    u = 0.5 * u * (1 + torch.erf(u / math.sqrt(2)))  # exact GELU
    return ref_norm(z + u @ layer.fc2.weight.T + layer.fc2.bias, layer.norm_ff.norm)


def ref_patchtst(model, w: torch.Tensor) -> torch.Tensor:
    """The paper's PatchTST on one explicit window per channel: w (K, W) → (H, K)."""
    c = model.config
    out = []
    for k in range(w.shape[0]):
        wk = w[k]
        mu, sigma = wk.mean(), torch.sqrt(((wk - wk.mean()) ** 2).mean() + EPS)
        if c.revin:
            wk = (wk - mu) / sigma
        p = torch.tensor(ref_patches(wk.tolist(), c.patch_len, c.stride), dtype=w.dtype)  # (N, P)
        z = p @ model.patch_embed.weight.T + model.patch_embed.bias + model.pos_embed  # (N, d)
        for layer in model.encoder:
            z = ref_layer(layer, z)
        y = model.head.weight @ z.reshape(-1) + model.head.bias  # flatten patch-major → (H,)
        out.append(y * sigma + mu if c.revin else y)
    return torch.stack(out, -1)


# -- patching -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("W,P,S", [(48, 4, 4), (96, 16, 8), (10, 3, 2), (7, 7, 1), (9, 4, 3), (12, 5, 5), (2, 1, 1)])
def test_patches_are_the_end_padded_unfold(W, P, S):
    w = torch.randn(3, W, dtype=torch.float64)
    patches = patchify(w, patch_index(W, P, S))
    ref = torch.tensor([ref_patches(row.tolist(), P, S) for row in w], dtype=torch.float64)
    assert patches.shape == (3, n_patches(W, P, S), P) == ref.shape
    assert torch.equal(patches, ref)
    # the paper's route: replication padding by S at the end, then unfold
    assert torch.equal(patches, F.pad(w.unsqueeze(1), (0, S), mode="replicate").squeeze(1).unfold(-1, P, S))
    assert torch.equal(patches[:, -1, -1], w[:, -1])  # the last patch always reaches the newest value


def test_paper_patch_count_at_the_default_size():
    c = PatchTSTConfig()
    assert (c.window, c.patch_len, c.stride, c.d_model, c.n_heads, c.n_layers, c.d_ff, c.revin, c.norm) == (
        96, 16, 8, 128, 16, 3, 256, True, "batch")
    assert n_patches(96, 16, 8) == 12  # ⌊(96 − 16)/8⌋ + 2, the paper's N for L = 96 (and 42 for L = 336)
    assert n_patches(336, 16, 8) == 42


# -- the formula ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm,revin", [("batch", True), ("layer", True), ("batch", False)])
def test_forward_equals_the_paper_formula_on_explicit_windows(norm, revin):
    model = randomize(tiny_model("patchtst", window=12, patch_len=4, stride=2, norm=norm, revin=revin))
    W = model.config.window
    L = W + 9
    check_target_windows(model, ref_patchtst, (0, 3, W - 2, W - 1, W + 4, L - 1), 1e-10, L)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_step_reproduces_forward_with_random_weights_and_statistics(norm):
    model = randomize(tiny_model("patchtst", norm=norm))
    x = torch.randn(2, 70, D_IN, dtype=torch.float64)
    for s0 in (model.init_state(2), random_state(model, 2)):
        with torch.no_grad():
            y_par, s_par = model.forward_with_state(x, s0)
            y_rec, s_rec = run_steps(model, x, s0)
            assert rel_err(model.forward_last(x, s0), y_par[:, -1]) <= 1e-12
        assert rel_err(y_rec, y_par) <= 1e-12
        assert torch.equal(s_rec[0], s_par[0])


def test_revin_removes_the_windows_level_and_scale():
    """With RevIN, shifting a window shifts the forecast by the same amount (exactly: σ is unchanged) and
    scaling it scales the forecast (up to ε in σ); without RevIN neither holds."""
    w = torch.randn(2, N_TGT, 48, dtype=torch.float64)
    model = randomize(tiny_model("patchtst"))
    with torch.no_grad():
        y = model.forecast(w)
        assert rel_err(model.forecast(w + 3.7), y + 3.7) <= 1e-12
        assert rel_err(model.forecast(5.0 * w - 2.0), 5.0 * y - 2.0) <= 1e-4  # σ = √(var + ε): ε/var ≈ 1e-5
        zero = model.forecast(torch.zeros(1, N_TGT, 48, dtype=torch.float64))  # the zero state's window
        assert torch.isfinite(zero).all()
        plain = randomize(tiny_model("patchtst", revin=False))
        y_plain = plain.forecast(w)
        assert rel_err(plain.forecast(w + 3.7), y_plain + 3.7) > 1e-3


# -- channel independence ------------------------------------------------------------------------------------
def test_channels_are_independent_and_share_one_network():
    model = randomize(tiny_model("patchtst"))
    x = torch.randn(2, 60, D_IN, dtype=torch.float64)
    x_cov, x_tgt = x.clone(), x.clone()
    x_cov[..., 1] += torch.randn(2, 60, dtype=torch.float64)  # not a target: ignored
    x_tgt[..., TARGET_INDEX[1]] += torch.randn(2, 60, dtype=torch.float64)  # the second target only
    with torch.no_grad():
        y, y_cov, y_tgt = model(x), model(x_cov), model(x_tgt)
    assert torch.equal(y, y_cov)
    assert (y_tgt[..., 0] - y[..., 0]).abs().max() <= 1e-13
    assert not torch.allclose(y_tgt[..., 1], y[..., 1])
    # every channel is the same network: a one-channel model with the same weights gives channel k's forecast
    single = create_model("patchtst", d_input=1, n_targets=1, horizon=HORIZON, window=48, patch_len=4, stride=4,
                          d_model=8, n_heads=2, n_layers=2, d_ff=16).double().eval()
    single.load_state_dict(model.state_dict())
    with torch.no_grad():
        for k, col in enumerate(TARGET_INDEX):
            assert rel_err(single(x[..., [col]])[..., 0], y[..., k]) <= 1e-13


# -- config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    ({"d_model": 8, "n_heads": 3}, "n_heads must divide d_model"),
    ({"window": 8, "patch_len": 9}, "patch_len"),
    ({"patch_len": 0}, "patch_len"),
    ({"stride": 0}, "stride"),
    ({"patch_len": 4, "stride": 5}, "stride"),
    ({"window": 1, "patch_len": 1, "stride": 1}, "window"),
    ({"d_model": 0}, "d_model"),
    ({"n_heads": 0}, "n_heads"),
    ({"n_layers": 0}, "n_layers"),
    ({"d_ff": 0}, "d_ff"),
    ({"norm": "group"}, "norm"),
    ({"revin": "yes"}, "revin"),
])
def test_bad_configs_are_explained(bad, match):
    with pytest.raises(ValueError, match=match):
        PatchTSTConfig(d_input=2, n_targets=2, **bad)


def test_target_index_is_required_when_not_every_input_is_a_target():
    with pytest.raises(ValueError, match="target_index is required"):
        PatchTSTConfig(d_input=3, n_targets=2)
    assert PatchTSTConfig(d_input=7, n_targets=7).target_index == tuple(range(7))


# -- shapes, parameters, cost --------------------------------------------------------------------------------
def test_shapes_state_and_parameter_count():
    model = tiny_model("patchtst")
    c = model.config
    W, P, d, f, N = c.window, c.patch_len, c.d_model, c.d_ff, model.n_patches
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
    expected = (P * d + d) + N * d + c.n_layers * per_layer + (N * d * HORIZON + HORIZON)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [(s.name, s.shape) for s in model.state_spec()] == [("window", (N_TGT, W - 1))]
    x = torch.randn(3, 17, D_IN, dtype=torch.float64)
    y, state = model.forward_with_state(x)
    assert y.shape == (3, 17, HORIZON, N_TGT) and state[0].shape == (3, N_TGT, W - 1)
    y_t, s = model.step(x[:, 0], model.init_state(3))
    assert y_t.shape == (3, HORIZON, N_TGT) and s[0].shape == (3, N_TGT, W - 1)


def test_positional_embedding_is_not_decayed():
    model = tiny_model("patchtst", torch.float32)
    groups = {g["group"]: g for g in model.param_groups(lr=1e-3, weight_decay=0.1)}
    assert any(p is model.pos_embed for p in groups["no_decay"]["params"])
    assert not any(p is model.pos_embed for p in groups["decay"]["params"])
    assert any(p is model.head.weight for p in groups["decay"]["params"])


def test_state_and_step_cost_grow_with_the_window():
    flops, sizes = [], []
    for W in (16, 32, 64, 128):
        model = tiny_model("patchtst", torch.float32, window=W)
        assert model.n_patches == (W - 4) // 4 + 2
        assert model.state_bytes_per_cell() == 4 * N_TGT * (W - 1)  # a shift register of W − 1 per target
        sizes.append(model.state_bytes_per_cell())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.step(torch.randn(1, D_IN), model.init_state(1))
        flops.append(counter.get_total_flops())
    assert all(b > a for a, b in itertools.pairwise(sizes))
    assert all(b > a for a, b in itertools.pairwise(flops)), flops
    assert flops[-1] > 6 * flops[0]  # N grows from 5 to 33 patches: (at least) linear in the window


def test_window_bounds_the_receptive_field():
    model = randomize(tiny_model("patchtst", window=12, patch_len=4, stride=2))
    W = model.config.window
    x = torch.randn(1, 3 * W, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 10, TARGET_INDEX[0]] += 1.0
    with torch.no_grad():
        changed = (model(x) - model(x2)).abs().amax((0, 2, 3)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(10, 10 + W))


def test_gradcheck():
    model = create_model("patchtst", d_input=D_IN, n_targets=N_TGT, horizon=2, target_index=TARGET_INDEX, window=6,
                         patch_len=2, stride=2, d_model=4, n_heads=2, n_layers=1, d_ff=4).double().eval()
    x = torch.randn(1, 4, D_IN, dtype=torch.float64, requires_grad=True)
    ring = torch.randn(1, N_TGT, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, r: model.forward_with_state(x, (r,))[0], (x, ring))
    assert torch.autograd.gradcheck(lambda x, r: model.step(x[:, 0], (r,))[0], (x, ring))
