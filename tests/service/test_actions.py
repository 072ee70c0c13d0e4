"""The action policy (service/actions/): rules, hysteresis, modes, on deterministic synthetic inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.actions import Action, ActionConfig, ActionPolicy
from service.actions.policy import confidence
from service.engine.conformal import ConformalIntervals
from tests.service.helpers import ar1_stream

PRB, THP = "RRU.PrbUsedDl", "DRB.UEThpDl"


# -- action policy ---------------------------------------------------------------------------------------
class Feed:
    """Calls decide() with constant-width intervals around given PRB forecasts, one decision per period."""

    def __init__(self, cells, slices=None, targets=(PRB, THP), H=4, width=2.0, every_ms=1000, **config):
        self.cells = list(cells)
        self.slices = slices or [None] * len(self.cells)
        self.targets = list(targets)
        self.H, self.width, self.every = H, width, every_ms
        self.policy = ActionPolicy(self.targets, ActionConfig(**config))
        self.slots = np.arange(len(self.cells), dtype=np.int64)
        self.t = 0

    def step(self, prb, actual=None, outside=None, objective="balanced", modes=None, width=None) -> list[Action]:
        N, H, K = len(self.cells), self.H, len(self.targets)
        w = self.width if width is None else width
        point = np.full((N, H, K), 50.0, np.float32)
        if PRB in self.targets:
            point[:, :, self.targets.index(PRB)] = np.broadcast_to(np.asarray(prb, np.float32).reshape(N, -1),
                                                                   (N, H))
        actual = np.full((N, K), 50.0, np.float32) if actual is None else np.asarray(actual, np.float32)
        outside = np.zeros((N, K), bool) if outside is None else np.asarray(outside, bool)
        self.t += 1
        return self.policy.decide(self.t * self.every, self.cells, self.slots, point, point - w, point + w,
                                  actual, outside, self.slices, objective, modes)


@pytest.mark.parametrize("bad, match", [
    ({"prb_high": 120.0}, "prb_high"), ({"prb_low": 90.0}, "prb_low"), ({"sleep_load": 40.0}, "sleep_load"),
    ({"steer_load": 80.0}, "steer_load"), ({"enter_after": 0}, "enter_after"), ({"exit_after": 1.5}, "exit_after"),
    ({"cooldown_ms": -1}, "cooldown_ms"), ({"anomaly_severity": (1.0, 0.5, 2.0)}, "anomaly_severity"),
    ({"anomaly_severity": (0.0, 1.0)}, "anomaly_severity"), ({"mode": "force"}, "mode"),
    ({"max_steer_share": 0.0}, "max_steer_share"), ({"neighbours": {"a": "b"}}, "neighbours"),
    ({"period_ms": 0}, "period_ms"), ({"slice_max_prb_ratio": 101}, "slice_max_prb_ratio"),
    ({"alarm_immediate_severity": 0}, "alarm_immediate_severity"),
])
def test_action_config_is_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        ActionConfig(**bad)


def test_confidence_squash():
    c = confidence(np.array([-1.0, 0.0, 1.0, 2.0, np.nan, np.inf]))
    assert c[1] == pytest.approx(0.5) and c[2] == pytest.approx(0.95) and c[0] == pytest.approx(0.05)
    assert c[3] > 0.99 and c[4] == pytest.approx(0.5) and c[5] == pytest.approx(1.0)


def test_slice_quota_raise_and_lower():
    f = Feed(["gnb-1-cell-1|s=1.5", "gnb-1-cell-1|s=2"], slices=[(1, 5), (2, None)], cooldown_ms=5_000)
    for _ in range(2):
        assert f.step([93.0, 50.0]) == []
    (a,) = f.step([93.0, 50.0])  # third consecutive decision
    assert a.kind == "slice_prb_quota" and a.cell == "gnb-1-cell-1|s=1.5" and a.slot == 0
    d = a.detail
    assert d == {"slice": (1, 5), "min_prb_ratio": 100, "max_prb_ratio": 100, "dedicated_prb_ratio": 91}
    assert 0 <= d["dedicated_prb_ratio"] <= d["min_prb_ratio"] <= d["max_prb_ratio"] <= 100
    assert a.mode == "recommend" and a.horizon == 1 and "93.0 %" in a.reason and "raise" in a.reason
    assert a.confidence > 0.99  # 93 is 4 half-widths above 85
    assert f.step([93.0, 50.0]) == []  # active: no repeat while the condition holds
    # lower the second slice: upper bound 12 < 20 for the whole horizon
    acts = [a for _ in range(3) for a in f.step([50.0, 10.0])]
    (b,) = acts
    assert b.detail == {"slice": (2, None), "min_prb_ratio": 17, "max_prb_ratio": 100, "dedicated_prb_ratio": 8}
    assert "lower" in b.reason and b.confidence > 0.95


def test_quota_ratios_follow_forecast_shape():
    f = Feed(["c|s=1"], slices=[(1, None)], H=4, width=1.0, enter_after=1, quota_headroom=3.0)
    (a,) = f.step(np.array([[70.0, 80.0, 88.0, 75.0]]))
    assert a.horizon == 3  # the peak step
    assert a.detail["min_prb_ratio"] == 92  # ⌈89 + 3⌉
    assert a.detail["dedicated_prb_ratio"] == 69  # ⌊lowest lower bound 69⌋
    # E2SM-RC order dedicated ≤ min ≤ max even when the cap is below the forecast
    g = Feed(["c|s=1"], slices=[(1, None)], enter_after=1, slice_max_prb_ratio=60)
    (b,) = g.step([95.0])
    assert b.detail["max_prb_ratio"] == b.detail["min_prb_ratio"] == b.detail["dedicated_prb_ratio"] == 60


def test_cell_sleep_only_for_energy_objectives_and_wake_always():
    cells = ["gnb-1-cell-1", "gnb-1-cell-2"]
    f = Feed(cells, H=6, every_ms=2000)
    objective = ["energy", "accuracy"]
    acts = [a for _ in range(3) for a in f.step([5.0, 5.0], objective=objective)]
    (a,) = acts
    assert a.kind == "cell_sleep" and a.cell == "gnb-1-cell-1"
    assert a.detail == {"sleep": True, "duration_s": 12}  # 6 steps × 2 s measured from the decision spacing
    assert a.confidence > 0.95
    assert [x for _ in range(5) for x in f.step([5.0, 5.0], objective=objective)] == []  # already asleep
    # load comes back right away: the wake is not held back by the sleep's cooldown
    acts = [a for _ in range(3) for a in f.step([35.0, 35.0], objective="accuracy")]
    (w,) = acts
    assert w.kind == "cell_sleep" and w.cell == "gnb-1-cell-1" and w.detail == {"sleep": False, "duration_s": 0}
    # low again, but the sleep/wake cooldown (60 s) holds the next sleep back
    assert [x for _ in range(10) for x in f.step([5.0, 5.0], objective=objective)] == []
    f.t += 30  # a minute later
    acts = [a for _ in range(3) for a in f.step([5.0, 5.0], objective="energy")]
    assert sorted(a.cell for a in acts) == cells and all(a.detail["sleep"] for a in acts)


def test_sleep_duration_from_configured_period():
    f = Feed(["c"], H=8, enter_after=1, every_ms=500, period_ms=15_000)
    (a,) = f.step([1.0], objective="energy")
    assert a.detail["duration_s"] == 120


def test_traffic_steering_to_least_loaded_neighbour():
    cells = ["gnb-1-cell-1", "gnb-1-cell-2", "gnb-1-cell-3", "gnb-2-cell-1", "gnb-1-cell-1|ue=7"]
    f = Feed(cells, enter_after=1)
    (a,) = f.step([97.0, 40.0, 60.0, 5.0, 99.0], objective="accuracy")
    assert a.kind == "traffic_steering" and a.cell == "gnb-1-cell-1"
    assert a.detail["target_cell_id"] == "gnb-1-cell-2"  # gnb-2-cell-1 is less loaded but another gNB
    assert a.detail["traffic_share"] == pytest.approx((97 - 85) / 97)
    assert "97.0 %" in a.reason and "gnb-1-cell-2" in a.reason


def test_traffic_steering_share_limited_by_neighbour_and_configured_map():
    cells = ["A", "B", "C"]
    f = Feed(cells, enter_after=1, neighbours={"A": ["C"]}, max_steer_share=0.3)
    (a,) = f.step([100.0, 10.0, 80.0])
    assert a.detail["target_cell_id"] == "C"
    assert a.detail["traffic_share"] == pytest.approx((85 - 80) / 100)  # keep C below prb_high
    # no neighbour with headroom: the target is left to the RAN, share = the overload, capped
    g = Feed(["gnb-1-cell-1", "gnb-1-cell-2"], enter_after=1, max_steer_share=0.1)
    (b,) = [x for x in g.step([99.0, 95.0]) if x.cell == "gnb-1-cell-1"]
    assert b.detail == {"target_cell_id": "", "traffic_share": pytest.approx(0.1)}


def test_neighbour_from_an_earlier_call_if_fresh():
    f = Feed(["gnb-1-cell-1", "gnb-1-cell-2"], enter_after=1, neighbour_max_age_ms=2_000)
    p = f.policy
    f.step([50.0, 30.0])

    def decide_one(t):  # cell-1 alone
        pt = np.full((1, 4, 2), 95.0, np.float32)
        return p.decide(t, ["gnb-1-cell-1"], np.array([0]), pt, pt - 2, pt + 2, np.full((1, 2), 50.0, np.float32),
                        np.zeros((1, 2), bool), [None])

    (a,) = decide_one(2000)
    assert a.detail["target_cell_id"] == "gnb-1-cell-2"  # its forecast (1 s old) is fresh
    p.reset(np.array([0]))
    (b,) = decide_one(10_000)
    assert b.detail["target_cell_id"] == ""  # 9 s old: stale


def test_anomaly_alarm_severity_and_hysteresis():
    f = Feed(["c1", "c2"], targets=[PRB, THP], width=10.0)  # h=1 intervals [40, 60] around 50
    f.step([50.0, 50.0])
    actual = np.array([[50.0, 50.0], [50.0, 63.0]])  # c2 throughput 0.15 widths above the upper bound
    outside = np.array([[False, False], [False, True]])
    assert f.step([50.0, 50.0], actual, outside) == []
    assert f.step([50.0, 50.0], actual, outside) == []
    (a,) = f.step([50.0, 50.0], actual, outside)
    assert a.kind == "anomaly_alarm" and a.cell == "c2" and a.horizon == 1
    assert a.detail == {"kpi": THP, "observed": 63.0, "expected": 50.0, "lower": 40.0, "upper": 60.0, "severity": 1}
    assert 0.95 < a.confidence < 1.0 and "0.15 interval widths" in a.reason
    assert f.step([50.0, 50.0], actual, outside) == []  # still the same anomaly
    # escalation to critical (≥ 1.5 widths beyond) is reported again once the cooldown allows
    actual[1, 1] = 100.0
    assert f.step([50.0, 50.0], actual, outside) == []  # cooldown (60 s)
    f.t += 60
    (b,) = f.step([50.0, 50.0], actual, outside)
    assert b.detail["severity"] == 3 and "escalated" in b.reason


def test_critical_alarm_fires_immediately():
    f = Feed(["c1"], targets=[THP], width=5.0)  # no PRB target: only alarms
    f.step(0.0)
    (a,) = f.step(0.0, actual=[[80.0]], outside=[[True]])  # 2.5 widths above [45, 55]
    assert a.detail["severity"] == 3 and a.detail["kpi"] == THP
    assert f.step(0.0, actual=[[52.0]], outside=[[False]]) == []


def test_rules_skip_kpis_that_are_not_forecast():
    f = Feed(["gnb-1-cell-1", "gnb-1-cell-2|s=1"], slices=[None, (1, None)], targets=[THP], enter_after=1)
    for _ in range(5):
        assert f.step(0.0, objective="energy") == []  # throughput 50 ± 2: no PRB rule can apply


def test_ue_series_get_alarms_only():
    f = Feed(["gnb-1-cell-1|ue=42"], enter_after=1)
    assert f.step([99.0]) == [] and f.step([1.0], objective="energy") == []
    (a,) = f.step([50.0], actual=[[90.0, 50.0]], outside=[[True, False]])
    assert a.kind == "anomaly_alarm" and a.detail["kpi"] == PRB


def test_no_flapping_on_noisy_signal_around_threshold():
    """PRB forecast noisy around prb_high: quota actions must not alternate decision by decision."""
    rng = np.random.default_rng(3)
    f = Feed(["s|s=1"], slices=[(1, None)], width=1.0, cooldown_ms=10_000)
    signal = 85.0 + 2.0 * rng.normal(size=400)
    fired = [t for t, x in enumerate(signal) if f.step([x])]
    assert 0 < len(fired) <= 40  # at most one per cooldown (10 decisions)
    assert np.diff(fired).min() >= 10
    for t in fired:  # each one preceded by enter_after decisions above the threshold
        assert (signal[t - 2 : t + 1] > 85.0).all()
    # a signal alternating above/below every decision never acts
    g = Feed(["s|s=1"], slices=[(1, None)], width=1.0, cooldown_ms=0)
    assert [a for t in range(100) for a in g.step([95.0 if t % 2 else 10.0])] == []
    # sleep/wake around sleep_load: hysteresis band 10..30, so a cell put to sleep stays asleep
    h = Feed(["c"], width=1.0, cooldown_ms=0)
    acts = [a for x in 10.0 + 2.0 * rng.normal(size=400) for a in h.step([x], objective="energy")]
    assert len(acts) == 1 and acts[0].detail["sleep"]


def test_exit_after_and_cooldown():
    f = Feed(["s|s=1"], slices=[(1, None)], enter_after=1, exit_after=2, cooldown_ms=5_000)
    assert len(f.step([95.0])) == 1
    assert f.step([50.0]) == []  # one decision without: still active
    assert f.step([95.0]) == []  # condition back before exit_after: no repeat
    assert f.step([50.0]) == [] and f.step([50.0]) == []  # cleared after two decisions without
    assert len(f.step([95.0])) == 1  # re-entered, 5 s after the first: the cooldown is over


def test_mode_override_per_series():
    f = Feed(["a", "b"], enter_after=1, mode="recommend")
    acts = f.step([99.0, 99.0], modes=[None, "enforce"])
    assert {a.cell: a.mode for a in acts} == {"a": "recommend", "b": "enforce"}
    f2 = Feed(["a"], enter_after=1)
    with pytest.raises(ValueError, match="mode"):
        f2.step([99.0], modes=["push"])
    with pytest.raises(ValueError, match="objective"):
        f2.step([99.0], objective="cheap")


def test_slot_reassignment_resets_hysteresis():
    p = ActionPolicy([PRB], ActionConfig())
    pt = np.full((1, 2, 1), 95.0, np.float32)
    args = (pt, pt - 1, pt + 1, np.full((1, 1), 95.0, np.float32), np.zeros((1, 1), bool))
    slot = np.array([3])
    assert p.decide(1000, ["x|s=1"], slot, *args, [(1, None)]) == []
    assert p.decide(2000, ["x|s=1"], slot, *args, [(1, None)]) == []
    # the engine gave slot 3 to another series: its counters start from zero
    assert p.decide(3000, ["y|s=1"], slot, *args, [(1, None)]) == []
    assert p.decide(4000, ["y|s=1"], slot, *args, [(1, None)]) == []
    (a,) = p.decide(5000, ["y|s=1"], slot, *args, [(1, None)])
    assert a.cell == "y|s=1"
    p.reset(slot)  # an explicit reset works the same way
    assert p.decide(6000, ["y|s=1"], slot, *args, [(1, None)]) == []


def test_without_key_verification_new_slots_still_register():
    p = ActionPolicy([PRB], ActionConfig(enter_after=1), verify_keys=False)
    pt = np.full((2, 2, 1), 95.0, np.float32)
    args = (pt, pt - 1, pt + 1, np.full((2, 1), 95.0, np.float32), np.zeros((2, 1), bool))
    acts = p.decide(1000, ["a|s=1", "b"], np.array([0, 1]), *args, [(1, None), None])
    assert sorted(a.kind for a in acts) == ["slice_prb_quota", "traffic_steering"]
    p.reset(np.array([0]))  # the caller's job when verify_keys is off
    acts = p.decide(2000, ["c", "b"], np.array([0, 1]), *args, [None, None])
    assert [(a.cell, a.kind) for a in acts] == [("c", "traffic_steering")]  # b is in its cooldown


def test_detail_matches_proto_fields():
    pb = pytest.importorskip("ms3m.v1.forecast_pb2")
    f = Feed(["gnb-1-cell-1", "gnb-1-cell-2", "gnb-1-cell-3|s=1.2"], slices=[None, None, (1, 2)], enter_after=1,
             cooldown_ms=0)
    acts = f.step([99.0, 1.0, 99.0], actual=[[50.0, 99.0], [50.0, 50.0], [50.0, 50.0]],
                  outside=[[False, True], [False, False], [False, False]], objective="energy")
    messages = {"slice_prb_quota": pb.SlicePrbQuota, "traffic_steering": pb.TrafficSteering,
                "cell_sleep": pb.CellSleep, "anomaly_alarm": pb.AnomalyAlarm}
    assert {a.kind for a in acts} == set(messages)
    for a in acts:
        fields = {x.name for x in messages[a.kind].DESCRIPTOR.fields} - {"ue_id"}
        assert set(a.detail) == fields, a.kind
        detail = dict(a.detail)
        if a.kind == "slice_prb_quota":
            sst, sd = detail.pop("slice")
            detail["slice"] = {"sst": sst, "sd": sd}
        messages[a.kind](**detail)  # the values have the proto's types
        assert 0.0 <= a.confidence <= 1.0 and a.reason and a.action_id


def test_conformal_and_policy_together_flag_a_spike():
    """End to end: streaming intervals on an AR(1) stream, then a spike in one cell's throughput."""
    n, H = 50, 4
    ci = ConformalIntervals(H, 2)
    ci.ensure_capacity(n)
    policy = ActionPolicy([PRB, THP], ActionConfig())
    stream = ar1_stream(n, 200, seed=4)
    stream[:, :, 0] += 40.0  # PRB use around 50 %: no PRB rule fires
    stream[150, 7, 1] += 30.0  # the anomaly
    slots, cells = np.arange(n), [f"gnb-1-cell-{i}" for i in range(n)]
    alarms = []
    for t, x in enumerate(stream):
        out = ci.observe(slots, x)
        point = np.repeat(x[:, None, :], H, axis=1)
        lo, hi, _ = ci.record(slots, point)
        acts = policy.decide(t * 1000, cells, slots, point, lo, hi, x, out, [None] * n, "accuracy")
        alarms += [(t, a) for a in acts if a.detail.get("severity", 0) == 3]  # critical: immediate
    assert [(t, a.cell, a.detail["kpi"]) for t, a in alarms] == [(150, "gnb-1-cell-7", THP)]


