"""An asyncio gRPC publisher of KPI samples to ms3m.v1.E2Ingest (the simulator's and replayer's client).

`Publisher.send` takes samples as numpy arrays (series, timestamps, sequences, values (n, D) with NaN =
absent) and publishes them as KpiIndication messages of up to `batch_size` reports, encoded by
`service.sim.encoding` and delivered by `service.sim.delivery` (acked=True: at-least-once, re-sent after a
reconnect; acked=False: one summary ack). `stats` and `combine_stats` report counters, rejections by
reason, ack latency and throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import grpc
import numpy as np

from ms3m.v1 import kpm_pb2
from service.sim.delivery import PUBLISH, Message, PublishError, StreamDelivery
from service.sim.encoding import IndicationEncoder, SeriesKey, check_arrays

LATENCY_WINDOW = 65_536  # ack latencies kept for the percentiles (the most recent messages)


class Publisher(StreamDelivery):
    """Publishes KPI samples to E2Ingest; use as `async with Publisher(...) as pub: await pub.send(...)`.

    target: "host:port"; e2_node_id: this publisher's E2 node; batch_size: reports per message (the
    service accepts up to 20,000); max_in_flight: unacked messages on the stream; retries: reconnect
    attempts without progress before giving up (None: forever), with backoff (first, max) seconds;
    connect_timeout: seconds to wait for the channel on each attempt; ack_timeout: seconds without an ack
    while messages are unacked before the stream counts as broken (reconnect, re-send); sequence_start: the
    first sequence number of each series when `send` assigns them (default: Unix µs at construction, so a
    new run's sequences are newer than an earlier run's). channel_factory() builds the channel (tests, TLS);
    clock gives seconds.
    """

    def __init__(self, target: str, *, e2_node_id: str, batch_size: int = 1000, acked: bool = True,
                 max_in_flight: int = 8, granularity_period_ms: int = 1000, retries: int | None = 10,
                 backoff: tuple[float, float] = (0.05, 2.0), connect_timeout: float = 10.0, ack_timeout: float = 30.0,
                 sequence_start: int | None = None, channel_factory: Callable[[], grpc.aio.Channel] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError(f"batch_size and max_in_flight must be >= 1, got {batch_size} and {max_in_flight}")
        if retries is not None and retries < 0:
            raise ValueError(f"retries must be >= 0 or None, got {retries}")
        self.target = target
        self.e2_node_id = e2_node_id
        self.batch_size = int(batch_size)
        self.acked = acked
        self.max_in_flight = int(max_in_flight)
        self.granularity_period_ms = int(granularity_period_ms)
        self.retries = retries
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.sequence_start = time.time_ns() // 1000 if sequence_start is None else int(sequence_start)
        self._channel_factory = channel_factory or self._default_channel
        self._clock = clock
        self.encoder = IndicationEncoder()
        self._next_seq = np.zeros(0, np.uint64)
        self._last_acked = np.zeros(0, np.int64)  # -1: nothing acked yet
        self._channel: grpc.aio.Channel | None = None
        self._call = None
        self._generation = 0
        self._pending: dict[int, Message] = {}
        self._next_id = 1
        self._send_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._dead = asyncio.Event()  # set when delivery failed for good
        self._closing = False
        self._error: BaseException | None = None
        self._task: asyncio.Task | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._unacked_stream_messages = 0  # acked=False: messages on the current stream
        self._counts = dict(messages=0, samples=0, bytes=0, acked_messages=0, acked_samples=0, accepted=0,
                            rejected=0, resent_messages=0, reconnects=0, unconfirmed_messages=0, stale_acks=0)
        self._rejections: dict[str, int] = {}
        self._details: list[str] = []
        self._encode_s = 0.0
        self._t_first: float | None = None
        self._t_last_ack: float | None = None
        self._t_closed: float | None = None

    def _default_channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target, options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000), ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ])  # no keepalive pings (servers with default settings answer them with GOAWAY): ack_timeout finds dead peers

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.close(flush=exc_type is None)

    async def start(self) -> None:
        """Create the channel and (acked) the stream supervisor; connecting happens in the background."""
        if self._channel is None:
            self._channel = self._channel_factory()
            if self.acked:
                self._task = asyncio.get_running_loop().create_task(self._supervise(), name="ms3m-publisher")

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every message sent so far is acked (acked=True); PublishError if delivery failed."""
        self._raise_if_failed()
        if self.acked:
            try:
                await asyncio.wait_for(self._wait_or_fail(self._drained), timeout)
            except TimeoutError:
                raise PublishError(f"{self.target}: {len(self._pending)} messages still unacked after {timeout} s") \
                    from None
        self._raise_if_failed()

    async def close(self, flush: bool = True, timeout: float = 30.0) -> None:
        """Flush (unless flush=False), end the stream and close the channel; idempotent."""
        if self._channel is None:
            return
        try:
            if flush and self._error is None:
                if self.acked:
                    await self.flush(timeout)
                elif self._call is not None:
                    await self._finish_unacked(timeout)
        finally:
            self._closing = True
            if self._task is not None:
                if self._call is not None and self._error is None and flush:
                    with contextlib.suppress(Exception):
                        async with self._write_lock:
                            await self._call.done_writing()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.wait_for(asyncio.shield(self._task), 2.0)
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
                self._task = None
            if self._call is not None:
                self._call.cancel()
                self._call = None
            await self._channel.close()
            self._channel = None
            self._t_closed = self._clock()

    # -- sending ---------------------------------------------------------------------------------------------
    def register(self, series: Iterable[SeriesKey | str | tuple]) -> np.ndarray:
        """Series indices for `send` (registering new series once is faster than passing keys each time)."""
        idx = self.encoder.register(series)
        grow = len(self.encoder) - len(self._next_seq)
        if grow > 0:
            self._next_seq = np.concatenate([self._next_seq, np.full(grow, self.sequence_start, np.uint64)])
            self._last_acked = np.concatenate([self._last_acked, np.full(grow, -1, np.int64)])
        return idx

    async def send(self, series, timestamps_ms, sequences, values, meas_names: Sequence[str]) -> int:
        """Publish n samples; returns the number of messages written. Waits while max_in_flight are unacked.

        series: (n,) indices from `register`, or n keys / cell ids; timestamps_ms (n,) Unix ms, strictly
        increasing per series; sequences (n,) or None to number each series from `sequence_start`;
        values (n, D) with NaN = absent, D = len(meas_names). Raises ValueError on bad arrays and
        PublishError once delivery has failed for good.
        """
        self._raise_if_failed()
        if self._channel is None:
            await self.start()
        idx = np.asarray(series) if isinstance(series, np.ndarray) and series.dtype.kind in "iu" else \
            self.register(series)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.encoder)):
            raise ValueError("series index out of range: register the series first")
        if sequences is None:
            sequences = self._assign_sequences(idx)
        ts, seq, vals = check_arrays(idx, timestamps_ms, sequences, values, meas_names)
        header = self.encoder.header(self.e2_node_id, self.granularity_period_ms, meas_names)
        written = 0
        async with self._send_lock:
            for lo in range(0, len(idx), self.batch_size):
                hi = min(lo + self.batch_size, len(idx))
                t0 = time.perf_counter()
                mid = self._next_id
                self._next_id += 1
                data = self.encoder.encode(header, mid, idx[lo:hi], ts[lo:hi], seq[lo:hi], vals[lo:hi])
                self._encode_s += time.perf_counter() - t0
                msg = Message(mid, data, idx[lo:hi], seq[lo:hi], hi - lo)
                if self.acked:
                    await self._submit(msg)
                else:
                    self._count_sent(msg)
                    await self._write_unacked(msg)
                written += 1
        return written

    def _assign_sequences(self, idx: np.ndarray) -> np.ndarray:
        """Next sequence numbers per series, counting repeats of a series within this call."""
        n = len(idx)
        order = np.argsort(idx, kind="stable")
        s = idx[order]
        start = np.r_[True, s[1:] != s[:-1]] if n else np.zeros(0, bool)
        first = np.maximum.accumulate(np.where(start, np.arange(n), 0)) if n else np.zeros(0, np.int64)
        rank = np.empty(n, np.uint64)
        rank[order] = (np.arange(n) - first).astype(np.uint64)
        seq = self._next_seq[idx] + rank
        np.add.at(self._next_seq, idx, np.uint64(1))
        return seq

    # -- results ---------------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def latencies(self) -> np.ndarray:
        """Ack latencies (s) of the most recent messages (acked=True)."""
        return np.fromiter(self._latencies, np.float64, len(self._latencies))

    def last_acked_sequences(self) -> dict[SeriesKey, int]:
        """Per series, the highest sequence number in an acked message (series with none acked are left out)."""
        return {k: int(s) for k, s in zip(self.encoder.keys, self._last_acked.tolist()) if s >= 0}

    def stats(self) -> dict:
        """Counters, rejections by reason, ack latency percentiles (ms) and throughput (samples/s)."""
        c = dict(self._counts)
        now = self._t_closed if self._t_closed is not None else self._clock()
        elapsed = (now - self._t_first) if self._t_first is not None else 0.0
        lat = self.latencies()
        c.update(
            e2_node_id=self.e2_node_id, target=self.target, acked=self.acked, in_flight=len(self._pending),
            rejected_by_reason=dict(self._rejections), rejection_details=list(self._details),
            elapsed_s=round(elapsed, 4),
            samples_per_s=round(c["samples"] / elapsed, 1) if elapsed > 0 else 0.0,
            accepted_per_s=round(c["accepted"] / (self._t_last_ack - self._t_first), 1)
            if self._t_last_ack is not None and self._t_first is not None and self._t_last_ack > self._t_first else 0.0,
            encode_us_per_sample=round(1e6 * self._encode_s / c["samples"], 3) if c["samples"] else 0.0,
            latency_ms=_percentiles(lat),
            error=str(self._error) if self._error else None,
        )
        return c


