"""service/sim/simulator.py: `simulate` against an in-process fake E2Ingest server (structure, nodes, pacing,
stopping)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.sim import simulator
from service.sim.publisher import Publisher, PublishError
from tests.service.sim_helpers import FakeIngest, SilentIngest, check_stream, serving, strictly_increasing


async def test_simulate_stops_promptly_when_blocked_on_backpressure():
    stop = asyncio.Event()
    async with serving(SilentIngest()) as target:
        asyncio.get_running_loop().call_later(0.3, stop.set)
        t0 = time.monotonic()
        with pytest.raises(PublishError, match="unacked"):
            await simulator.simulate(target, n_cells=10, rate=0, batch_size=10, stop=stop, publisher_factory=lambda n: (
                Publisher(target, e2_node_id=n, batch_size=10, max_in_flight=2, retries=0, ack_timeout=0.5)))
    assert time.monotonic() - t0 < 5


async def test_stopping_during_a_blocked_send_still_delivers_everything_sent():
    fake = FakeIngest(ack_delay=0.1)  # slow acks: sends block on the in-flight window
    stop = asyncio.Event()
    async with serving(fake) as target:
        asyncio.get_running_loop().call_later(0.35, stop.set)
        result = await simulator.simulate(target, n_cells=10, rate=0, stop=stop, publisher_factory=lambda n: (
            Publisher(target, e2_node_id=n, batch_size=10, max_in_flight=1)))
    assert result["error"] is None and result["reconnects"] == 0 and result["in_flight"] == 0
    assert result["accepted"] == result["samples"] == len(fake.accepted) > 0
    assert len(fake.messages) == len({m.message_id for m in fake.messages}) == result["messages"]


async def test_simulate_message_structure_with_slices_and_absent_values():
    fake = FakeIngest()
    progress = []
    async with serving(fake) as target:
        result = await simulator.simulate(target, n_cells=5, rate=0, n_samples=3000, seed=3, slices=True,
                                          missing_rate=0.1, period_ms=500, batch_size=256, start_ms=1_700_000_000_000,
                                          on_progress=progress.append, progress_interval_s=0.05)
    assert result["samples"] == 3000 and result["accepted"] == 3000 and result["config"]["series"] == 15
    per = check_stream(fake.messages, simulator.KPIS)
    assert set(per) == {(f"gnb-001-cell-{c:02d}", None, sst) for c in range(5) for sst in (None, 1, 2)}
    strictly_increasing(per)
    for pairs in per.values():  # one report per series and round, period 500 ms
        assert np.all(np.diff([t for t, _ in pairs]) == 500)
    radio = {simulator.KPIS.index(k) for k in ("RF.serving.RSRP", "DRB.UECqiDl", "PEE.AvgPower")}
    reports = [r for m in fake.messages for r in m.reports]
    assert all(radio <= set(r.absent) for r in reports if r.HasField("slice"))
    cell_level = [r for r in reports if not r.HasField("slice")]
    frac = sum(len(r.absent) for r in cell_level) / (len(cell_level) * len(simulator.KPIS))
    assert 0.07 < frac < 0.13
    assert all(m.e2_node_id == "gnb-001" for m in fake.messages)
    thp = simulator.KPIS.index("DRB.UEThpDl")
    embb = [r.values[thp] for r in reports if r.HasField("slice") and r.slice.sst == 1 and thp not in r.absent]
    urllc = [r.values[thp] for r in reports if r.HasField("slice") and r.slice.sst == 2 and thp not in r.absent]
    assert np.median(urllc) < 0.2 * np.median(embb)


async def test_simulate_nodes_and_kpi_subset():
    fake = FakeIngest()
    async with serving(fake) as target:
        result = await simulator.simulate(target, n_cells=6, nodes=3, rate=0, n_samples=600,
                                          kpis=["RRU.PrbUsedDl", "DRB.UEThpDl"])
    assert result["config"]["nodes"] == 3
    assert result["accepted"] == 600 and sorted(result["e2_node_ids"]) == ["gnb-001", "gnb-002", "gnb-003"]
    per = check_stream(fake.messages, ["RRU.PrbUsedDl", "DRB.UEThpDl"])
    strictly_increasing(per)
    for m in fake.messages:
        assert all(r.cell_id.startswith(m.e2_node_id + "-cell-") for r in m.reports)
    with pytest.raises(ValueError, match="kpis"):
        await simulator.simulate(target, kpis=["Not.AKpi"], n_samples=1)
    with pytest.raises(ValueError, match="rate or speedup"):
        await simulator.simulate(target, rate=10, speedup=2, n_samples=1)


async def test_simulate_paces_to_the_target_rate():
    fake = FakeIngest()
    async with serving(fake) as target:
        t0 = time.monotonic()
        result = await simulator.simulate(target, n_cells=50, rate=3000, duration_s=1.0, batch_size=500)
        wall = time.monotonic() - t0
    received = sum(len(m.reports) for m in fake.messages)
    assert received == result["samples"] == result["accepted"]
    assert 0.8 * 3000 <= received / result["wall_s"] <= 1.2 * 3000, (received, result["wall_s"])
    assert wall < 3.0
    assert len(fake.messages) >= 20  # paced in small chunks, not one burst
