"""MS³M specifics: per-cell phases, objective-driven top-k, masking, interpretability, warm-up."""

from __future__ import annotations

import itertools

import pytest
import torch

from models import create_model
from models.ms3m import MS3M, OBJECTIVES, objective_vector, sample_objectives
from tests.models.zoo_helpers import D_IN, MS3M_EXPERTS, rel_err, run_steps
from tests.models.zoo_helpers import tiny_ms3m as tiny


def mixed_phase_state(model: MS3M, batch: int = 4):
    """Each batch element stepped a different number of times: every expert sees different phases."""
    states = []
    with torch.no_grad():
        for b in range(batch):
            s = model.init_state(1)
            for _ in range(5 + 7 * b):
                _, s = model.step(torch.randn(1, D_IN, dtype=torch.float64), s)
            states.append(s)
    return tuple(torch.cat(parts, 0) for parts in zip(*states))


@pytest.mark.parametrize("L", [1, 2, 5, 17, 33, 50])
def test_step_matches_forward_with_different_phases_per_cell(L):
    m = tiny()
    s0 = mixed_phase_state(m)
    phases = s0[m.expert_state_slices()[3]][0][:, 0]
    assert len(set(phases.tolist())) > 1  # the cells really are at different phases
    x = torch.randn(4, L, D_IN, dtype=torch.float64)
    obj = sample_objectives(4, torch.Generator().manual_seed(L)).double()
    with torch.no_grad():
        out = m.forward_detailed(x, s0, obj)
        ys, gates, state = [], [], s0
        for t in range(L):
            o = m.step_detailed(x[:, t], state, obj)
            ys.append(o.y)
            gates.append(o.gate)
            state = o.state
    assert rel_err(torch.stack(ys, 1), out.y) <= 1e-10
    assert rel_err(torch.stack(gates, 1), out.gate) <= 1e-10
    for a, b in zip(state, out.state):
        assert rel_err(a, b) <= 1e-9


