from __future__ import annotations

import pytest
import torch

from models import create_model
from models.baselines.lstm import LSTMConfig
from models.baselines.tcn import TCNConfig
from tests.models.zoo_helpers import D_IN, random_state, rel_err, run_steps, tiny_model

# -- LSTM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("input_proj", [False, True])
def test_lstm_step_equals_nn_lstm_single_step(input_proj):
    model = tiny_model("lstm", input_proj=input_proj, n_layers=3)
    s0 = random_state(model, 4)
    x_t = torch.randn(4, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y, (h, c) = model.step(x_t, s0)
        hc0 = (s0[0].transpose(0, 1).contiguous(), s0[1].transpose(0, 1).contiguous())
        z, (h_ref, c_ref) = model.lstm(model.encoder(x_t).unsqueeze(1), hc0)
    assert torch.allclose(h, h_ref.transpose(0, 1), atol=1e-14, rtol=0)
    assert torch.allclose(c, c_ref.transpose(0, 1), atol=1e-14, rtol=0)
    assert torch.allclose(y, model.head(z[:, 0], x_t), atol=1e-14, rtol=0)


def test_lstm_state_layout_and_forget_bias():
    model = tiny_model("lstm")
    assert [(f.name, f.shape) for f in model.state_spec()] == [("h", (2, 8)), ("c", (2, 8))]
    d = model.config.d_model
    for k in range(model.config.n_layers):
        b = getattr(model.lstm, f"bias_ih_l{k}") + getattr(model.lstm, f"bias_hh_l{k}")
        assert torch.equal(b[d : 2 * d], torch.ones(d, dtype=b.dtype))


def test_lstm_step_float32_long_stream():
    model = tiny_model("lstm", torch.float32)
    x = torch.randn(3, 300, D_IN)
    s0 = random_state(model, 3)
    with torch.no_grad():
        y_par, s_par = model.forward_with_state(x, s0)
        y_rec, s_rec = run_steps(model, x, s0)
    assert rel_err(y_rec, y_par) <= 1e-4
    assert all(rel_err(a, b) <= 1e-4 for a, b in zip(s_rec, s_par))


def test_lstm_gradcheck_float64():
    model = tiny_model("lstm", d_model=3, n_layers=2)
    x = torch.randn(1, 5, D_IN, dtype=torch.float64, requires_grad=True)
    h = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h, c: model.forward_with_state(x, (h, c))[0], (x, h, c))
    assert torch.autograd.gradcheck(lambda x, h, c: model.step(x[:, 0], (h, c))[0], (x, h, c))


def test_lstm_config_validation():
    with pytest.raises(ValueError, match="d_model"):
        LSTMConfig(d_model=0)
    with pytest.raises(ValueError, match="n_layers"):
        LSTMConfig(n_layers=0)


# -- TCN -------------------------------------------------------------------------------------------


def test_tcn_receptive_field():
    assert TCNConfig().receptive_field == 253
    m = create_model("tcn", d_input=2, n_targets=1, horizon=1)
    assert m.receptive_field == 253
    assert tiny_model("tcn").receptive_field == 1 + 2 * 2 * 3
    assert tiny_model("tcn", kernel_size=2, n_layers=4).receptive_field == 1 + 2 * 1 * 15


@pytest.mark.parametrize("weight_norm", [True, False])
def test_tcn_output_ignores_inputs_older_than_receptive_field(weight_norm):
    model = tiny_model("tcn", n_layers=3, weight_norm=weight_norm)
    rf = model.receptive_field  # 29
    L, t = 80, 70
    x = torch.randn(2, L, D_IN, dtype=torch.float64)
    older = x.clone()
    older[:, : t - rf + 1] += torch.randn_like(older[:, : t - rf + 1])  # everything outside the field
    edge = x.clone()
    edge[:, t - rf + 1] += 1.0  # the oldest input inside the field
    with torch.no_grad():
        y, y_older, y_edge = model(x), model(older), model(edge)
    assert torch.equal(y[:, t:], y_older[:, t:])
    assert not torch.allclose(y[:, t], y_edge[:, t])
    assert torch.equal(y[:, t + 1 :], y_edge[:, t + 1 :])


@pytest.mark.parametrize("weight_norm", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("L", [1, 5, 40])
def test_tcn_ring_buffer_step_equals_forward(L, activation, weight_norm):
    model = tiny_model("tcn", n_layers=3, activation=activation, weight_norm=weight_norm)
    x = torch.randn(2, L, D_IN, dtype=torch.float64)
    for s0 in (model.init_state(2), random_state(model, 2)):
        with torch.no_grad():
            y_par, s_par = model.forward_with_state(x, s0)
            y_rec, s_rec = run_steps(model, x, s0)
        assert rel_err(y_rec, y_par) <= 1e-12
        assert torch.equal(s_rec[0], s_par[0])  # the first buffer holds copies of the raw inputs
        for a, b in zip(s_rec, s_par):
            assert rel_err(a, b) <= 1e-12


def test_tcn_nonzero_state_is_the_history():
    """Forward from the state left by a prefix equals forward over prefix + x (no zero padding in between)."""
    model = tiny_model("tcn")
    prefix, x = torch.randn(2, 30, D_IN, dtype=torch.float64), torch.randn(2, 20, D_IN, dtype=torch.float64)
    with torch.no_grad():
        _, s = model.forward_with_state(prefix)
        y_cont = model(x, s)
        y_full = model(torch.cat([prefix, x], 1))[:, 30:]
    assert rel_err(y_cont, y_full) <= 1e-12


def test_tcn_state_spec():
    model = tiny_model("tcn")
    spec = [(f.name, f.shape) for f in model.state_spec()]
    assert spec == [("block0.conv1", (D_IN, 2)), ("block0.conv2", (8, 2)),
                    ("block1.conv1", (8, 4)), ("block1.conv2", (8, 4))]


def test_tcn_weight_norm_is_the_effective_weight():
    model = tiny_model("tcn")
    conv = model.blocks[1].conv1
    w = conv.weight()
    assert torch.allclose(w.flatten(1).norm(dim=1), conv.g, atol=1e-14, rtol=0)
    with torch.no_grad():
        conv.g.mul_(2.0)
    assert torch.allclose(conv.weight(), 2 * w, atol=1e-14, rtol=0)


def test_tcn_gradcheck_float64():
    model = tiny_model("tcn", d_model=3, activation="gelu")
    x = torch.randn(1, 6, D_IN, dtype=torch.float64, requires_grad=True)
    s = tuple(t.requires_grad_() for t in random_state(model, 1))
    assert torch.autograd.gradcheck(lambda x, *s: model.forward_with_state(x, s)[0], (x, *s))
    assert torch.autograd.gradcheck(lambda x, *s: model.step(x[:, 0], s)[0], (x, *s))


def test_tcn_config_validation():
    for field, value in (("d_model", 0), ("n_layers", 0), ("kernel_size", 1), ("activation", "tanh")):
        with pytest.raises(ValueError, match=field):
            TCNConfig(**{field: value})
