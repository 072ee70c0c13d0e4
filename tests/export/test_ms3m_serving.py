"""Expert-level MS³M serving (numpy pooling + per-expert ONNX graphs + gate graph) equals torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contract.objectives import objective_array
from models.export import write_bundle
from models.ms3m import objective_vector
from service.runtime import load_bundle
from service.runtime.ms3m_stepper import MS3MStepper
from tests.export.reference_stepper import reference_run
from tests.models.zoo_helpers import tiny_ms3m as tiny


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model = tiny(torch.float32)
    path = write_bundle(model, tmp_path_factory.mktemp("b") / "ms3m", name="ms3m-tiny", inputs=["a", "b", "c"],
                        targets=["a", "c"], period_ms=1000)
    return model, MS3MStepper(load_bundle(path))


def test_expert_graphs_and_gate_match_torch_over_a_stream_with_masks(served):
    model, stepper = served
    B, steps = 7, 200
    rng = np.random.default_rng(0)
    state_t = model.init_state(B)
    state_n = [s.numpy() for s in state_t]
    worst, fused = 0.0, 0
    for t in range(steps):
        x = rng.standard_normal((B, 3), dtype=np.float32)
        active = rng.random((B, 4)) < 0.7
        active[:, 0] |= ~active.any(1) | (t % 2 == 0)  # every other step the scale-1 expert is on everywhere
        obj_name = ["accuracy", "energy", "balanced", "latency"][t % 4]
        with torch.inference_mode():
            out = model.step_detailed(torch.from_numpy(x), state_t, objective_vector(obj_name, 0.75, B),
                                      torch.from_numpy(active))
        state_t = out.state
        y, state_n, details = stepper.run(x, state_n, objective_array(obj_name, 0.75, B), active)
        worst = max(worst, float(np.abs(y - out.y.numpy()).max() / max(np.abs(out.y.numpy()).max(), 1e-6)))
        np.testing.assert_allclose(details.gate, out.gate.numpy(), atol=1e-5)
        fused += details.fused
    assert worst <= 1e-4
    assert 0 < fused < steps  # both the fused graph and the per-expert graphs were checked
    for a, b in zip(state_n, state_t):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5)


def test_slow_experts_run_only_when_due_and_inactive_ones_never(served):
    model, stepper = served
    B, steps = 5, 48
    state = [s.numpy() for s in model.init_state(B)]
    active = np.ones((B, 4), bool)
    active[:, 1] = False  # lru@4 switched off
    total = np.zeros(4, np.int64)
    for _ in range(steps):
        _, state, details = stepper.run(np.ones((B, 3), np.float32), state, active=active)
        total += details.expert_runs
    assert total.tolist() == [B * steps // s if a else 0 for s, a in zip(stepper.scales, active[0])]
    assert (details.gate[:, 1] == 0).all()


def test_invalid_calls_are_explained(served):
    model, stepper = served
    state = [s.numpy() for s in model.init_state(2)]
    with pytest.raises(ValueError, match="at least one active expert"):
        stepper.run(np.ones((2, 3), np.float32), state, active=np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="needs"):
        stepper.run(np.ones((2, 3), np.float32), state[:3])
    with pytest.raises(ValueError, match="objective"):
        objective_array("fast", 1.0, 1)


def test_optimized_run_equals_the_reference_path_over_a_stream_with_masks(served):
    """Same samples through the first per-expert path and the optimized one: forecasts, gates and every state
    tensor equal (≤ 1e-5), and a tensor reported unchanged is the one passed in."""
    model, stepper = served
    B, steps = 9, 120
    rng = np.random.default_rng(3)
    state_ref = [s.numpy().copy() for s in model.init_state(B)]
    state_new = [a.copy() for a in state_ref]
    unchanged, fused = 0, 0
    for t in range(steps):
        x = rng.standard_normal((B, 3), dtype=np.float32)
        active = rng.random((B, 4)) < 0.6
        active[:, t % 4] |= ~active.any(1)
        active[:, 0] |= t % 3 == 0  # the fused graph's steps
        obj = objective_array(["accuracy", "energy", "balanced", "latency"][t % 4], 0.5 + 0.5 * (t % 2), B)
        y_ref, state_ref, w_ref = reference_run(stepper, x, state_ref, obj, active)
        passed = [a.copy() for a in state_new]
        y, state_new, details = stepper.run(x, passed, obj, active)
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(details.gate, w_ref, atol=1e-6)
        for i, (a, b) in enumerate(zip(state_new, state_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"state tensor {i} at step {t}")
        unchanged += int((~details.changed).sum())
        fused += details.fused
    assert 0 < fused < steps
    assert unchanged > 0  # slow experts between their updates are reported unchanged (not written back)