def _percentiles(lat_s: np.ndarray) -> dict:
    if len(lat_s) == 0:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(lat_s, [50, 99])
    return {"p50": round(1e3 * float(p50), 3), "p99": round(1e3 * float(p99), 3), "max": round(1e3 * lat_s.max(), 3)}


def combine_stats(publishers: Sequence[Publisher]) -> dict:
    """One stats document for several publishers (one per E2 node): summed counters, pooled latencies."""
    if len(publishers) == 1:
        st = publishers[0].stats()
        return {"e2_node_ids": [st.pop("e2_node_id")], **st}
    parts = [p.stats() for p in publishers]
    out: dict = {"e2_node_ids": [p["e2_node_id"] for p in parts], "target": parts[0]["target"],
                 "acked": parts[0]["acked"]}
    for k in ("messages", "samples", "bytes", "acked_messages", "acked_samples", "accepted", "rejected",
              "resent_messages", "reconnects", "unconfirmed_messages", "stale_acks", "in_flight"):
        out[k] = sum(p[k] for p in parts)
    reasons: dict[str, int] = {}
    for p in parts:
        for k, v in p["rejected_by_reason"].items():
            reasons[k] = reasons.get(k, 0) + v
    out["rejected_by_reason"] = reasons
    out["rejection_details"] = [d for p in parts for d in p["rejection_details"]][:20]
    elapsed = max(p["elapsed_s"] for p in parts)
    out["elapsed_s"] = elapsed
    out["samples_per_s"] = round(out["samples"] / elapsed, 1) if elapsed > 0 else 0.0
    out["accepted_per_s"] = round(sum(p["accepted_per_s"] for p in parts), 1)
    out["encode_us_per_sample"] = round(
        sum(p["encode_us_per_sample"] * p["samples"] for p in parts) / out["samples"], 3) if out["samples"] else 0.0
    out["latency_ms"] = _percentiles(np.concatenate([p.latencies() for p in publishers]))
    errors = [p["error"] for p in parts if p["error"]]
    out["error"] = "; ".join(errors) if errors else None
    return out


async def publish_once(target: str | grpc.aio.Channel, messages: Iterable[kpm_pb2.KpiIndication | bytes], *,
                       timeout: float = 10.0) -> kpm_pb2.IngestAck:
    """Send messages on one client-streaming Publish call and return its summary ack (tests, tools)."""
    own = isinstance(target, str)
    channel = grpc.aio.insecure_channel(target) if own else target
    try:
        method = channel.stream_unary(
            PUBLISH, request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
            response_deserializer=kpm_pb2.IngestAck.FromString)
        call = method(timeout=timeout, wait_for_ready=True)
        for m in messages:
            await call.write(m)
        await call.done_writing()
        return await call
    finally:
        if own:
            await channel.close()
