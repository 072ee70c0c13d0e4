"""Expert warm-ups off the step path (service/engine/host.py begin_warm → warm_pieces → finish_warm, and
service/control.py ExpertWarmups): a warm-up whose window pass runs while the cell keeps stepping ends in the
state of one done at once after those steps."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.buffer.base import SampleBatch
from service.buffer.memory import MemoryWindowBuffer
from service.control import ExpertWarmups
from service.engine.engine import StepEngine
from service.engine.host import ModelHost
from service.metrics import Metrics
from service.runtime import load_bundle
from tests.service.helpers import KPIS, T0_MS, kpi_values, make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_bundle(tmp_path_factory.mktemp("warm"), "ms3m"))


def stream(host: ModelHost, slots: np.ndarray, t0: int, t1: int, raw: list[np.ndarray]) -> None:
    for t in range(t0, t1):
        v = kpi_values(len(slots), t).astype(np.float32)
        raw.append(v)
        host.step(slots, v, np.full(len(slots), T0_MS + 1000 * t))


def expert_state(host: ModelHost, slots: np.ndarray, e: int) -> list[np.ndarray]:
    sl = host.stepper.slices[e]
    return [host.table.arrays[i][slots].copy() for i in range(sl.start, sl.stop)]


@pytest.mark.parametrize("expert, begin_at, later", [(1, 37, 6), (2, 50, 19), (0, 20, 3)])
def test_warm_up_during_steps_equals_warm_up_after_them(bundle, expert, begin_at, later):
    split, whole = ModelHost(bundle, KPIS), ModelHost(bundle, KPIS)
    cells = ["a", "b", "c"]
    s1, _ = split.slots(cells, 0)
    s2, _ = whole.slots(cells, 0)
    split.active[s1, expert] = whole.active[s2, expert] = False
    raw: list[np.ndarray] = []
    stream(split, s1, 0, begin_at, raw)
    begun, ends, clocks = split.begin_warm(s1, expert)
    assert begun.all() and (ends == T0_MS + 1000 * (begin_at - 1)).all()
    assert not split.begin_warm(s1, expert)[0].any()  # already warming: not begun twice
    windows = [np.stack([r[i] for r in raw]) for i in range(len(cells))]  # the whole history so far
    pieces = split.warm_pieces(expert, windows, clocks)  # (any thread)
    stream(split, s1, begin_at, begin_at + later, [])  # the cells keep stepping meanwhile
    assert split.finish_warm(s1, cells, expert, pieces) == len(cells)
    assert split.active[s1, expert].all()

    stream(whole, s2, 0, begin_at + later, raw2 := [])
    whole.warm(s2, expert, [np.stack([r[i] for r in raw2]) for i in range(len(cells))])
    for a, b in zip(expert_state(split, s1, expert), expert_state(whole, s2, expert)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_reused_slot_is_not_warmed_with_another_cells_window(bundle):
    host = ModelHost(bundle, KPIS)
    slots, _ = host.slots(["a"], 0)
    host.active[slots, 1] = False
    _, _, clocks = host.begin_warm(slots, 1)
    pieces = host.warm_pieces(1, [np.ones((8, len(KPIS)), np.float32)], clocks)
    host.table.remove("a")
    host.slots(["z"], 0)  # the slot now holds another series
    assert host.finish_warm(slots, ["a"], 1, pieces) == 0
    assert not host._warming


async def test_expert_warmups_run_the_pass_off_the_engine_thread(bundle):
    host = ModelHost(bundle, KPIS)
    metrics = Metrics()
    engine = StepEngine([host], metrics, flush_ms=1.0)
    buffer = MemoryWindowBuffer(KPIS, 64)
    engine.start()
    warmups = ExpertWarmups([host], buffer, engine, metrics, 64)
    try:
        cells = [f"c{i}" for i in range(4)]
        for t in range(40):
            v = kpi_values(len(cells), t).astype(np.float32)
            batch = SampleBatch(cells, np.full(len(cells), T0_MS + 1000 * t), np.full(len(cells), t + 1, np.uint64), v)
            await buffer.append(batch)
            engine.submit(batch)
        await asyncio.wrap_future(engine.call(lambda: None))
        slots = np.array([host.table.slot(c) for c in cells])
        host.active[slots, 2] = False
        threads = []
        pass_ = host.warm_pieces
        host.warm_pieces = lambda *a: threads.append(__import__("threading").current_thread().name) or pass_(*a)
        assert await warmups.run([(host, int(s), 2) for s in slots]) == len(cells)
        assert threads == ["ms3m-warmup_0"] and host.active[slots, 2].all()
        assert metrics.registry.get_sample_value("ms3m_expert_warmups_total") == len(cells)
        assert metrics.registry.get_sample_value("ms3m_expert_warmup_seconds_count") == 1
    finally:
        warmups.cancel()
        engine.stop()


@pytest.mark.parametrize("expert", [0, 1, 2])
def test_a_warm_up_over_the_whole_history_is_the_continuously_stepped_state(bundle, expert):
    """Cells that joined at different times, stepped with the expert on from their first sample: the warm-up
    from each cell's whole history (windows of different lengths, aligned at their ends) gives that state."""
    host = ModelHost(bundle, KPIS)
    joined = {"a": 0, "b": 5, "c": 18}
    raw: dict[str, list[np.ndarray]] = {k: [] for k in joined}
    for t in range(70):
        cells = [k for k, t0 in joined.items() if t >= t0]
        slots, _ = host.slots(cells, 0)
        v = kpi_values(len(cells), t, seed=t).astype(np.float32)
        for k, row in zip(cells, v):
            raw[k].append(row)
        host.step(slots, v, np.full(len(cells), T0_MS + 1000 * t))
    slots = np.array([host.table.slot(k) for k in joined])
    pieces = host.warm_pieces(expert, [np.stack(raw[k]) for k in joined], host.table.arrays[-1][slots, 0])
    for got, want in zip(pieces, expert_state(host, slots, expert)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
