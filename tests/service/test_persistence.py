"""Snapshots in chunks: every dirty cell written once per snapshot, even while cells keep changing; an outage
leaves the unwritten cells dirty for the next snapshot."""

from __future__ import annotations

import concurrent.futures

import numpy as np

from service import persistence
from service.buffer.base import BufferUnavailable
from service.engine.host import ModelHost
from service.metrics import Metrics
from service.persistence import StatePersistence
from service.runtime.bundle import load_bundle
from tests.service.helpers import KPIS, make_bundle


class InlineEngine:
    """The engine's `call`, run at once (the tests have no step thread); `between` runs before each job."""

    def __init__(self, between=None):
        self.between = between

    def call(self, fn):
        if self.between:
            self.between()
        f: concurrent.futures.Future = concurrent.futures.Future()
        f.set_result(fn())
        return f


class RecordingBuffer:
    def __init__(self, fail_after: int | None = None):
        self.writes: list[list[str]] = []
        self.fail_after = fail_after

    async def save_snapshots(self, model, records):
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            raise BufferUnavailable("down")
        self.writes.append(list(records))


def host_with_cells(tmp_path, n: int) -> ModelHost:
    host = ModelHost(load_bundle(make_bundle(tmp_path)), KPIS)
    slots, _ = host.slots([f"c{i}" for i in range(n)], 0)
    host.step(slots, np.ones((n, len(KPIS)), np.float32), np.full(n, 1000, np.int64))
    return host


def persistence_for(host, engine, buffer) -> StatePersistence:
    return StatePersistence([host], buffer, engine, pipeline=None, metrics=Metrics(), snapshot_interval_s=1,
                            retry_s=1)


async def test_a_snapshot_writes_every_dirty_cell_once_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(persistence, "SNAPSHOT_CELLS", 7)
    host = host_with_cells(tmp_path, 30)
    buffer = RecordingBuffer()
    redirty = lambda: host.mark_dirty(["c0", "c29"])  # noqa: E731  cells that change while the snapshot runs
    assert await persistence_for(host, InlineEngine(redirty), buffer).snapshot() == 30
    assert [len(w) for w in buffer.writes] == [7, 7, 7, 7, 2]
    written = [s for w in buffer.writes for s in w]
    assert sorted(written) == sorted(f"c{i}" for i in range(30))  # each once, c0 too, though dirtied again
    assert host.dirty[host.table.slot("c0")]  # dirtied behind the cursor: left for the next snapshot


async def test_an_outage_mid_snapshot_leaves_the_rest_dirty(tmp_path, monkeypatch):
    monkeypatch.setattr(persistence, "SNAPSHOT_CELLS", 10)
    host = host_with_cells(tmp_path, 30)
    buffer = RecordingBuffer(fail_after=1)
    assert await persistence_for(host, InlineEngine(), buffer).snapshot() == 10
    assert int(host.dirty[:30].sum()) == 20  # the failed chunk marked dirty again, the last never taken
    buffer.fail_after = None
    assert await persistence_for(host, InlineEngine(), buffer).snapshot() == 20
    assert not host.dirty[:30].any()
