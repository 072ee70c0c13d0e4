"""StepEngine alone (service/engine/engine.py), on fake hosts: ordering, sub-steps, failure isolation,
drop accounting, jobs between steps, the queue bound."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.buffer.base import SampleBatch
from service.engine.engine import StepEngine
from service.metrics import Metrics
from tests.service.fakes import FakeHost


def batch(series: list[str], ts: list[int], value: float = 1.0) -> SampleBatch:
    n = len(series)
    return SampleBatch(list(series), np.array(ts, np.int64), np.arange(1, n + 1, dtype=np.uint64),
                       np.full((n, 2), value, np.float32) + np.arange(n, dtype=np.float32)[:, None])


def counter(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def engine():
    made = []

    def make(hosts, **kw):
        steps = []
        e = StepEngine(hosts, Metrics(), kw.pop("on_step", steps.append), flush_ms=kw.pop("flush_ms", 1.0),
                       clock=lambda: 1_700_000_000.0, **kw)
        e.steps_seen = steps
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()


def drain(e: StepEngine) -> None:
    e.call(lambda: None).result(timeout=10)


def test_one_sample_per_cell_per_substep_in_time_order(engine):
    host = FakeHost()
    e = engine([host])
    e.start()
    e.submit(batch(["a", "b", "a", "a", "b"], [1, 1, 2, 3, 2]))
    drain(e)
    by_slot: dict[int, list[int]] = {}
    for slots, ts in host.calls:
        assert len(set(slots)) == len(slots)  # no cell twice in one step
        for s, t in zip(slots, ts):
            by_slot.setdefault(s, []).append(t)
    assert by_slot == {0: [1, 2, 3], 1: [1, 2]}
    assert [len(s.series) for s in e.steps_seen] == [2, 2, 1]
    assert e.samples == 5


def test_a_failing_cell_costs_only_its_own_sample(engine):
    host = FakeHost()
    host.fail_series = {"bad"}
    e = engine([host])
    e.start()
    e.submit(batch(["ok1", "bad", "ok2"], [1, 1, 1]))
    drain(e)
    stepped = [s for slots, _ in host.calls for s in slots]
    assert sorted(host.table.cell_of(s) for s in stepped) == ["ok1", "ok2"]
    assert counter(e.metrics, "ms3m_engine_dropped_total", reason="step_error") == 1
    assert counter(e.metrics, "ms3m_forecasts_total", model="fake") == 2
    (step,) = e.steps_seen
    assert step.ok[0].tolist() == [True, False, True]


def test_non_finite_rows_are_dropped_and_counted(engine):
    host = FakeHost()
    host.non_finite_series = {"nan"}
    e = engine([host])
    e.start()
    e.submit(batch(["x", "nan"], [5, 5]))
    drain(e)
    assert counter(e.metrics, "ms3m_engine_dropped_total", reason="non_finite") == 1
    assert e.steps_seen[0].ok[0].tolist() == [True, False]
    assert len(e.steps_seen[0].results[0].slots) == 1


def test_full_table_drops_new_series_only(engine):
    host = FakeHost(capacity=1)
    e = engine([host])
    e.start()
    e.submit(batch(["first", "second"], [1, 1]))
    drain(e)
    assert counter(e.metrics, "ms3m_engine_dropped_total", reason="table_full") == 1
    assert host.table.cells() == ["first"]


def test_every_host_steps_every_sample(engine):
    a, b = FakeHost("a"), FakeHost("b")
    e = engine([a, b])
    e.start()
    e.submit(batch(["c1", "c2"], [1, 1]))
    drain(e)
    assert a.calls == b.calls == [([0, 1], [1, 1])]
    assert len(e.steps_seen[0].results) == 2


def test_jobs_run_between_steps_in_queue_order(engine):
    host = FakeHost()
    order = []
    e = engine([host], on_step=lambda s: order.append(("step", list(s.series))))
    e.submit(batch(["a"], [1]))
    fut = e.call(lambda: order.append(("job", len(host.calls))) or "done")
    e.submit(batch(["a"], [2]))
    e.start()
    assert fut.result(timeout=10) == "done"
    drain(e)
    assert order == [("step", ["a"]), ("job", 1), ("step", ["a"])]


def test_a_job_error_reaches_its_caller_and_the_worker_lives_on(engine):
    e = engine([FakeHost()])
    e.start()
    with pytest.raises(ZeroDivisionError):
        e.call(lambda: 1 / 0).result(timeout=10)
    assert e.call(lambda: 7).result(timeout=10) == 7
    assert e.alive


def test_queue_bound_in_samples_unless_forced_or_replay(engine):
    e = engine([FakeHost()], max_queue_samples=3)  # not started: nothing drains
    assert e.submit(batch(["a", "b", "c"], [1, 1, 1]))
    assert not e.submit(batch(["d"], [1]))
    assert e.depth == 3
    assert e.submit(batch(["d"], [1]), force=True)
    assert e.submit(batch(["e"], [1]), replay=True)
    assert e.depth == 5


def test_replay_steps_are_flagged_and_a_callback_error_is_counted(engine):
    seen = []

    def on_step(step):
        seen.append(step.replay)
        raise RuntimeError("callback bug")

    e = engine([FakeHost()], on_step=on_step)
    e.start()
    e.submit(batch(["a"], [1]), replay=True)
    e.submit(batch(["a"], [2]))
    drain(e)
    assert seen == [True, False]
    assert counter(e.metrics, "ms3m_engine_callback_errors_total") == 2
    assert e.samples == 2


def test_batches_merge_up_to_max_batch(engine):
    host = FakeHost()
    gate = threading.Event()
    e = engine([host], max_batch=4, flush_ms=50.0)
    e.call(gate.wait)  # hold the worker until everything is queued
    for i in range(6):
        e.submit(batch([f"c{i}"], [1]))
    e.start()
    gate.set()
    drain(e)
    assert [len(slots) for slots, _ in host.calls] == [4, 2]
