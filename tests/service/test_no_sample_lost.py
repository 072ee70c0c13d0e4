"""No acknowledged sample is lost: MS³M routing that switches expert sets with no overlap, corrupt reports
that would lock a series or overflow a state, series beyond max_cells, and per-cell step failures."""

from __future__ import annotations

import re

import httpx
import numpy as np

from ms3m.v1 import kpm_pb2
from service.engine.host import ModelHost
from service.router.router import ExpertRouter
from service.runtime.bundle import load_bundle
from tests.service.helpers import KPIS, T0_MS, indication, make_bundle, publish, running_xapp, wait_for

R = kpm_pb2.RejectReason


def metric(text: str, name: str, labels: str = "") -> float:
    """Sum of a Prometheus sample (all label sets when `labels` is empty)."""
    pat = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", re.M)
    return sum(float(v) for lab, v in pat.findall(text) if labels in (lab or ""))


def no_overlap_switches(router: ExpertRouter) -> int:
    """Decisions whose new expert set shares no expert with the set it replaced."""
    return sum(1 for d in router.log if d.deactivated and len(d.activated) == len(d.active))


async def test_objectives_switching_every_period_lose_no_sample(tmp_path):
    bundle = make_bundle(tmp_path, "ms3m")
    cells, steps, period = 200, 60, 5
    async with running_xapp([bundle], decision_period_samples=period) as xapp:
        router = xapp.routers["ms3m-test"]
        router.costs = np.array([0.90, 0.09, 0.01])  # energy → the cheap expert, accuracy → the preferred one
        objectives = [("accuracy", 0.05), ("energy", 0.05)]
        accepted = 0
        for t in range(steps):
            if t % period == 0:
                obj, budget = objectives[(t // period) % 2]
                xapp.policies.put("all", {"objective": obj, "computeBudget": budget})
            acks = await publish(xapp.grpc_port, [indication(cells, t, mid=t + 1)])
            accepted += acks[0].accepted
            await wait_for(lambda: xapp.engine.depth == 0)
        assert accepted == cells * steps
        await wait_for(lambda: xapp.engine.samples == accepted)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            text = (await http.get("/metrics")).text
        assert metric(text, "ms3m_engine_dropped_total") == 0
        assert metric(text, "ms3m_ingest_samples_total") == accepted
        assert metric(text, "ms3m_forecasts_total", 'model="ms3m-test"') == accepted
        assert no_overlap_switches(router) >= cells  # the case that used to drop whole batches
        assert xapp.hosts[0].fallbacks == 0  # every cell always had an active expert of its own


def test_router_keeps_the_current_set_until_a_new_expert_is_warm(tmp_path):
    host = ModelHost(load_bundle(make_bundle(tmp_path, "ms3m")), KPIS)
    slots, _ = host.slots(["a", "b"], 0)
    router = ExpertRouter(host, decision_period=1)
    host.active[slots] = [[True, False, False], [True, True, False]]
    router.pref_sum[slots] = [[0, 0, 1], [0, 0.4, 0.6]]  # both prefer expert 2 now
    router.n_since[slots] = 1
    host.objective[slots] = [0, 0, 0, 0, 0.01]  # accuracy, tiny budget: one expert
    host.objective[slots, 0] = 1
    warm = router.decide(slots)
    assert sorted(warm) == [(int(slots[0]), 2), (int(slots[1]), 2)]
    # a: nothing of its set stays → still runs expert 0 until 2 is warm; b likewise keeps 0 and 1
    assert host.active[slots].tolist() == [[True, False, False], [True, True, False]]
    w = np.zeros((8, len(KPIS)), np.float32)
    host.warm(slots[:1], 2, [w])
    assert host.active[slots[0]].tolist() == [False, False, True]  # switched over once warm
    assert host.active[slots[1]].tolist() == [True, True, False]  # not warmed yet: unchanged


def test_a_cell_that_fails_its_step_costs_only_its_own_sample(tmp_path):
    from service.buffer.base import SampleBatch
    from service.engine.engine import StepEngine
    from service.metrics import Metrics

    host = ModelHost(load_bundle(make_bundle(tmp_path, "s4d")), KPIS)
    real = host.runtime.run

    def flaky(x, states):  # the runtime fails for any batch holding the poisoned cell's input
        if (x[:, 0] > 1e3).any():
            raise RuntimeError("poisoned input")
        return real(x, states)

    host.runtime.run = flaky
    metrics = Metrics()
    engine = StepEngine([host], metrics)
    vals = np.tile(np.array([[20000.0, 50.0, -95.0]], np.float32), (4, 1))
    vals[2, 0] = 1e9  # normalized 1.2e5: the fake runtime refuses it
    engine.start()
    try:
        engine.submit(SampleBatch([f"c{i}" for i in range(4)], np.full(4, 5, np.int64), np.ones(4, np.uint64), vals))
        engine.call(lambda: None).result(10)
    finally:
        engine.stop()
    assert metrics.forecasts.labels(host.name)._value.get() == 3
    assert metrics.dropped.labels("step_error")._value.get() == 1
    assert host.latest("c2") is None and host.latest("c3") is not None


def test_a_non_finite_step_is_not_applied_and_counted(tmp_path):
    from service.buffer.base import SampleBatch
    from service.engine.engine import StepEngine
    from service.metrics import Metrics

    host = ModelHost(load_bundle(make_bundle(tmp_path, "s4d")), KPIS)
    real = host.runtime.run

    def overflowing(x, states):
        y, new = real(x, states)
        y[x[:, 1] > 100] = np.inf  # what a float32 overflow inside the graph gives
        return y, new

    host.runtime.run = overflowing
    metrics = Metrics()
    engine = StepEngine([host], metrics)
    vals = np.tile(np.array([[20000.0, 50.0, -95.0]], np.float32), (3, 1))
    vals[1, 1] = 1e4
    engine.start()
    try:
        engine.submit(SampleBatch(["a", "b", "c"], np.full(3, 5, np.int64), np.ones(3, np.uint64), vals))
        engine.call(lambda: None).result(10)
    finally:
        engine.stop()
    assert metrics.dropped.labels("non_finite")._value.get() == 1
    assert metrics.forecasts.labels(host.name)._value.get() == 2
    slot = host.table.slot("b")
    assert all(np.isfinite(a[slot]).all() for a in host.table.arrays[: host.n_model_state])
    assert host.latest("b") is None


def one_report(t: int, seq: int, values=(20000.0, 50.0, -95.0), cell: str = "cell-000", mid: int = 1):
    msg = kpm_pb2.KpiIndication(e2_node_id="gnb-1", granularity_period_ms=1000, meas_names=KPIS, message_id=mid)
    msg.reports.add(cell_id=cell, timestamp_ms=t, sequence=seq, values=list(values))
    return msg


async def test_corrupt_reports_are_refused_and_the_series_keeps_accepting(tmp_path):
    bundle = make_bundle(tmp_path, "s4d")
    async with running_xapp([bundle], max_sample_age_ms=86_400_000) as xapp:
        now = int(xapp.clock() * 1000)
        cases = [
            (one_report(now + 10**12, 100), R.REJECT_REASON_TIMESTAMP_OUT_OF_RANGE),  # year ~2058
            (one_report(2**63 - 1, 100), R.REJECT_REASON_TIMESTAMP_OUT_OF_RANGE),
            (one_report(32503680000000, 100), R.REJECT_REASON_TIMESTAMP_OUT_OF_RANGE),  # year 3000
            (one_report(T0_MS, 100), R.REJECT_REASON_TIMESTAMP_OUT_OF_RANGE),  # older than a day
            (one_report(now - 500, 2**64 - 1), R.REJECT_REASON_SEQUENCE_GAP),
            (one_report(now - 500, 100, (3.5e38, 50.0, -95.0)), R.REJECT_REASON_VALUE_OUT_OF_RANGE),
            (one_report(now - 500, 100, (-1e300, 50.0, -95.0)), R.REJECT_REASON_VALUE_OUT_OF_RANGE),
            (one_report(now - 500, 100, (20000.0, 50.0, 1e7)), R.REJECT_REASON_VALUE_OUT_OF_RANGE),  # 1.7M σ
        ]
        first = await publish(xapp.grpc_port, [one_report(now - 1000, 1)])
        assert first[0].accepted == 1
        acks = await publish(xapp.grpc_port, [m for m, _ in cases])
        for ack, (_, reason) in zip(acks, cases):
            assert ack.accepted == 0 and [(r.reason, r.count) for r in ack.rejections] == [(reason, 1)], ack
            assert ack.details[0].detail
        later = await publish(xapp.grpc_port, [one_report(now - 900 + 100 * i, 2 + i, mid=10 + i) for i in range(5)])
        assert [a.accepted for a in later] == [1] * 5  # the series was not locked by any of them
        await wait_for(lambda: xapp.engine.samples == 6)
        f = xapp.latest_forecast("cell-000")
        assert f.timestamp_ms == now - 500 and np.isfinite(f.point).all()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            body = (await http.get("/v1/cells/cell-000/forecast")).json()
            text = (await http.get("/metrics")).text
        assert int(body["timestampMs"]) == now - 500
        assert metric(text, "ms3m_ingest_rejected_total", 'reason="timestamp_out_of_range"') == 4
        assert metric(text, "ms3m_ingest_rejected_total", 'reason="value_out_of_range"') == 3
        assert metric(text, "ms3m_ingest_rejected_total", 'reason="sequence_gap"') == 1
        assert metric(text, "ms3m_engine_dropped_total") == 0 and metric(text, "ms3m_actions_total") == 0


async def test_new_series_beyond_max_cells_are_refused_not_dropped(tmp_path):
    bundle = make_bundle(tmp_path, "s4d")
    async with running_xapp([bundle], max_cells=3) as xapp:
        acks = await publish(xapp.grpc_port, [indication(5, t, mid=t + 1) for t in range(4)])
        assert [a.accepted for a in acks] == [3] * 4
        assert all([(r.reason, r.count) for r in a.rejections] == [(R.REJECT_REASON_CAPACITY, 2)] for a in acks)
        assert "RESOURCE_EXHAUSTED" in acks[0].details[0].detail and "max_cells" in acks[0].details[0].detail
        await wait_for(lambda: xapp.engine.samples == 12)
        assert sorted(xapp.hosts[0].table.cells()) == ["cell-000", "cell-001", "cell-002"]
        more = await publish(xapp.grpc_port, [indication(3, t, mid=t + 1) for t in range(4, 8)])
        assert [a.accepted for a in more] == [3] * 4  # the admitted series keep going
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            text = (await http.get("/metrics")).text
        assert metric(text, "ms3m_ingest_rejected_total", 'reason="capacity"') == 8
        assert metric(text, "ms3m_engine_dropped_total") == 0


def test_default_max_cells_fits_the_machine(tmp_path):
    import psutil

    from service.config import Settings
    from service.sizing import auto_max_cells, memory_per_cell

    bundles = [load_bundle(make_bundle(tmp_path, "ms3m"))]
    s = Settings(buffer="memory")
    assert s.max_cells is None  # the default is computed, not 1M
    per_cell = memory_per_cell(s, KPIS, bundles)
    state = sum(4 * int(np.prod(f.shape)) for f in bundles[0].manifest.state)
    assert per_cell > s.window_length * (16 + 4 * len(KPIS)) + state
    n = auto_max_cells(s, KPIS, bundles)
    assert 1000 <= n <= 1_000_000 and n * per_cell <= 0.5 * psutil.virtual_memory().total
    assert memory_per_cell(Settings(buffer="redis"), KPIS, bundles) < per_cell  # the window lives in Redis


def test_experts_on_some_cells_write_only_their_rows_and_match_the_plain_path(tmp_path):
    """host.step hands the stepper lazily gathered rows; an expert active in a few cells comes back as a
    RowUpdate of those rows. The table then holds what the stepper computes on plain arrays, and a non-finite
    row of such an update is not applied (the other rows are)."""
    from service.runtime.rows import RowUpdate

    host = ModelHost(load_bundle(make_bundle(tmp_path, "ms3m")), KPIS)
    cells = [f"c{i}" for i in range(9)]
    slots, _ = host.slots(cells, 0)
    rng = np.random.default_rng(5)
    plain = [a[slots].copy() for a in host.table.arrays[: host.n_model_state]]
    real, seen = host.stepper.run, []

    def recording(x, states, objective, active):
        out = real(x, states, objective, active)
        seen.extend(type(s) for s in out[1])
        return out

    host.stepper.run = recording
    for t in range(40):
        active = rng.random((9, 3)) < 0.5
        active[:, 0] |= ~active.any(1)
        host.active[slots] = active
        values = np.column_stack([rng.normal(2e4, 3e3, 9), rng.normal(50, 10, 9), rng.normal(-95, 3, 9)])
        values = values.astype(np.float32)
        host.step(slots, values, np.full(9, 1000 * (t + 1), np.int64))
        xn = ((values - host.in_mean) / host.in_std).astype(np.float32)
        _, plain, _ = real(xn, plain, host.objective[slots], active)
        plain = [a.copy() for a in plain]
    assert RowUpdate in seen
    for a, b in zip(host.table.arrays[: host.n_model_state], plain):
        np.testing.assert_allclose(a[slots], b, rtol=1e-6, atol=1e-6)

    def poisoned(x, states, objective, active):  # the scale-4 expert's update of cell c3 overflows
        y, new, details = real(x, states, objective, active)
        for s in new:
            if isinstance(s, RowUpdate) and 3 in s.rows:
                s.values[list(s.rows).index(3)] = np.inf
                seen.append("poisoned")
        return y, new, details

    host.stepper.run = poisoned
    host.active[slots] = np.array([True, True, False])
    for t in range(40, 44):  # one of these steps is the scale-4 expert's update
        before = [a[slots].copy() for a in host.table.arrays[: host.n_model_state]]
        res = host.step(slots, np.tile(np.float32([2e4, 50, -95]), (9, 1)), np.full(9, 1000 * (t + 1), np.int64))
        if not res.applied.all():
            break
    assert "poisoned" in seen and res.applied.tolist() == [i != 3 for i in range(9)]
    assert all(np.isfinite(a[slots]).all() for a in host.table.arrays[: host.n_model_state])
    s3 = host.table.slot("c3")
    assert host.last_ts[s3] < host.last_ts[host.table.slot("c2")]
    ema = host.table.arrays[0][slots]
    np.testing.assert_array_equal(ema[3], before[0][3])  # c3's failed step left its state as it was
    assert not np.array_equal(ema[2], before[0][2])  # the others moved on
