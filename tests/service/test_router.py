"""ExpertRouter alone (service/router/router.py), on a fake host: decision periods, objectives and budgets,
realized-error feedback, deactivation now / activation after warm-up, the decision log."""

from __future__ import annotations

import numpy as np
import pytest

from contract.objectives import objective_array
from service.router.router import ExpertRouter
from tests.service.fakes import FakeHost, step_result

COSTS = [0.5, 0.3, 0.2]  # relative costs of experts e0, e1, e2


def make(objective: str = "balanced", budget: float = 1.0, period: int = 4, cells: int = 2):
    host = FakeHost(experts=3, costs=COSTS, capacity=8)
    for i in range(cells):
        host.table.take(f"cell-{i}")
    host.objective[:] = objective_array(objective, budget)[0]
    router = ExpertRouter(host, decision_period=period, clock=lambda: 1_700_000_000.0)
    return host, router


def observe(router: ExpertRouter, slots, errors=(0.1, 0.1, 0.1), logits=(0.0, 0.0, 0.0), steps: int = 1):
    """`steps` steps where expert e's 1-step forecast misses the actual by errors[e]; returns due slots."""
    slots = np.asarray(slots)
    n = len(slots)
    due = np.zeros(0, np.int64)
    for _ in range(steps):
        actual = np.zeros((n, 1))
        fc = np.tile(np.asarray(errors, np.float32)[None, :, None], (n, 1, 1))
        due = router.observe(step_result(slots, actual, fc, np.tile(np.asarray(logits), (n, 1))))
    return due


def test_host_without_experts_is_refused():
    with pytest.raises(ValueError, match="no experts"):
        ExpertRouter(FakeHost(experts=0))


def test_costs_are_normalized_and_default_to_equal():
    _, router = make()
    assert router.costs == pytest.approx(COSTS)
    even = ExpertRouter(FakeHost(experts=4))
    assert even.costs == pytest.approx([0.25] * 4)


def test_decision_due_after_the_period_and_per_cell_periods():
    _, router = make(period=3)
    assert len(observe(router, [0, 1], steps=2)) == 0
    assert observe(router, [0, 1]).tolist() == [0, 1]
    router.decide(np.array([0, 1]))
    router.set_period(np.array([1]), 1)
    assert observe(router, [0, 1]).tolist() == [1]


def test_accuracy_with_full_budget_keeps_every_expert():
    host, router = make("accuracy", 1.0)
    observe(router, [0, 1], steps=4)
    assert router.decide(np.array([0, 1])) == []  # already all on: nothing to warm
    assert host.active[:2].all()


def test_energy_keeps_only_experts_worth_their_cost():
    host, router = make("energy", 1.0)
    observe(router, [0], errors=(0.1, 0.1, 0.1), steps=4)
    router.decide(np.array([0]))
    # equal preference and error: score = 1 / cost = (2, 3.3, 5); every expert scores ≥ τ = 0.3 of the best
    # and the costs sum to the budget of 1, so all stay on
    assert host.active[0].tolist() == [True, True, True]
    host2, router2 = make("energy", 0.5)
    observe(router2, [0], steps=4)
    router2.decide(np.array([0]))
    assert host2.active[0].tolist() == [False, True, True]  # e2 (0.2) + e1 (0.3) fill the budget of 0.5


def test_budget_bounds_the_summed_cost_but_one_expert_always_runs():
    host, router = make("accuracy", 0.05)  # below every expert's cost
    observe(router, [0], steps=4)
    router.decide(np.array([0]))
    assert host.active[0].sum() == 1


def test_realized_error_moves_the_choice():
    host, router = make("latency", 0.5)
    observe(router, [0], errors=(0.01, 1.0, 1.0), steps=40)  # e0 is 100× more accurate than the others
    router.decide(np.array([0]))
    assert host.active[0, 0]
    assert router.error[0, 0] < router.error[0, 1]


def test_gate_preferences_move_the_choice():
    host, router = make("accuracy", 0.3)  # room for one of e1 / e2 or e2 alone
    observe(router, [0], logits=(0.0, 5.0, 0.0), steps=4)
    router.decide(np.array([0]))
    assert host.active[0].tolist() == [False, True, False]


def test_deactivation_now_activation_returned_for_warm_up():
    host, router = make("accuracy", 1.0)
    host.active[0] = [True, False, False]
    observe(router, [0], steps=4)
    warm = router.decide(np.array([0]))
    assert sorted(warm) == [(0, 1), (0, 2)]
    assert host.active[0].tolist() == [True, False, False]  # new experts run only once warm
    host.active[1] = [True, True, True]
    host.objective[1] = objective_array("energy", 0.2)[0]
    observe(router, [1], steps=4)
    assert router.decide(np.array([1])) == []
    assert host.active[1].tolist() == [False, False, True]  # switched off at once
    assert not host.pending_off[1].any()


def test_disjoint_new_set_keeps_the_current_one_until_warm():
    host, router = make("accuracy", 0.2)  # only e2 fits beside nothing else
    host.active[0] = [True, False, False]
    observe(router, [0], logits=(0.0, 0.0, 5.0), steps=4)  # the gate prefers e2
    assert router.decide(np.array([0])) == [(0, 2)]
    assert host.active[0].tolist() == [True, False, False]  # e0 keeps running: the cell is never expert-less
    assert host.pending_off[0].tolist() == [True, False, False]  # ModelHost.warm switches it off


def test_decisions_are_logged_with_scores():
    _, router = make("energy", 0.2)
    observe(router, [0, 1], steps=4)
    router.decide(np.array([0, 1]))
    assert len(router.log) == 2
    d = router.log[-1]
    assert d.series == "cell-1" and d.objective == "energy" and d.budget == pytest.approx(0.2)
    assert d.active == ["e2"] and set(d.deactivated) == {"e0", "e1"} and len(d.scores) == 3
    assert 0 < router.compute_fraction() <= 1


def test_missing_actuals_leave_the_error_untouched():
    _, router = make()
    observe(router, [0], errors=(0.5, 0.5, 0.5), steps=3)
    before = router.error[0].copy()
    n = 1
    router.observe(step_result([0], np.full((n, 1), np.nan), np.zeros((n, 3, 1)), np.zeros((n, 3))))
    assert np.array_equal(router.error[0], before)
