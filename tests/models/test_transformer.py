"""Transformer baseline: sliding-window ALiBi attention, KV-cache step, validity mask, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import create_model
from models.baselines.transformer import Transformer, alibi_slopes
from tests.models.zoo_helpers import rel_err, run_steps


def make(dtype=torch.float64, **cfg) -> Transformer:
    base = {"d_input": 3, "n_targets": 2, "horizon": 4, "target_index": (0, 2), "d_model": 8, "n_layers": 2,
            "n_heads": 2, "d_ff": 16, "window": 6}
    base.update(cfg)
    torch.manual_seed(0)
    return create_model("transformer", **base).to(dtype).eval()


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def reference_forward(m: Transformer, x: torch.Tensor) -> torch.Tensor:
    """Explicit per-position loop: softmax over the keys t−W+1 … t with scores q·k/√dh − m_h·(t − j)."""
    W, slopes = m.config.window, alibi_slopes(m.config.n_heads).to(x.dtype)
    h = m.encoder(x)
    for blk in m.blocks:
        q, k, v = (t.unflatten(-1, (blk.n_heads, blk.d_head)) for t in blk.qkv(blk.norm1(h)).chunk(3, -1))
        outs = []
        for t in range(x.shape[1]):
            j = torch.arange(max(0, t - W + 1), t + 1)
            s = torch.einsum("bhd,bjhd->bhj", q[:, t], k[:, j]) / math.sqrt(blk.d_head)
            s = s - slopes[:, None] * (t - j).to(x.dtype)
            outs.append(torch.einsum("bhj,bjhd->bhd", s.softmax(-1), v[:, j]).flatten(1))
        h = h + blk.out(torch.stack(outs, 1))
        h = h + blk.fc2(F.gelu(blk.fc1(blk.norm2(h))))
    return m.head(m.final_norm(h), x)


def test_alibi_slopes():
    assert torch.equal(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)], dtype=torch.float64))
    assert alibi_slopes(6).tolist() == [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]  # paper's non-power-of-2 rule


@pytest.mark.parametrize("block", [1, 4, 64])
def test_forward_matches_explicit_attention(block):
    """Both stateless paths (one masked call, query blocks) equal the textbook per-position loop."""
    m = make(n_heads=4, window=6)
    m.block = block  # L = 30 ≤ 64: the unblocked path; smaller blocks: the blocked one
    x = randn(2, 30, 3)
    with torch.no_grad():
        assert rel_err(m(x), reference_forward(m, x)) <= 1e-12


def test_single_layer_sliding_window():
    """One layer sees exactly the last `window` inputs: y_t = forward(x[t−W+1 … t])[-1]."""
    W = 5
    m = make(n_layers=1, window=W)
    x = randn(2, 80, 3)
    with torch.no_grad():
        y = m(x)  # L = 80 > block = 64: sliding, blocked path
        for t in range(W - 1, 80):
            assert rel_err(m(x[:, t - W + 1 : t + 1])[:, -1], y[:, t]) <= 1e-12, t
        x2 = x.clone()
        x2[:, 40 - W] += 1.0  # just outside the window of t = 40
        assert torch.allclose(m(x2)[:, 40], y[:, 40], rtol=0, atol=1e-13)
        assert not torch.allclose(m(x2)[:, 39], y[:, 39])


def test_receptive_field_grows_with_depth():
    """Two layers see n_layers·(W − 1) + 1 inputs, more than one window."""
    W = 5
    m = make(n_layers=2, window=W)
    x = randn(1, 40, 3)
    R = 2 * (W - 1) + 1
    with torch.no_grad():
        y = m(x)
        assert rel_err(m(x[:, 30 - R + 1 : 31])[:, -1], y[:, 30]) <= 1e-12
        assert rel_err(m(x[:, 30 - W + 1 : 31])[:, -1], y[:, 30]) > 1e-6


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["f64", "f32"])
def test_kv_cache_step_matches_forward(dtype, tol):
    """Stepping with the KV cache reproduces forward_with_state well past the window, from an empty
    cache and from a partly filled one; the final caches and mask agree too."""
    m = make(dtype, n_heads=4, window=7)
    x = randn(2, 50, 3, seed=1, dtype=dtype)
    with torch.no_grad():
        _, partial = m.forward_with_state(randn(2, 3, 3, seed=2, dtype=dtype))  # 3 of 7 slots filled
        for s0 in (m.init_state(2), partial):
            y_par, s_par = m.forward_with_state(x, s0)
            y_rec, s_rec = run_steps(m, x, s0)
            assert rel_err(y_rec, y_par) <= tol
            for a, b in zip(s_rec, s_par):
                assert rel_err(a, b) <= tol
        assert rel_err(m(x), m.forward_with_state(x)[0]) <= tol


@pytest.mark.parametrize("block", [1, 5, 64])
def test_chunks_of_any_length_chain(block):
    """forward_with_state over chunks shorter and longer than the window and the query block
    equals one pass; the final state holds the last `window` keys and values."""
    m = make(window=6)
    m.block = block
    x = randn(2, 41, 3)
    with torch.no_grad():
        y_full, s_full = m.forward_with_state(x)
        ys, s = [], m.init_state(2)
        for a, b in ((0, 1), (1, 4), (4, 17), (17, 23), (23, 41)):
            y, s = m.forward_with_state(x[:, a:b], s)
            ys.append(y)
    assert rel_err(torch.cat(ys, 1), y_full) <= 1e-10
    for a, b in zip(s, s_full):
        assert rel_err(a, b) <= 1e-10
    h = m.encoder(x)  # layer 0's keys are a projection of the inputs: check the cache holds the last 6
    k0 = m.blocks[0].qkv(m.blocks[0].norm1(h)).chunk(3, -1)[1]
    assert rel_err(s_full[0], k0[:, -6:]) <= 1e-12


def test_cache_validity_mask():
    """The zero state is an empty cache; each step fills one slot from the right; empty slots are
    ignored whatever they hold."""
    W = 6
    m = make(window=W)
    state = m.init_state(2)
    assert m.state_spec()[-1].name == "valid" and not state[-1].any()
    x = randn(2, W + 3, 3)
    with torch.no_grad():
        y0, _ = m.step(x[:, 0], state)
        assert rel_err(y0, m(x[:, :1])[:, 0]) <= 1e-12  # the first position attends to itself only
        for t in range(W + 3):
            _, state = m.step(x[:, t], state)
            n = min(t + 1, W)
            assert torch.equal(state[-1], torch.cat([torch.zeros(2, W - n), torch.ones(2, n)], 1).double())
        # garbage in the empty slots of a partly filled cache changes nothing
        _, s = m.forward_with_state(x[:, :2])
        empty = (s[-1] == 0).unsqueeze(-1)  # (B, W, 1)
        noisy = (*(t.masked_fill(empty, 1e3) for t in s[:-1]), s[-1])
        assert torch.equal(m.step(x[:, 2], noisy)[0], m.step(x[:, 2], s)[0])
        assert rel_err(m.forward_with_state(x[:, 2:], noisy)[0], m.forward_with_state(x[:, 2:], s)[0]) <= 1e-12


def test_state_layout():
    m = make(window=6, n_layers=3)
    spec = m.state_spec()
    assert [f.name for f in spec] == ["layer0.k", "layer0.v", "layer1.k", "layer1.v", "layer2.k", "layer2.v", "valid"]
    assert all(f.shape == (6, 8) for f in spec[:-1]) and spec[-1].shape == (6,)
    assert m.ssm_poles() is None


def test_gradcheck_float64():
    m = make(d_model=4, n_layers=2, n_heads=2, d_ff=8, window=3)
    m.block = 2  # L = 7 > 2: the blocked path too
    x = randn(1, 7, 3, seed=3).requires_grad_()
    _, s = m.forward_with_state(randn(1, 2, 3, seed=4))  # 2 of 3 slots filled
    caches = [t.detach().clone().requires_grad_() for t in s[:-1]]
    valid = s[-1].detach()
    assert torch.autograd.gradcheck(lambda x, *c: m.forward_with_state(x, (*c, valid))[0], (x, *caches))
    assert torch.autograd.gradcheck(lambda x, *c: m.step(x[:, 0], (*c, valid))[0], (x, *caches))
    assert torch.autograd.gradcheck(lambda x: m(x), (x,))


def test_bad_config_is_rejected_clearly():
    with pytest.raises(ValueError, match="d_model must be a multiple of n_heads"):
        create_model("transformer", d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="window"):
        create_model("transformer", window=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_step_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = make(torch.float32, window=6)

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x, *state):
            y, s = self.m.step(x, state)
            return (y, *s)

    with torch.no_grad():
        _, state = m.forward_with_state(randn(3, 4, 3, dtype=torch.float32))
        x = randn(3, 3, seed=5, dtype=torch.float32)
        expected = Step()(x, *state)
    names = ["x", *(f.name for f in m.state_spec())]
    path = tmp_path / "step.onnx"
    torch.onnx.export(Step(), (x, *state), str(path), opset_version=17, dynamo=False, input_names=names,
                      dynamic_axes={n: {0: "B"} for n in names})
    out = ort.InferenceSession(str(path)).run(None, {n: t.numpy() for n, t in zip(names, (x, *state))})
    for o, e in zip(out, expected):
        assert rel_err(torch.from_numpy(o), e) <= 1e-5
