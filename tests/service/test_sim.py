"""The KPI publisher, simulator and trace replayer against an in-process fake E2Ingest server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

from ms3m.v1 import kpm_pb2, kpm_pb2_grpc
from service.sim import simulator
from service.sim.publisher import (
    IndicationEncoder,
    Publisher,
    PublishError,
    SeriesKey,
    build_indication,
    publish_once,
)
from tests.conftest import REPO


def _key(r: kpm_pb2.KpiReport) -> tuple:
    return (r.cell_id, r.ue_id if r.HasField("ue_id") else None, r.slice.sst if r.HasField("slice") else None)


class FakeIngest(kpm_pb2_grpc.E2IngestServicer):
    """Acks every message; keeps the per-series last sequence (durable across restarts, like the buffer)
    and counts duplicates the way the service does. break_after=k aborts the stream once, on the k-th message,
    before acking it."""

    def __init__(self, break_after: int | None = None, ack_delay: float = 0.0):
        self.ack_delay = ack_delay
        self.messages: list[kpm_pb2.KpiIndication] = []
        self.acked_ids: set[int] = set()
        self.last_seq: dict[tuple, int] = {}
        self.accepted: list[tuple] = []  # (series, sequence, timestamp)
        self.duplicates = 0
        self.break_after = break_after
        self.streams = 0
        self.on_message = None  # optional async hook(count)

    def _ingest(self, msg: kpm_pb2.KpiIndication) -> kpm_pb2.IngestAck:
        acc = dup = 0
        for r in msg.reports:
            k = _key(r)
            if r.sequence <= self.last_seq.get(k, -1):
                dup += 1
                continue
            self.last_seq[k] = r.sequence
            self.accepted.append((k, r.sequence, r.timestamp_ms))
            acc += 1
        self.duplicates += dup
        ack = kpm_pb2.IngestAck(message_id=msg.message_id, messages=1, accepted=acc, rejected=dup)
        if dup:
            ack.rejections.add(reason=kpm_pb2.REJECT_REASON_DUPLICATE, count=dup)
        return ack

    async def PublishAcked(self, request_iterator, context):
        self.streams += 1
        async for msg in request_iterator:
            self.messages.append(msg)
            if self.on_message is not None:
                await self.on_message(len(self.messages))
            if self.break_after is not None and len(self.messages) == self.break_after:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "simulated crash")
            if self.ack_delay:
                await asyncio.sleep(self.ack_delay)
            self.acked_ids.add(msg.message_id)
            yield self._ingest(msg)

    async def Publish(self, request_iterator, context):
        total = kpm_pb2.IngestAck()
        async for msg in request_iterator:
            self.messages.append(msg)
            a = self._ingest(msg)
            total.message_id, total.messages = a.message_id, total.messages + 1
            total.accepted += a.accepted
            total.rejected += a.rejected
        return total


async def _start(servicer, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    kpm_pb2_grpc.add_E2IngestServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


@contextlib.asynccontextmanager
async def serving(servicer):
    server, port = await _start(servicer)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _check_stream(messages: list[kpm_pb2.KpiIndication], names: list[str]) -> dict[tuple, list[tuple[int, int]]]:
    """Structure of every message; returns (timestamp, sequence) per series in arrival order."""
    per: dict[tuple, list[tuple[int, int]]] = {}
    for m in messages:
        assert list(m.meas_names) == names
        assert m.granularity_period_ms > 0 and m.message_id > 0
        for r in m.reports:
            assert len(r.values) == len(names)
            assert list(r.absent) == sorted(set(r.absent)) and all(a < len(names) for a in r.absent)
            assert all(np.isfinite(v) for v in r.values)
            per.setdefault(_key(r), []).append((r.timestamp_ms, r.sequence))
    return per


def _strictly_increasing(per: dict) -> None:
    for k, pairs in per.items():
        ts, seq = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.uint64)
        assert (np.diff(ts) > 0).all(), f"timestamps of {k} not strictly increasing"
        assert (seq[1:] > seq[:-1]).all(), f"sequences of {k} not strictly increasing"


# ---------------------------------------------------------------------------------------------------------------
# wire encoding


def test_encoder_matches_protobuf_byte_for_byte():
    rng = np.random.default_rng(1)
    enc = IndicationEncoder()
    keys = [SeriesKey(f"gnb-001-cell-{i:03d}") for i in range(20)] + [
        SeriesKey("c-1", "ue-7"), SeriesKey("c-2", None, 1), SeriesKey("c-3", "u", 0, 5),
        SeriesKey("c" * 64, None, 255, (1 << 24) - 1)]
    enc.register(keys)
    for d in (1, 10, 130):  # 130: absent indices need two-byte varints
        n = 200
        names = [f"K{i}" for i in range(d)]
        s = rng.integers(0, len(keys), n)
        ts = rng.integers(1, 1 << 62, n)
        ts[:4] = [1, 127, 128, 1_700_000_000_000]
        seq = rng.integers(0, 1 << 63, n).astype(np.uint64)
        seq[:3] = [0, 1, 1 << 63]
        v = rng.normal(size=(n, d)) * 1e3
        v[rng.random((n, d)) < 0.2] = np.nan
        v[7] = np.nan
        v[8, 0] = np.inf
        data = enc.encode(enc.header("gnb-001", 1000, names), 12345, s, ts, seq, v)
        ref = kpm_pb2.KpiIndication(e2_node_id="gnb-001", granularity_period_ms=1000, meas_names=names,
                                    message_id=12345)
        for i in range(n):
            k = keys[s[i]]
            r = ref.reports.add(cell_id=k.cell_id, timestamp_ms=int(ts[i]), sequence=int(seq[i]),
                                values=np.where(np.isnan(v[i]), 0, v[i]).tolist(),
                                absent=np.flatnonzero(np.isnan(v[i])).tolist())
            if k.ue_id is not None:
                r.ue_id = k.ue_id
            if k.sst is not None:
                r.slice.sst = k.sst
                if k.sd is not None:
                    r.slice.sd = k.sd
        assert data == ref.SerializeToString()


def test_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match="cell_id"):
        IndicationEncoder().register(["bad cell id"])
    with pytest.raises(ValueError, match="cell_id"):
        IndicationEncoder().register(["x" * 65])
    with pytest.raises(ValueError, match="sst"):
        IndicationEncoder().register([SeriesKey("c", None, 300)])
    with pytest.raises(ValueError, match=r"values must be \(n, D\)"):
        build_indication(["c"], [1], np.zeros((1, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="positive"):
        build_indication(["c"], [0], np.zeros((1, 1)), ["a"])
    with pytest.raises(ValueError, match="unique"):
        build_indication(["c"], [1], np.zeros((1, 2)), ["a", "a"])
    msg = build_indication(["c", SeriesKey("c", "ue1")], [5, 6], [[1.0, np.nan], [np.nan, np.nan]], ["a", "b"])
    assert list(msg.reports[0].absent) == [1] and list(msg.reports[1].absent) == [0, 1]
    assert msg.reports[1].ue_id == "ue1" and not msg.reports[0].HasField("ue_id")


# ---------------------------------------------------------------------------------------------------------------
# publisher


async def test_publisher_acked_round_trip_structure_and_stats():
    fake = FakeIngest()
    names = ["DRB.UEThpDl", "RRU.PrbUsedDl", "RF.serving.RSRP"]
    rng = np.random.default_rng(0)
    async with serving(fake) as target:
        pub = Publisher(target, e2_node_id="gnb-007", batch_size=700, max_in_flight=3, sequence_start=100)
        async with pub:
            idx = pub.register([f"gnb-007-cell-{i:02d}" for i in range(50)])
            for r in range(100):  # 100 rounds of 50 cells = 5000 samples, 8 messages
                v = rng.normal(size=(50, 3))
                v[rng.random((50, 3)) < 0.1] = np.nan
                await pub.send(idx, np.full(50, 1_700_000_000_000 + 1000 * r), None, v, names)
        st = pub.stats()
    assert st["samples"] == 5000 and st["messages"] == 100 and st["accepted"] == 5000 and st["rejected"] == 0
    assert st["acked_messages"] == 100 and st["in_flight"] == 0 and st["error"] is None
    assert st["latency_ms"]["p50"] is not None and st["latency_ms"]["p99"] >= st["latency_ms"]["p50"]
    assert all(m.e2_node_id == "gnb-007" and len(m.reports) <= 700 for m in fake.messages)
    per = _check_stream(fake.messages, names)
    assert len(per) == 50 and all(len(v) == 100 for v in per.values())
    _strictly_increasing(per)
    assert pub.last_acked_sequences() == {SeriesKey(f"gnb-007-cell-{i:02d}"): 199 for i in range(50)}
    absent = sum(len(r.absent) for m in fake.messages for r in m.reports)
    assert 0.07 * 15000 < absent < 0.13 * 15000


async def test_publisher_reconnects_and_resends_only_unacked():
    fake = FakeIngest(break_after=4)  # the stream dies on the 4th message, before acking it
    names = ["DRB.UEThpDl"]
    async with serving(fake) as target:
        async with Publisher(target, e2_node_id="gnb-001", batch_size=100, max_in_flight=4,
                             backoff=(0.01, 0.1)) as pub:
            idx = pub.register([f"cell-{i}" for i in range(10)])
            for r in range(50):  # 50 messages of 10 reports
                await pub.send(idx, np.full(10, 1_700_000_000_000 + r), None, np.full((10, 1), float(r)), names)
        st = pub.stats()
    assert fake.streams == 2 and st["reconnects"] == 1 and st["resent_messages"] >= 1
    ids = [m.message_id for m in fake.messages]
    seen, dups = set(), set()
    for i in ids:
        (dups if i in seen else seen).add(i)
    assert seen == set(range(1, 51))  # nothing lost
    assert dups and not dups & {i for i in fake.acked_ids if i < 4}  # only unacked messages came twice
    assert 4 in dups
    assert len(fake.accepted) == 500 and st["accepted"] == 500
    assert st["rejected"] == fake.duplicates == st["rejected_by_reason"].get("duplicate", 0)
    per: dict = {}
    for k, s, t in fake.accepted:
        per.setdefault(k, []).append((t, s))
    _strictly_increasing(per)
    assert all(len(v) == 50 for v in per.values())


async def test_publisher_survives_a_server_restart():
    fake = FakeIngest()
    server, port = await _start(fake)
    target = f"127.0.0.1:{port}"
    restarted = asyncio.Event()

    async def crash_and_restart(count: int) -> None:
        nonlocal server
        if count == 5 and not restarted.is_set():
            restarted.set()
            old = server
            asyncio.get_running_loop().create_task(_restart(old))

    async def _restart(old) -> None:
        nonlocal server
        await old.stop(None)  # kills the stream: the client sees UNAVAILABLE / CANCELLED
        await asyncio.sleep(0.3)
        server, _ = await _start(fake, port)

    fake.on_message = crash_and_restart
    try:
        async with Publisher(target, e2_node_id="gnb-001", batch_size=50, max_in_flight=4,
                             backoff=(0.05, 0.2), connect_timeout=5.0) as pub:
            idx = pub.register([f"cell-{i}" for i in range(50)])
            for r in range(30):
                await pub.send(idx, np.full(50, 1_700_000_000_000 + 1000 * r), None, np.ones((50, 2)), ["a", "b"])
            await pub.flush(timeout=20)
        st = pub.stats()
    finally:
        await server.stop(None)
    assert restarted.is_set() and st["reconnects"] >= 1
    assert len(fake.accepted) == 1500  # every sample exactly once after de-duplication
    assert {m.message_id for m in fake.messages} == set(range(1, 31))
    assert st["in_flight"] == 0 and st["error"] is None


async def test_publisher_gives_up_with_a_clear_error():
    with contextlib.closing(__import__("socket").socket()) as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = Publisher(f"127.0.0.1:{port}", e2_node_id="g", retries=1, backoff=(0.01, 0.01), connect_timeout=0.3)
    with pytest.raises(PublishError, match="gave up after 1 reconnect"):
        async with pub:
            await pub.send(["c"], [1], None, [[1.0]], ["a"])
            await pub.flush(timeout=10)


async def test_publisher_fails_fast_on_a_non_retryable_status():
    class NoAcked(kpm_pb2_grpc.E2IngestServicer):  # PublishAcked → UNIMPLEMENTED
        pass

    async with serving(NoAcked()) as target:
        pub = Publisher(target, e2_node_id="g", backoff=(0.01, 0.01))
        with pytest.raises(PublishError, match="UNIMPLEMENTED"):
            async with pub:
                await pub.send(["c"], [1], None, [[1.0]], ["a"])
                await pub.flush(timeout=10)


class _Silent(kpm_pb2_grpc.E2IngestServicer):
    """Reads every message and never acks (wrong_ids: acks with message ids the publisher never used)."""

    def __init__(self, wrong_ids: bool = False):
        self.wrong_ids, self.streams = wrong_ids, 0

    async def PublishAcked(self, request_iterator, context):
        self.streams += 1
        async for msg in request_iterator:
            if self.wrong_ids:
                yield kpm_pb2.IngestAck(message_id=msg.message_id + 10_000, messages=1)


@pytest.mark.parametrize("wrong_ids", [False, True])
async def test_publisher_treats_missing_acks_as_a_broken_stream(wrong_ids):
    silent = _Silent(wrong_ids)
    async with serving(silent) as target:
        pub = Publisher(target, e2_node_id="g", retries=1, backoff=(0.01, 0.01), ack_timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(PublishError, match=r"no ack for 0\.3 s with 1 messages unacked") as err:
            async with pub:
                await pub.send(["c"], [1], None, [[1.0]], ["a"])
                await pub.flush(timeout=10)
    assert silent.streams == 2 and time.monotonic() - t0 < 5  # one reconnect (re-sent), then a clear error
    assert ("acks named unknown message ids" in str(err.value)) == wrong_ids


async def test_simulate_stops_promptly_when_blocked_on_backpressure():
    stop = asyncio.Event()
    async with serving(_Silent()) as target:
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


async def test_publish_once_and_unacked_mode():
    fake = FakeIngest()
    async with serving(fake) as target:
        msgs = [build_indication(["c1", "c2"], [10 + i, 10 + i], np.ones((2, 1)), ["a"], sequences=[i + 1, i + 1],
                                 message_id=i + 1) for i in range(3)]
        ack = await publish_once(target, msgs)
        assert ack.accepted == 6 and ack.messages == 3
        async with Publisher(target, e2_node_id="g", acked=False, batch_size=40) as pub:
            await pub.send([f"d{i % 10}" for i in range(100)], np.repeat(np.arange(10) + 1, 10), None,
                           np.ones((100, 1)), ["a"])
        st = pub.stats()
    assert st["messages"] == 3 and st["accepted"] == 100 and st["acked_messages"] == 3
    per = _check_stream(fake.messages[3:], ["a"])
    _strictly_increasing(per)


# ---------------------------------------------------------------------------------------------------------------
# simulator


async def test_simulate_message_structure_with_slices_and_absent_values():
    fake = FakeIngest()
    progress = []
    async with serving(fake) as target:
        result = await simulator.simulate(target, n_cells=5, rate=0, n_samples=3000, seed=3, slices=True,
                                          missing_rate=0.1, period_ms=500, batch_size=256, start_ms=1_700_000_000_000,
                                          on_progress=progress.append, progress_interval_s=0.05)
    assert result["samples"] == 3000 and result["accepted"] == 3000 and result["config"]["series"] == 15
    per = _check_stream(fake.messages, simulator.KPIS)
    assert set(per) == {(f"gnb-001-cell-{c:02d}", None, sst) for c in range(5) for sst in (None, 1, 2)}
    _strictly_increasing(per)
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
    per = _check_stream(fake.messages, ["RRU.PrbUsedDl", "DRB.UEThpDl"])
    _strictly_increasing(per)
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


def test_stream_generator_is_continuous_and_deterministic():
    a = simulator.CellKpiStream(8, seed=5)
    b = simulator.CellKpiStream(8, seed=5)
    x = np.concatenate([a.next_block(100), a.next_block(100)])
    y = np.concatenate([b.next_block(100), b.next_block(100)])
    assert x.shape == (200, 8, len(simulator.KPIS)) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, y)
    # the AR(1) closed form equals the recursion
    rng = np.random.default_rng(0)
    xs, y0 = rng.normal(size=(3, 1024)), rng.normal(size=3)
    ref, prev = np.empty_like(xs), y0.copy()
    for t in range(xs.shape[1]):
        prev = 0.9 * prev + xs[:, t]
        ref[:, t] = prev
    np.testing.assert_allclose(simulator._ar1_block(xs, 0.9, y0), ref, atol=1e-9)


def test_stream_generator_matches_the_offline_generator():
    """Same per-cell parameters for a seed and the same KPI distributions as models/training/data/synthetic.py."""
    synthetic = pytest.importorskip("models.training.data.synthetic", reason="needs the train extra (torch)")
    assert synthetic.KPIS == simulator.KPIS
    cells, steps = 64, 1440
    off = synthetic.synthetic_kpis(cells, steps, seed=11)
    offline = np.stack([s.values for s in off.series], axis=1)  # (T, C, K)
    st = simulator.CellKpiStream(cells, seed=11)
    online = np.concatenate([st.next_block(720), st.next_block(720)])
    for k, name in enumerate(simulator.KPIS):
        q_off = np.quantile(offline[:, :, k], [0.1, 0.5, 0.9])
        q_on = np.quantile(online[:, :, k], [0.1, 0.5, 0.9])
        spread = q_off[2] - q_off[0]
        assert np.all(np.abs(q_on - q_off) <= 0.15 * spread + 1e-6), (name, q_off, q_on)
    # per-cell structure: the mean level of each cell agrees (same per-cell parameters)
    thp = simulator.KPIS.index("RF.serving.RSRP")
    assert np.corrcoef(offline[:, :, thp].mean(0), online[:, :, thp].mean(0))[0, 1] > 0.95


# ---------------------------------------------------------------------------------------------------------------
# replayer


def _replayer():
    pytest.importorskip("pandas", reason="the replayer reads CSVs with pandas")
    from service.sim import replayer

    return replayer


async def test_replay_real_traces_fast(shared_data):
    replayer = _replayer()
    root = shared_data / "irish-5g"
    traces = replayer.load_traces(root, max_traces=3)
    assert len({t.name.split("/")[1] for t in traces}) == 2  # mixed groups: Driving and Static
    fake = FakeIngest()
    async with serving(fake) as target:
        result = await replayer.replay(target, root, speed=0, max_traces=3, batch_size=500, start_ms=1_700_000_000_000)
    n = sum(len(t.timestamps_ms) for t in traces)
    assert result["samples"] == result["accepted"] == result["replayed"] == n
    per = _check_stream(fake.messages, replayer.KPIS)
    assert set(per) == {(f"trace-{t.stem}", None, None) for t in traces}
    _strictly_increasing(per)
    stamps = [r.timestamp_ms for m in fake.messages for r in m.reports]
    assert stamps[0] == 1_700_000_000_000 and np.all(np.diff(stamps) >= 0)  # merged in time order
    # values and absent positions are the trace's, second by second
    tr = traces[0]
    got = [r for m in fake.messages for r in m.reports if r.cell_id == f"trace-{tr.stem}"]
    vals = np.array([[np.nan if j in set(r.absent) else v for j, v in enumerate(r.values)] for r in got])
    np.testing.assert_allclose(vals, tr.values, equal_nan=True)
    np.testing.assert_array_equal(np.diff([r.timestamp_ms for r in got]), np.diff(tr.timestamps_ms))


async def test_replay_as_ues_on_serving_cells_and_paced(shared_data):
    replayer = _replayer()
    root = shared_data / "irish-5g"
    fake = FakeIngest()
    async with serving(fake) as target:
        result = await replayer.replay(target, root, speed=20, apps=("Download",), mobility=("Driving",),
                                       max_traces=1, entity="ue", duration_s=0.8)
    reports = [r for m in fake.messages for r in m.reports]
    assert reports and all(r.HasField("ue_id") and r.cell_id.startswith("eci-") for r in reports)
    assert result["config"]["series"] > 1  # the driving UE hands over: one series per (cell, UE)
    span_s = (reports[-1].timestamp_ms - reports[0].timestamp_ms) / 1000
    assert 0.75 * 16 <= span_s <= 16 + 1.5, span_s  # data time ≈ 20 × 0.8 s of wall time
    _strictly_increasing(_check_stream(fake.messages, replayer.KPIS))
    assert result["replayed"] == len(reports) < result["config"]["samples"]


def test_replayer_matches_the_offline_adapter(shared_data):
    """Same KPI names and per-second values as models/training/data/irish5g.py on a real trace."""
    replayer = _replayer()
    irish5g = pytest.importorskip("models.training.data.irish5g", reason="needs the train extra (torch)")
    assert irish5g.COLUMNS == replayer.COLUMNS
    root = shared_data / "irish-5g"
    path = sorted((root / "Netflix" / "Driving").rglob("*.csv"))[0]
    ours = replayer.load_trace(path, root)
    theirs = irish5g.load_kpi_table(path, columns=irish5g.COLUMNS, timestamp=irish5g.TIMESTAMP,
                                    timestamp_format=irish5g.TIMESTAMP_FORMAT, period_ms=1000, agg="mean",
                                    require_values=False, converters={"NetworkMode": irish5g._nr_mode}).series[0]
    pos = np.searchsorted(theirs.timestamps_ms, ours.timestamps_ms)
    np.testing.assert_array_equal(theirs.timestamps_ms[pos], ours.timestamps_ms)
    np.testing.assert_allclose(ours.values, theirs.values[pos], rtol=1e-5, equal_nan=True)
    assert np.isnan(np.delete(theirs.values, pos, axis=0)).all()  # the seconds we skip have no value at all


def test_replayer_errors_are_clear(tmp_path):
    replayer = _replayer()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        replayer.load_traces(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="Download/Driving"):
        replayer.load_traces(tmp_path)
    bad = tmp_path / "Download" / "Driving"
    bad.mkdir(parents=True)
    (bad / "B_x.csv").write_text("Timestamp,DL_bitrate,UL_bitrate,RSRP,RSRQ,Speed,NetworkMode\n"
                                 "2019.11.25_15.34.34,1,2,-80,-10,abc,LTE\n")
    with pytest.raises(ValueError, match="'Speed': non-numeric value 'abc' on data row 1"):
        replayer.load_traces(tmp_path, apps=("Download",), mobility=("Driving",))


# ---------------------------------------------------------------------------------------------------------------
# packaging and CLI


def test_importing_the_sim_package_does_not_import_torch():
    code = ("import sys; import service.sim, service.sim.publisher, service.sim.simulator, service.sim.replayer; "
            "bad = [m for m in ('torch', 'models') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_parsers_have_useful_help():
    import argparse

    from service.sim import add_replay_parser, add_simulate_parser

    parser = argparse.ArgumentParser(prog="ms3m")
    sub = parser.add_subparsers()
    sim, rep = add_simulate_parser(sub), add_replay_parser(sub)
    for p, words in ((sim, ["--cells", "--rate", "--duration", "--slices", "--json", "gnb-001"]),
                     (rep, ["--root", "--speed", "--max-traces", "--as", "--json"])):
        text = p.format_help()
        assert all(w in text for w in words), text
    args = parser.parse_args(["simulate", "--cells", "10", "--rate", "500", "--kpi", "DRB.UEThpDl"])
    assert args.cells == 10 and args.rate == 500 and args.kpi == ["DRB.UEThpDl"] and callable(args.handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--rate", "5", "--speedup", "2"])
    args = parser.parse_args(["replay", "--speed", "0", "--as", "ue", "--app", "Netflix"])
    assert args.speed == 0 and args.entity == "ue" and args.app == ["Netflix"]


async def test_cli_simulate_end_to_end_json():
    fake = FakeIngest()
    code = ("import argparse, sys; from service.sim import add_simulate_parser; p = argparse.ArgumentParser(); "
            "s = p.add_subparsers(); add_simulate_parser(s); a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))")
    async with serving(fake) as target:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, "simulate", "--target", target, "--cells", "4", "--rate", "0",
            "--samples", "400", "--json", cwd=str(REPO), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    doc = json.loads(out.decode().strip().splitlines()[-1])
    assert doc["command"] == "simulate" and doc["accepted"] == 400 and doc["config"]["n_cells"] == 4
    assert "samples in" in err.decode()
    assert sum(len(m.reports) for m in fake.messages) == 400


# ---------------------------------------------------------------------------------------------------------------
# throughput (printed, not asserted)


class _NoOpIngest:
    """Acks each message by count without parsing it (a generic handler on raw bytes)."""

    def __init__(self):
        self.n = 0

    def handler(self) -> grpc.GenericRpcHandler:
        async def acked(request_iterator, context):
            async for _ in request_iterator:
                self.n += 1
                yield kpm_pb2.IngestAck(message_id=self.n, messages=1).SerializeToString()

        return grpc.method_handlers_generic_handler("ms3m.v1.E2Ingest", {
            "PublishAcked": grpc.stream_stream_rpc_method_handler(acked)})


async def test_print_publisher_throughput_to_a_noop_server(capsys):
    noop = _NoOpIngest()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((noop.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    n_cells, d = 1000, 10
    names = simulator.KPIS[:d]
    vals = np.random.default_rng(0).normal(size=(n_cells, d))
    try:
        async with Publisher(f"127.0.0.1:{port}", e2_node_id="g", batch_size=1000, max_in_flight=8) as pub:
            idx = pub.register([f"gnb-001-cell-{i:04d}" for i in range(n_cells)])
            t0, r = time.perf_counter(), 0
            while time.perf_counter() - t0 < 1.0:
                await pub.send(idx, np.full(n_cells, 1_700_000_000_000 + r), None, vals, names)
                r += 1
            await pub.flush()
            dt = time.perf_counter() - t0
        st = pub.stats()
    finally:
        await server.stop(None)
    enc = IndicationEncoder()
    eidx = enc.register([f"gnb-001-cell-{i:04d}" for i in range(n_cells)])
    ts, seq, hdr = np.full(n_cells, 1_700_000_000_000), np.arange(n_cells, dtype=np.uint64) + 1, enc.header("g", 1000,
                                                                                                              names)
    t0 = time.perf_counter()
    for i in range(20):
        enc.encode(hdr, i + 1, eidx, ts, seq, vals)
    enc_us = (time.perf_counter() - t0) / 20 / n_cells * 1e6
    t0 = time.perf_counter()
    for _ in range(5):
        m = kpm_pb2.KpiIndication(e2_node_id="g", granularity_period_ms=1000, meas_names=names, message_id=1)
        add, rows = m.reports.add, vals.tolist()
        for i in range(n_cells):
            add(cell_id=f"gnb-001-cell-{i:04d}", timestamp_ms=1_700_000_000_000, sequence=i + 1, values=rows[i])
        m.SerializeToString()
    pb_us = (time.perf_counter() - t0) / 5 / n_cells * 1e6
    with capsys.disabled():
        print(f"\npublisher → no-op server (in-process, 1 core): {r * n_cells / dt:,.0f} samples/s acked "
              f"({r} messages of {n_cells} reports, D={d}); ack p50 {st['latency_ms']['p50']} ms, "
              f"p99 {st['latency_ms']['p99']} ms; encode {enc_us:.2f} µs/report vs protobuf objects "
              f"{pb_us:.2f} µs/report")
    assert st["acked_messages"] == r
