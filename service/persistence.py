"""Cell state across restarts: periodic snapshots to the window buffer, and on start the journal flush,
snapshot restore and replay of newer buffered samples, so state after a restart equals the uninterrupted
run (README, "Delivery guarantees")."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.buffer.base import BufferUnavailable, SampleBatch, WindowBuffer
from service.engine.engine import StepEngine
from service.engine.host import ModelHost
from service.ingest.pipeline import IngestPipeline
from service.metrics import Metrics

log = logging.getLogger("ms3m.persistence")

# Cells per snapshot write. A snapshot of every cell at once paused the step engine and the event loop long enough
# to dominate the p99 latency with large states (MS³M: 14 KB per cell); in chunks, each pause is short.
SNAPSHOT_CELLS = 100


class StatePersistence:
    """Snapshot and restore of every host's per-cell state through `buffer`; jobs run in the engine's thread."""

    def __init__(self, hosts: list[ModelHost], buffer: WindowBuffer, engine: StepEngine, pipeline: IngestPipeline,
                 metrics: Metrics, snapshot_interval_s: float, retry_s: float):
        self.hosts, self.buffer, self.engine, self.pipeline = hosts, buffer, engine, pipeline
        self.metrics = metrics
        self.snapshot_interval_s = snapshot_interval_s
        self.retry_s = retry_s
        self.restored = False

    async def restore(self) -> dict[str, int]:
        """Snapshots → hosts; buffered samples newer than each snapshot (or all, without one) → replayed.
        Raises BufferUnavailable (then nothing half-done is left queued; calling again is safe)."""
        stats = {"snapshots": 0, "replayed": 0, "series": 0}
        try:
            known = await self.buffer.series()
            self.pipeline.validator.restore(await self.buffer.last(known))
            since: dict[str, int] = {k: -1 for k in known}
            for host in self.hosts:
                records = await self.buffer.load_snapshots(host.name)
                restored = self.engine.call(lambda h=host, r=records: h.restore(r))
                stats["snapshots"] += await asyncio.wrap_future(restored)
                for k, (ts, _) in records.items():
                    # replay from the oldest point any model needs (models with newer snapshots skip)
                    since[k] = ts if since.get(k, -1) == -1 else min(since[k], ts)
            stats["series"] = len(known)
            for key in known:
                samples = await self.buffer.since(key, since.get(key, -1))
                if not len(samples):
                    continue
                batch = SampleBatch([key] * len(samples), samples.timestamp_ms, samples.sequence, samples.values)
                self.engine.submit(self.skip_applied(batch), replay=True)
                stats["replayed"] += len(samples)
        finally:
            await asyncio.wrap_future(self.engine.call(lambda: None))  # replay done (or drained)
        return stats

    def skip_applied(self, batch: SampleBatch) -> SampleBatch:
        """Drop samples every host has already applied (snapshot newer than the sample)."""
        keep = []
        for i, (key, ts) in enumerate(zip(batch.series, batch.timestamp_ms.tolist())):
            if any((s := h.table.slot(key)) is None or h.last_ts[s] < ts for h in self.hosts):
                keep.append(i)
        return batch.take(keep)

    async def recover(self) -> list[asyncio.Task]:
        """Journal of an earlier run → buffer, then restore; until both succeed, ingest answers UNAVAILABLE
        (retried every `retry_s`). Returns the periodic tasks it starts (journal flush, snapshots)."""
        pipeline = self.pipeline
        pipeline.ready = False
        pipeline.not_ready_reason = "restoring state; retry later"
        while True:
            try:
                if not await pipeline.flush_journal():
                    raise BufferUnavailable("journal not flushed")
                stats = await self.restore()
                break
            except BufferUnavailable as e:
                pipeline.buffer_ok = False
                log.warning("restore waits for the window buffer: %s", e)
                await asyncio.sleep(self.retry_s)
        pipeline.buffer_ok = True
        log.info("restored %d snapshots, replayed %d samples of %d series", stats["snapshots"],
                 stats["replayed"], stats["series"])
        self.restored = True
        pipeline.ready = True
        return [asyncio.create_task(pipeline.flush_loop(self.retry_s)), asyncio.create_task(self.snapshot_loop())]

    async def snapshot(self) -> int:
        """Write the states of cells changed since the last snapshot; returns how many were written. On a
        buffer outage the cells stay dirty for the next snapshot."""
        total = 0
        for host in self.hosts:
            start: int | None = 0
            while start is not None:  # chunks of SNAPSHOT_CELLS, each slot visited once per snapshot
                records, start = await asyncio.wrap_future(
                    self.engine.call(lambda h=host, s=start: h.snapshot_chunk(s, SNAPSHOT_CELLS)))
                if not records:
                    continue
                try:
                    await self.buffer.save_snapshots(host.name, records)
                    total += len(records)
                except BufferUnavailable:
                    self.metrics.redis_errors.labels("snapshot").inc()
                    await asyncio.wrap_future(self.engine.call(lambda h=host, r=records: h.mark_dirty(list(r))))
                    break  # the rest stays dirty for the next snapshot
        self.metrics.snapshots.inc(total)
        return total

    async def snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_interval_s)
            with contextlib.suppress(Exception):
                await self.snapshot()
