"""An asyncio gRPC publisher of KPI samples to ms3m.v1.E2Ingest (the simulator's and replayer's client).

Samples arrive as numpy arrays (series index, timestamp, sequence, values (n, D) with NaN = absent) and leave
as KpiIndication messages of up to `batch_size` reports. Building thousands of KpiReport objects is the Python
hot spot (≈2 µs a report with the upb backend), so `IndicationEncoder` writes the protobuf wire format
directly with a few vectorized numpy operations (≈0.4 µs a report); a test checks it byte for byte against
the generated classes.

Delivery (acked=True, the default): one PublishAcked bidi stream; up to `max_in_flight` messages are unacked
at once; acks arrive in order and are matched by message_id. When the stream breaks (server killed,
UNAVAILABLE, …, or no ack for `ack_timeout` s while messages are unacked) the publisher reconnects with
exponential backoff and re-sends every message not yet acked, in order: at-least-once, the server drops the
re-sent reports it already has by their per-series sequence numbers (counted as DUPLICATE rejections).
acked=False uses the client-streaming Publish: faster, one summary ack at close, and messages of a stream
that breaks are counted as unconfirmed (not re-sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import grpc
import numpy as np

from ms3m.v1 import kpm_pb2

PUBLISH_ACKED = "/ms3m.v1.E2Ingest/PublishAcked"
PUBLISH = "/ms3m.v1.E2Ingest/Publish"
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")  # cell and UE ids, as the ingest validator checks them
RETRYABLE = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED,
})
LATENCY_WINDOW = 65_536  # ack latencies kept for the percentiles (the most recent messages)
_REASON_NAMES = {v: k.removeprefix("REJECT_REASON_").lower() for k, v in kpm_pb2.RejectReason.items()}


class PublishError(RuntimeError):
    """Publishing failed for good: a non-retryable gRPC status, or the retries ran out."""


class _Stalled(Exception):
    """No connection, or no ack for ack_timeout seconds with messages unacked (retryable)."""


class SeriesKey(NamedTuple):
    """A series: a cell, optionally narrowed to a UE and/or a slice (S-NSSAI: sst, optional 24-bit sd)."""

    cell_id: str
    ue_id: str | None = None
    sst: int | None = None
    sd: int | None = None


# --------------------------------------------------------------------------------------------------------------
# wire encoding

_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)


def _varint(v: int) -> bytes:
    out = bytearray()
    v &= (1 << 64) - 1
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field_bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _varints(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint encodings of a uint64 vector: (n, w) uint8 bytes and (n,) lengths (w = the longest)."""
    lens = 1 + np.searchsorted(_VARINT_LIMITS, x, side="right")
    w = int(lens.max()) if len(x) else 1
    shifts = np.arange(0, 7 * w, 7, dtype=np.uint64)
    out = ((x[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    out |= (np.arange(w) < (lens[:, None] - 1)).astype(np.uint8) << 7
    return out, lens


def _ragged(seg: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A segment of per-row byte strings: the bytes (n, w) and which of them are valid (the first lens[i])."""
    return seg, np.arange(seg.shape[1]) < lens[:, None]


def _tagged_varints(tag: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One proto3 varint field per row (tag byte + varint; omitted, length 0, where the value is 0)."""
    body, lens = _varints(x)
    seg = np.concatenate([np.full((len(x), 1), tag, np.uint8), body], axis=1)
    return seg, np.where(x == 0, 0, lens + 1)


class IndicationEncoder:
    """Encodes KpiIndication messages to wire bytes from arrays, with per-series fields precomputed.

    Series are registered once (`register`) and referred to by index. Values at NaN positions are sent as
    0.0 and listed in `absent`; ±Inf passes through (the server rejects it as NON_FINITE).
    """

    def __init__(self) -> None:
        self.keys: list[SeriesKey] = []
        self._index: dict[SeriesKey, int] = {}
        self._prefixes: list[bytes] = []
        self._matrix = np.zeros((0, 1), np.uint8)
        self._lens = np.zeros(0, np.int64)
        self._headers: dict[tuple, bytes] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @staticmethod
    def key(item: SeriesKey | str | tuple) -> SeriesKey:
        """A SeriesKey from a key, a cell id, or a (cell_id, ue_id, sst, sd) tuple; ValueError if invalid."""
        k = SeriesKey(item) if isinstance(item, str) else SeriesKey(*item)
        if not isinstance(k.cell_id, str) or not ID_PATTERN.match(k.cell_id):
            raise ValueError(f"cell_id {k.cell_id!r} must be 1–64 characters of [A-Za-z0-9_.:-]")
        if k.ue_id is not None and (not isinstance(k.ue_id, str) or not ID_PATTERN.match(k.ue_id)):
            raise ValueError(f"ue_id {k.ue_id!r} must be 1–64 characters of [A-Za-z0-9_.:-]")
        if k.sst is not None and not 0 <= int(k.sst) <= 255:
            raise ValueError(f"slice sst {k.sst!r} must be in 0..255")
        if k.sd is not None and (k.sst is None or not 0 <= int(k.sd) < 1 << 24):
            raise ValueError(f"slice sd {k.sd!r} needs an sst and must be a 24-bit integer")
        return k

    def register(self, items: Iterable[SeriesKey | str | tuple]) -> np.ndarray:
        """Indices (int64) of the series, registering new ones."""
        out = []
        for item in items:
            k = item if isinstance(item, SeriesKey) and item in self._index else self.key(item)
            i = self._index.get(k)
            if i is None:
                i = self._index[k] = len(self.keys)
                self.keys.append(k)
                self._prefixes.append(self._prefix(k))
            out.append(i)
        if len(self._prefixes) != len(self._lens):
            self._rebuild()
        return np.asarray(out, dtype=np.int64)

    @staticmethod
    def _prefix(k: SeriesKey) -> bytes:
        """KpiReport fields 1–3 (cell_id, ue_id, slice), constant per series."""
        b = _field_bytes(1, k.cell_id.encode())
        if k.ue_id is not None:
            b += _field_bytes(2, k.ue_id.encode())
        if k.sst is not None:
            sl = (b"\x08" + _varint(int(k.sst)) if k.sst else b"") + (b"\x10" + _varint(int(k.sd)) if k.sd is not None
                                                                      else b"")
            b += _field_bytes(3, sl)
        return b

    def _rebuild(self) -> None:
        width = max(len(p) for p in self._prefixes)
        m = np.zeros((len(self._prefixes), width), np.uint8)
        for i, p in enumerate(self._prefixes):
            m[i, : len(p)] = np.frombuffer(p, np.uint8)
        self._matrix, self._lens = m, np.array([len(p) for p in self._prefixes], np.int64)

    def header(self, e2_node_id: str, period_ms: int, meas_names: Sequence[str]) -> bytes:
        """KpiIndication fields 1–3, cached per (node, period, names)."""
        key = (e2_node_id, int(period_ms), tuple(meas_names))
        h = self._headers.get(key)
        if h is None:
            if len(meas_names) == 0 or len(set(meas_names)) != len(meas_names):
                raise ValueError(f"meas_names must be non-empty and unique, got {list(meas_names)}")
            h = (_field_bytes(1, e2_node_id.encode()) if e2_node_id else b"") + \
                (b"\x10" + _varint(int(period_ms)) if period_ms else b"") + \
                b"".join(_field_bytes(3, str(n).encode()) for n in meas_names)
            if len(self._headers) < 256:
                self._headers[key] = h
        return h

    def encode(self, header: bytes, message_id: int, series: np.ndarray, timestamps_ms: np.ndarray,
               sequences: np.ndarray, values: np.ndarray) -> bytes:
        """One KpiIndication: `header` (see `header`), then one report per row, then message_id."""
        n, d = values.shape
        nan = np.isnan(values)
        segs = [_ragged(self._matrix[series], self._lens[series]),  # (bytes (n, w), valid (n, w) or None)
                _ragged(*_tagged_varints(0x20, timestamps_ms.view(np.uint64))),
                _ragged(*_tagged_varints(0x28, sequences))]
        vhead = np.frombuffer(b"\x32" + _varint(8 * d), np.uint8)
        payload = np.where(nan, 0.0, values).astype("<f8").view(np.uint8).reshape(n, 8 * d)
        segs.append((np.concatenate([np.broadcast_to(vhead, (n, len(vhead))), payload], axis=1), None))
        if nan.any():  # packed `absent` indices: tag, payload length, the varints of the NaN columns
            idx_bytes, idx_lens = _varints(np.arange(d, dtype=np.uint64))
            ab_len = (nan * idx_lens).sum(1)
            hb, hl = _varints(ab_len.astype(np.uint64))
            seg = np.concatenate([np.full((n, 1), 0x3A, np.uint8), hb,
                                  np.broadcast_to(idx_bytes.reshape(1, -1), (n, idx_bytes.size))], axis=1)
            valid = np.concatenate([np.ones((n, 1), bool), np.arange(hb.shape[1]) < hl[:, None],
                                    (nan[:, :, None] & (np.arange(idx_bytes.shape[1]) < idx_lens[:, None]))
                                    .reshape(n, -1)], axis=1)
            valid[ab_len == 0] = False
            segs.append((seg, valid))
        report_len = sum(seg.shape[1] if valid is None else valid.sum(1) for seg, valid in segs)
        rb, rl = _varints(report_len.astype(np.uint64))  # each report: tag 4 (0x22), length, the fields above
        segs.insert(0, _ragged(np.concatenate([np.full((n, 1), 0x22, np.uint8), rb], axis=1), rl + 1))
        body = np.concatenate([seg for seg, _ in segs], axis=1)[
            np.concatenate([np.ones(seg.shape, bool) if valid is None else valid for seg, valid in segs], axis=1)]
        tail = b"\x28" + _varint(message_id) if message_id else b""
        return header + body.tobytes() + tail


def build_indication(series: Sequence[SeriesKey | str], timestamps_ms, values, meas_names: Sequence[str], *,
                     sequences=None, e2_node_id: str = "test", period_ms: int = 1000,
                     message_id: int = 1) -> kpm_pb2.KpiIndication:
    """A KpiIndication object from arrays (tests and tools; the publisher sends the bytes directly)."""
    enc = IndicationEncoder()
    idx = enc.register(series)
    ts, seq, vals = _check_arrays(idx, timestamps_ms, sequences if sequences is not None else np.arange(len(idx)) + 1,
                                  values, meas_names)
    data = enc.encode(enc.header(e2_node_id, period_ms, meas_names), message_id, idx, ts, seq, vals)
    return kpm_pb2.KpiIndication.FromString(data)


def _check_arrays(idx, timestamps_ms, sequences, values, meas_names):
    """Validated int64 timestamps, uint64 sequences and float64 (n, D) values; ValueError naming the problem."""
    n = len(idx)
    ts = np.asarray(timestamps_ms)
    seq = np.asarray(sequences)
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 2 or vals.shape != (n, len(meas_names)):
        raise ValueError(f"values must be (n, D) = ({n}, {len(meas_names)}) for {n} series entries and "
                         f"{len(meas_names)} meas_names, got {vals.shape}")
    if ts.shape != (n,) or seq.shape != (n,):
        raise ValueError(f"timestamps and sequences must be ({n},), got {ts.shape} and {seq.shape}")
    if n and (not np.issubdtype(ts.dtype, np.integer) or ts.min() <= 0):
        raise ValueError("timestamps_ms must be positive integers (Unix epoch ms)")
    if n and (not np.issubdtype(seq.dtype, np.integer) or (seq.dtype.kind == "i" and seq.min() < 0)):
        raise ValueError("sequences must be non-negative integers")
    return np.ascontiguousarray(ts, np.int64), np.ascontiguousarray(seq, np.uint64), vals


# --------------------------------------------------------------------------------------------------------------
# publisher


@dataclass
class _Message:
    message_id: int
    data: bytes
    series: np.ndarray
    sequences: np.ndarray
    n: int
    t_sent: float = 0.0
    generation: int = -1  # the stream it was last written to
    writes: int = 0


def _identity(b: bytes) -> bytes:
    return b


def _status(e: BaseException) -> grpc.StatusCode | None:
    return e.code() if isinstance(e, grpc.aio.AioRpcError) else None


class Publisher:
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
        self._pending: dict[int, _Message] = {}
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
        ts, seq, vals = _check_arrays(idx, timestamps_ms, sequences, values, meas_names)
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
                msg = _Message(mid, data, idx[lo:hi], seq[lo:hi], hi - lo)
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

    async def _submit(self, msg: _Message) -> None:
        while len(self._pending) >= self.max_in_flight:
            self._space.clear()
            await self._wait_or_fail(self._space)
        self._pending[msg.message_id] = msg  # from here the supervisor re-sends it if the stream breaks
        self._count_sent(msg)
        self._drained.clear()
        # shielded: cancelling a grpc.aio write cancels the whole call, so a cancelled send (Ctrl-C while
        # blocked) lets this write finish; the message is pending either way and flushed or re-sent later
        await asyncio.shield(self._write(msg))

    def _count_sent(self, msg: _Message) -> None:
        if self._t_first is None:
            self._t_first = self._clock()
        c = self._counts
        c["messages"] += 1
        c["samples"] += msg.n
        c["bytes"] += len(msg.data)

    async def _write(self, msg: _Message) -> None:
        async with self._write_lock:  # not connected: the supervisor writes it (with the others) once it is
            call = self._call
            if call is None or not self._ready.is_set() or msg.generation == self._generation:
                return
            msg.generation = self._generation
            msg.writes += 1
            msg.t_sent = self._clock()
            with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                await call.write(msg.data)  # on failure the reader sees the broken stream; re-sent then

    async def _wait_or_fail(self, event: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(event.wait())
        failed = asyncio.ensure_future(self._dead.wait())
        try:
            await asyncio.wait({waiter, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            failed.cancel()
        self._raise_if_failed()


    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise PublishError(str(self._error)) from self._error

    # -- the acked stream ------------------------------------------------------------------------------------
    async def _supervise(self) -> None:
        try:
            await self._stream_loop()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or an unexpected error: fail loudly instead of hanging the senders
            self._fail(PublishError(f"{self.target}: publisher stream failed: {type(e).__name__}: {e}"))
            raise
        finally:
            if self._error is None and (self._pending or not self._closing):
                self._fail(PublishError(f"{self.target}: publisher stream stopped with {len(self._pending)} "
                                        "messages unacked"))

    async def _stream_loop(self) -> None:
        """Owns the PublishAcked stream: connect, re-send unacked messages, read acks, reconnect on failure."""
        method = self._channel.stream_stream(PUBLISH_ACKED, request_serializer=_identity,
                                             response_deserializer=kpm_pb2.IngestAck.FromString)
        attempt = 0
        while True:
            acked_before = self._counts["acked_messages"]
            try:
                try:
                    await asyncio.wait_for(self._channel.channel_ready(), self.connect_timeout)
                except TimeoutError:
                    raise _Stalled(f"no connection within {self.connect_timeout:g} s") from None
                call = method()
                async with self._write_lock:
                    self._generation += 1
                    self._call = call
                    for msg in list(self._pending.values()):
                        msg.generation = self._generation
                        if msg.writes:
                            self._counts["resent_messages"] += 1
                        msg.writes += 1
                        msg.t_sent = self._clock()
                        await call.write(msg.data)
                    self._ready.set()
                if await self._read_acks(call):
                    return
                raise ConnectionResetError("the server ended the PublishAcked stream with messages unacked")
            except (grpc.RpcError, asyncio.InvalidStateError, _Stalled, ConnectionResetError) as e:
                self._ready.clear()
                self._call = None
                code = _status(e)
                if code is not None and code not in RETRYABLE:
                    self._fail(PublishError(f"{self.target}: PublishAcked failed: {code.name}: {e.details()}"))
                    return
                if self._counts["acked_messages"] > acked_before:  # that connection made progress
                    attempt = 0
                attempt += 1
                if self.retries is not None and attempt > self.retries:
                    why = f"{code.name}: {e.details()}" if code is not None else (str(e) or type(e).__name__)
                    self._fail(PublishError(f"{self.target}: gave up after {self.retries} reconnect attempts "
                                            f"({why}); {len(self._pending)} messages unacked"))
                    return
                self._counts["reconnects"] += 1
                first, cap = self.backoff
                await asyncio.sleep(min(cap, first * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    async def _read_acks(self, call) -> bool:
        """Read acks until the stream ends (True: closing and all acked); _Stalled when acks stop coming."""
        async def read() -> None:
            async for ack in call:
                self._on_ack(ack)

        reader = asyncio.ensure_future(read())
        try:
            while not reader.done():
                await asyncio.wait({reader}, timeout=min(1.0, self.ack_timeout))
                if not reader.done() and self._stalled():
                    stale = self._counts["stale_acks"]
                    raise _Stalled(f"no ack for {self.ack_timeout:g} s with {len(self._pending)} messages unacked"
                                   + (f"; {stale} acks named unknown message ids" if stale else ""))
            try:
                reader.result()
            except asyncio.CancelledError:  # the call was cancelled, not this task: a broken stream
                if asyncio.current_task().cancelling():
                    raise
                raise ConnectionResetError("the PublishAcked call was cancelled") from None
        finally:
            if not reader.done():
                reader.cancel()
                call.cancel()
                with contextlib.suppress(BaseException):
                    await reader
        return self._closing and not self._pending

    def _stalled(self) -> bool:
        if not self._pending:
            return False
        oldest = next(iter(self._pending.values()))
        since = max(oldest.t_sent, self._t_last_ack or oldest.t_sent)
        return self._clock() - since > self.ack_timeout

    def _on_ack(self, ack: kpm_pb2.IngestAck) -> bool:
        """Retire the messages an ack covers (in order, up to ack.message_id); False for a stale ack."""
        if ack.message_id not in self._pending:
            self._counts["stale_acks"] += 1
            return False
        now = self._clock()
        c = self._counts
        while self._pending:
            mid = next(iter(self._pending))
            if mid > ack.message_id:
                break
            msg = self._pending.pop(mid)
            self._latencies.append(now - msg.t_sent)
            c["acked_messages"] += 1
            c["acked_samples"] += msg.n
            np.maximum.at(self._last_acked, msg.series, msg.sequences.astype(np.int64))
        self._count_ack(ack)
        self._t_last_ack = now
        self._space.set()
        if not self._pending:
            self._drained.set()
        return True

    def _count_ack(self, ack: kpm_pb2.IngestAck) -> None:
        self._counts["accepted"] += ack.accepted
        self._counts["rejected"] += ack.rejected
        for r in ack.rejections:
            name = _REASON_NAMES.get(r.reason, str(r.reason))
            self._rejections[name] = self._rejections.get(name, 0) + r.count
        for d in ack.details:
            if len(self._details) < 20:
                self._details.append(f"message {d.message_id} report {d.index}: "
                                     f"{_REASON_NAMES.get(d.reason, d.reason)}: {d.detail}")

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._dead.set()
        self._ready.clear()
        self._space.set()
        self._drained.set()

    # -- the unacked stream (acked=False) --------------------------------------------------------------------
    async def _write_unacked(self, msg: _Message) -> None:
        attempt = 0
        while True:
            try:
                if self._call is None:
                    method = self._channel.stream_unary(PUBLISH, request_serializer=_identity,
                                                        response_deserializer=kpm_pb2.IngestAck.FromString)
                    await asyncio.wait_for(self._channel.channel_ready(), self.connect_timeout)
                    self._call = method()
                    self._unacked_stream_messages = 0
                await self._call.write(msg.data)
                self._unacked_stream_messages += 1
                return
            except (grpc.RpcError, asyncio.InvalidStateError, TimeoutError) as e:
                self._counts["unconfirmed_messages"] += self._unacked_stream_messages
                self._unacked_stream_messages = 0
                if self._call is not None:
                    self._call.cancel()
                self._call = None
                code = _status(e)
                attempt += 1
                fatal = code is not None and code not in RETRYABLE
                if fatal or (self.retries is not None and attempt > self.retries):
                    self._error = PublishError(f"{self.target}: Publish failed: "
                                               f"{code.name if code else type(e).__name__}: {e}")
                    raise self._error from e
                self._counts["reconnects"] += 1
                first, cap = self.backoff
                await asyncio.sleep(min(cap, first * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    async def _finish_unacked(self, timeout: float) -> None:
        call, self._call = self._call, None
        try:
            await call.done_writing()
            ack = await asyncio.wait_for(call, timeout)
        except (grpc.RpcError, asyncio.InvalidStateError, TimeoutError) as e:
            self._counts["unconfirmed_messages"] += self._unacked_stream_messages
            raise PublishError(f"{self.target}: Publish did not complete: {e}") from e
        self._counts["acked_messages"] += self._unacked_stream_messages
        self._t_last_ack = self._clock()
        self._count_ack(ack)

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