def test_speed_10k_cells(capsys):
    """Prints µs per cell for observe()+record() and decide() on 10,000 cells (not asserted)."""
    n, H, K = 10_000, 8, 2
    ci = ConformalIntervals(H, K)
    ci.ensure_capacity(n)
    policy = ActionPolicy([PRB, THP], ActionConfig())
    rng = np.random.default_rng(5)
    slots = np.arange(n)
    cells = [f"gnb-{i // 10:04d}-cell-{i % 10}" for i in range(n)]
    slices = [None] * n
    objective = ["balanced"] * n
    x = (50 + 30 * rng.random((n, K))).astype(np.float32)
    t_ci, t_dec, steps, warm, n_actions = 0.0, 0.0, 60, 30, 0
    for t in range(steps):
        x = np.clip(x + rng.normal(size=(n, K)).astype(np.float32), 0, 100)
        point = np.repeat(x[:, None, :], H, axis=1)
        t0 = time.perf_counter()
        out = ci.observe(slots, x)
        lo, hi, _ = ci.record(slots, point)
        t1 = time.perf_counter()
        acts = policy.decide(t * 1000, cells, slots, point, lo, hi, x, out, slices, objective)
        t2 = time.perf_counter()
        if t >= warm:  # after warm-up (every horizon has its own quantiles)
            t_ci += t1 - t0
            t_dec += t2 - t1
            n_actions += len(acts)
    m = (steps - warm) * n
    with capsys.disabled():
        print(f"\n[actions speed] 10k cells, H={H}, K={K}: observe+record {t_ci / m * 1e6:.2f} µs/cell, "
              f"decide {t_dec / m * 1e6:.2f} µs/cell ({n_actions / (steps - warm):.0f} actions/step)")