def test_scale_s_expert_updates_every_s_samples_on_the_mean():
    m = tiny()
    e = m.experts[1]  # lru @ scale 4
    x = torch.randn(1, 9, D_IN, dtype=torch.float64)
    zero = tuple(torch.zeros(1, *f.shape, dtype=torch.float64) for f in e.state_spec(D_IN, 8))
    with torch.no_grad():
        held, phase, _ = e(x, zero)
        f1, _ = e.net.forward_with_state(x[:, :8].view(1, 2, 4, D_IN).mean(2))
    assert torch.equal(held[0, :3], torch.zeros(3, 8, dtype=torch.float64))  # nothing before the 1st window
    assert torch.allclose(held[0, 3:7], f1[0, 0, 0].expand(4, 8))  # held for 4 samples
    assert torch.allclose(held[0, 7:9], f1[0, 1, 0].expand(2, 8))
    assert phase[0, :, 0].tolist() == [1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_budget_sets_top_k_and_weights_sum_to_one():
    m = tiny()
    x = torch.randn(3, 20, D_IN, dtype=torch.float64)
    for budget, k in [(1.0, 4), (0.5, 2), (0.26, 2), (0.25, 1), (0.01, 1)]:
        out = m.forward_detailed(x, objective=objective_vector("accuracy", budget, 3, torch.float64))
        assert torch.allclose(out.gate.sum(-1), torch.ones(3, 20, dtype=torch.float64))
        assert ((out.gate > 0).sum(-1) <= k).all() and ((out.gate > 0).sum(-1) == k).any()
        assert rel_err(out.contributions.sum(2), out.y) < 1e-12  # contributions explain the forecast


def test_masked_experts_keep_their_state_and_get_no_weight():
    m = tiny()
    s0 = mixed_phase_state(m, 2)
    active = torch.tensor([[True, False, True, False], [False, True, True, True]])
    x = torch.randn(2, D_IN, dtype=torch.float64)
    with torch.no_grad():
        out = m.step_detailed(x, s0, active=active)
    assert (out.gate[~active] == 0).all()
    for i, sl in enumerate(m.expert_state_slices()):
        for b in range(2):
            same = all(torch.equal(a[b], c[b]) for a, c in zip(out.state[sl], s0[sl]))
            assert same == (not active[b, i].item())
    with torch.no_grad():  # the same mask in parallel mode
        par = m.forward_detailed(x.unsqueeze(1), s0, active=active)
    assert rel_err(par.y[:, 0], out.y) < 1e-12


def test_training_supervises_every_expert_forecast():
    from models.training.trainer import masked_error, training_loss

    m = tiny(torch.float64).train()
    x, y = torch.randn(3, 20, D_IN, dtype=torch.float64), torch.randn(3, 20, m.config.horizon, m.config.n_targets,
                                                                        dtype=torch.float64)
    mask = torch.ones_like(y)
    torch.manual_seed(0)
    pred, terms, _ = m.training_forward(x)
    weight, members = terms["experts"]
    assert weight == m.config.member_weight and members.shape == (3, 20, m.n_experts, *y.shape[2:])
    # the mixture is the gate-weighted sum of exactly these member forecasts
    torch.manual_seed(0)
    out = m.forward_detailed(x, objective=sample_objectives(3))
    assert rel_err(out.contributions.sum(2), pred) < 1e-12
    each = torch.stack([masked_error(members[:, :, e], y, mask) for e in range(m.n_experts)]).sum()
    expected = masked_error(pred, y, mask) + terms["load_balance"] + terms["cost"] + weight * each
    assert torch.allclose(training_loss(pred, terms, y, mask), expected)
    # by default the mixture's loss reaches the gate but not the experts (they learn from their own forecasts)
    m.zero_grad()
    masked_error(pred, y, mask).backward()
    assert m.gate[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in m.experts.parameters())
    assert "experts" not in tiny(torch.float64, member_weight=0.0, mixture_trains_experts=True).training_forward(x)[1]
    with pytest.raises(ValueError, match="member_weight"):
        tiny(member_weight=0.0)


def test_objective_changes_routing_and_aux_losses():
    m = tiny(torch.float32).train()
    x = torch.randn(4, 16, D_IN)
    obj = sample_objectives(4, torch.Generator().manual_seed(0))
    out = m.forward_detailed(x, objective=obj)
    aux = m.aux_losses(out, obj)
    assert set(aux) == {"load_balance", "cost", "expected_cost"}
    (out.y.pow(2).mean() + aux["load_balance"] + aux["cost"]).backward()
    assert m.gate[0].weight.grad.abs().sum() > 0
    energy = m.forward_detailed(x, objective=objective_vector("energy", 1.0, 4))
    accuracy = m.forward_detailed(x, objective=objective_vector("accuracy", 1.0, 4))
    assert not torch.allclose(energy.logits, accuracy.logits)
    with pytest.raises(ValueError, match="objective"):
        objective_vector("fastest")
    with pytest.raises(ValueError, match="budget"):
        objective_vector("energy", 0.0)
    assert OBJECTIVES == ("accuracy", "latency", "energy", "balanced")


@pytest.mark.parametrize("index", [0, 1, 2])
def test_warm_up_error_falls_with_window_and_is_small_after_four_decay_times(index):
    m = tiny()
    tau = m.decay_time_samples(index)
    assert tau < 2000
    T = int(6 * tau) + 64
    x = torch.randn(2, T, D_IN, dtype=torch.float64)
    with torch.no_grad():
        _, state = m.forward_with_state(x)
    true = state[m.expert_state_slices()[index]]
    errors = []
    for mult in (0.5, 1, 2, 4):
        W = int(mult * tau)
        with torch.no_grad():
            warm = m.warm_expert(index, x[:, -W:], phase=true[0])
        assert torch.equal(warm[0], true[0])  # phase aligned
        errors.append(max(rel_err(a, b) for a, b in zip(warm[2:], true[2:])))
    assert all(a > b for a, b in itertools.pairwise(errors)), errors  # falls with W
    assert errors[-1] <= 1e-3, errors


def test_config_validation():
    with pytest.raises(KeyError, match="unknown model"):
        create_model("ms3m", experts=[{"kind": "nope"}])
    with pytest.raises(ValueError, match="scale"):
        create_model("ms3m", experts=[{"kind": "s4d", "scale": 0}])
    with pytest.raises(ValueError, match="costs"):
        create_model("ms3m", experts=MS3M_EXPERTS, costs=[1.0])


def test_float32_exactness_over_a_long_stream():
    m = tiny(torch.float32)
    x = torch.randn(3, 300, D_IN)
    s0 = m.init_state(3)
    with torch.no_grad():
        y, _ = m.forward_with_state(x, s0)
        ys, _ = run_steps(m, x, s0)
    assert rel_err(ys, y) <= 1e-4
