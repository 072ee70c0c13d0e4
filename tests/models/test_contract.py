"""The streaming contract (models.base), checked for every registered model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load, save

from models import list_models, model_from_config
from models.base import check_state
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
    window_register,
)

MODELS = list_models()
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", MODELS)
def test_step_reproduces_forward(name, dtype):
    model = tiny_model(name, dtype)
    B = 2
    for L in (1, 7, 64, 257):
        x = torch.randn(B, L, D_IN, dtype=dtype, generator=torch.Generator().manual_seed(L))
        for init in ("zero", "nonzero"):
            s0 = model.init_state(B) if init == "zero" else random_state(model, B)
            with torch.no_grad():
                y_par, s_par = model.forward_with_state(x, s0)
                y_rec, s_rec = run_steps(model, x, s0)
            assert y_par.shape == (B, L, HORIZON, N_TGT)
            assert rel_err(y_rec, y_par) <= TOL[dtype], f"{name} L={L} {init}: outputs differ"
            for a, b, f in zip(s_rec, s_par, model.state_spec()):
                assert rel_err(a, b) <= TOL[dtype] * 10, f"{name} L={L} {init}: final state '{f.name}' differs"
            if init == "zero" and L > 1:
                with torch.no_grad():
                    assert rel_err(model(x), y_par) <= TOL[dtype]


@pytest.mark.parametrize("name", MODELS)
def test_chunked_continuation_equals_one_forward(name):
    model = tiny_model(name)
    x = torch.randn(2, 90, D_IN, dtype=torch.float64)
    s0 = random_state(model, 2)
    with torch.no_grad():
        y_full, s_full = model.forward_with_state(x, s0)
        y1, s1 = model.forward_with_state(x[:, :37], s0)
        y2, s2 = model.forward_with_state(x[:, 37:], s1)
    assert rel_err(torch.cat([y1, y2], 1), y_full) <= 1e-10
    for a, b in zip(s2, s_full):
        assert rel_err(a, b) <= 1e-9


@pytest.mark.parametrize("name", MODELS)
def test_causal(name):
    model = tiny_model(name)
    x = torch.randn(2, 40, D_IN, dtype=torch.float64)
    t = 23
    x2 = x.clone()
    x2[:, t + 1 :] += torch.randn_like(x2[:, t + 1 :])
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert torch.equal(y[:, : t + 1], y2[:, : t + 1]) or rel_err(y2[:, : t + 1], y[:, : t + 1]) < 1e-12
    assert not torch.allclose(y[:, t + 1 :], y2[:, t + 1 :])


@pytest.mark.parametrize("name", MODELS)
def test_state_spec_and_purity(name):
    model = tiny_model(name, torch.float32)
    spec = model.state_spec()
    assert spec and len({f.name for f in spec}) == len(spec)
    state = model.init_state(5)
    check_state(model, state, 5)
    assert all(t.dtype == torch.float32 and not t.is_complex() for t in state)
    assert model.state_bytes_per_cell() == 4 * sum(t[0].numel() for t in state)
    state = random_state(model, 5)
    frozen = tuple(t.clone() for t in state)
    with torch.no_grad():
        y, new = model.step(torch.randn(5, D_IN), state)
    assert y.shape == (5, HORIZON, N_TGT)
    assert all(torch.equal(a, b) for a, b in zip(state, frozen)), "step modified its input state in place"
    check_state(model, new, 5)


@pytest.mark.parametrize("name", MODELS)
def test_config_round_trip(name):
    model = tiny_model(name)
    cfg = json.loads(json.dumps(model.config.to_dict()))
    clone = model_from_config(name, cfg).double().eval()
    # the weights travel as safetensors (checkpoints, bundles), which refuse a tensor stored under two names
    clone.load_state_dict(load(save({k: v.contiguous() for k, v in model.state_dict().items()})))
    x = torch.randn(1, 12, D_IN, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_param_groups_cover_every_parameter(name):
    model = tiny_model(name, torch.float32)
    groups = model.param_groups(lr=1e-2, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    for g in groups:
        if g["group"] == "ssm":
            assert g["weight_decay"] == 0.0 and g["lr"] <= 1e-2


@pytest.mark.parametrize("name", MODELS)
def test_stable_under_aggressive_training(name):
    """100 AdamW steps at lr 1e-2 on random data: no NaN, SSM poles stay inside the unit circle."""
    model = tiny_model(name, torch.float32).train()
    opt = torch.optim.AdamW(model.param_groups(lr=1e-2, weight_decay=0.01, ssm_lr=1e-2))
    g = torch.Generator().manual_seed(0)
    L = 16 if model.sequential_forward else 32  # a loop over time: shorter sequences, the same 100 steps
    for _ in range(100):
        x = torch.randn(4, L, D_IN, generator=g) * 3
        target = torch.randn(4, L, HORIZON, N_TGT, generator=g)
        loss = torch.nn.functional.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    poles = model.ssm_poles()
    if poles is not None:
        assert (poles.abs() < 1).all()
    for m in model.modules():
        if hasattr(m, "continuous_poles"):
            assert (m.continuous_poles().real < 0).all()


@pytest.mark.parametrize("name", MODELS)
def test_beats_last_value_after_brief_training(name):
    torch.manual_seed(0)
    data = synthetic_kpis(24, 160)
    train, val = data[:18], data[18:]
    model = tiny_model(name, torch.float32, d_model=16).train()
    opt = torch.optim.AdamW(model.param_groups(lr=3e-3, weight_decay=0.01))
    g = torch.Generator().manual_seed(0)
    W = window_register(model)
    for _ in range(150):
        idx = torch.randint(0, train.shape[0], (8,), generator=g)
        if W:  # a window model trains as in its paper: the forecast after each of 64 random windows of W inputs
            idx = torch.randint(0, train.shape[0], (64,), generator=g)
            start = torch.randint(0, train.shape[1] - W - HORIZON + 1, (64,), generator=g)
            crops = torch.stack([train[i, s : s + W + HORIZON] for i, s in zip(idx.tolist(), start.tolist())])
            y = model.training_forward(crops[:, :W], last_only=True)[0]  # (64, 1, H, K)
            loss = torch.nn.functional.mse_loss(y[:, 0], crops[:, W:, [0, 2]])
        else:  # a loop over time in parallel mode (StreamingModel.sequential_forward): crops of 64 positions
            x = train[idx][:, torch.randint(0, 160 - 64, (1,), generator=g).item():][:, :64] \
                if model.sequential_forward else train[idx]
            y = model(x)[:, : x.shape[1] - HORIZON]
            loss = torch.nn.functional.mse_loss(y, horizon_targets(x, HORIZON))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        truth = horizon_targets(val, HORIZON)
        pred = model(val)[:, : val.shape[1] - HORIZON]
        last = val[:, : val.shape[1] - HORIZON, [0, 2]].unsqueeze(2).expand_as(truth)
        mse_model = torch.mean((pred - truth) ** 2).item()
        mse_last = torch.mean((last - truth) ** 2).item()
    assert mse_model < mse_last, f"{name}: MSE {mse_model:.4f} ≥ last-value {mse_last:.4f}"
