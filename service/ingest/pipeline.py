"""IngestPipeline: validate → admit → make durable → acknowledge → queue for the step engine.

An acknowledged report is never dropped later: capacity (the engine's queue, `max_cells`) is checked
before anything is stored, and a report is counted as accepted only once it is in the window buffer or,
while a Redis buffer is unreachable, fsynced in the DiskJournal. Without a journal, reports that cannot
be stored are refused as UNAVAILABLE and the publisher retries them (README, "Delivery guarantees").
"""

from __future__ import annotations

import asyncio
import logging
import time

from ms3m.v1 import kpm_pb2
from service.buffer.base import BufferUnavailable, SampleBatch, WindowBuffer
from service.engine.engine import StepEngine
from service.ingest.journal import DiskJournal
from service.ingest.validate import IngestValidator, Rejections
from service.metrics import Metrics

log = logging.getLogger("ms3m.ingest")
R = kpm_pb2.RejectReason
FLUSH_CHUNK_SAMPLES = 10_000


class IngestPipeline:
    """The ingest path of one xApp. `ingest` runs on the event loop; it never raises for bad input."""

    def __init__(self, validator: IngestValidator, buffer: WindowBuffer | None, engine: StepEngine,
                 metrics: Metrics, *, max_cells: int, max_queue_samples: int, journal: DiskJournal | None = None):
        self.validator = validator
        self.buffer = buffer
        self.engine = engine
        self.metrics = metrics
        self.max_cells = max_cells
        self.max_queue_samples = max_queue_samples
        self.journal = journal
        self.buffer_ok = True
        self.ready = True  # False while the xApp restores state: reports are refused as UNAVAILABLE
        self.not_ready_reason = ""
        self.lock = asyncio.Lock()  # one batch at a time: order, commits and journal flushes

    # -- capacity ----------------------------------------------------------------------------------
    def queue_full(self, n: int) -> str | None:
        """Why n more samples cannot be queued now (the API answers RESOURCE_EXHAUSTED / 503), or None."""
        depth = self.engine.depth
        if depth + n > self.max_queue_samples:
            return f"step engine queue full ({depth} samples waiting); retry later"
        return None

    def _admit(self, batch: SampleBatch, rej: Rejections, message_id: int) -> SampleBatch:
        """Drop the samples of new series beyond max_cells (counted CAPACITY); known series always pass."""
        known = self.validator.last_ts
        room = self.max_cells - len(known)
        new = [k for k in dict.fromkeys(batch.series) if k not in known]
        if len(new) <= room:
            return batch
        refused = set(new[max(room, 0):])
        keep = [i for i, k in enumerate(batch.series) if k not in refused]
        rej.add(message_id, 0, R.REJECT_REASON_CAPACITY,
                f"RESOURCE_EXHAUSTED: this xApp serves at most {self.max_cells} series (max_cells); "
                f"{len(refused)} new series refused, e.g. {next(iter(refused))!r}", len(batch) - len(keep))
        return batch.take(keep)

    # -- the path ------------------------------------------------------------------------------------
    async def ingest(self, msg: kpm_pb2.KpiIndication, received: float | None = None) -> kpm_pb2.IngestAck:
        received = received if received is not None else time.perf_counter()
        self.metrics.ingest_messages.inc()
        n = len(msg.reports)
        if self.buffer is None or not self.ready:
            rej = Rejections()
            rej.add(msg.message_id, 0, R.REJECT_REASON_UNAVAILABLE,
                    self.not_ready_reason or "no model bundle loaded", n)
            return self._ack(msg, 0, rej)
        async with self.lock:
            batch, rej = self.validator.validate(msg)
            if len(batch):
                batch = self._admit(batch, rej, msg.message_id)
            k = len(batch)
            if k:
                if (why := self.queue_full(k)) is not None:
                    rej.add(msg.message_id, 0, R.REJECT_REASON_OVERLOADED, why, k)
                    k = 0
                elif (why := await self._store(batch)) is not None:
                    rej.add(msg.message_id, 0, R.REJECT_REASON_UNAVAILABLE, why, k)
                    k = 0
                else:
                    self.validator.commit(batch)
                    self.engine.submit(batch, received, force=True)
            self.metrics.ingest_samples.inc(k)
        return self._ack(msg, k, rej)

    def _ack(self, msg, accepted: int, rej: Rejections) -> kpm_pb2.IngestAck:
        for reason, count in rej.counts.items():
            self.metrics.ingest_rejected.labels(R.Name(reason).removeprefix("REJECT_REASON_").lower()).inc(count)
        return kpm_pb2.IngestAck(
            message_id=msg.message_id, messages=1, accepted=accepted, rejected=rej.total,
            rejections=[kpm_pb2.RejectionCount(reason=r, count=c) for r, c in sorted(rej.counts.items())],
            details=rej.details)

    async def _store(self, batch: SampleBatch) -> str | None:
        """Durable in the buffer, or in the journal while the buffer is unreachable; else why not."""
        if self.journal is None or self.journal.samples == 0:
            t0 = time.perf_counter()
            try:
                await self.buffer.append(batch)
                self.metrics.redis_latency.labels("append").observe(time.perf_counter() - t0)
                return None
            except BufferUnavailable as e:
                self.metrics.redis_errors.labels("append").inc()
                if self.buffer_ok:
                    log.warning("window buffer unreachable (%s); %s", e,
                                "journaling accepted samples to disk" if self.journal else
                                "refusing reports as UNAVAILABLE (no journal)")
                self.buffer_ok = False
                if self.journal is None:
                    return "window buffer unreachable and no journal configured; retry later"
        if not self.journal.has_room(len(batch)):
            return f"window buffer unreachable and journal full ({self.journal.samples} samples); retry later"
        try:
            await asyncio.to_thread(self.journal.append, batch)
        except OSError as e:
            log.error("journal write failed: %s", e)
            return f"window buffer unreachable and journal not writable ({e.strerror}); retry later"
        self.metrics.journal.set(self.journal.samples)
        return None

    async def flush_journal(self) -> bool:
        """Write journaled samples to the buffer in order. True when nothing is left journaled."""
        if self.journal is None:
            if not self.buffer_ok and await self.buffer.ping():
                self.buffer_ok = True
            return True
        if not self.journal.samples:
            if not self.buffer_ok and await self.buffer.ping():
                self.buffer_ok = True
            return True
        async with self.lock:  # keeps order with new samples
            try:
                while self.journal.batches:
                    chunk = self.journal.take(FLUSH_CHUNK_SAMPLES)
                    await self.buffer.append(SampleBatch.concat(chunk))
                    self.journal.drop(len(chunk))
                    self.metrics.journal.set(self.journal.samples)
            except BufferUnavailable:
                self.metrics.redis_errors.labels("flush").inc()
                return False
            self.buffer_ok = True
            log.info("window buffer back; journal flushed")
            return True

    async def flush_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush_journal()

    def journaled(self) -> int:
        return self.journal.samples if self.journal is not None else 0

