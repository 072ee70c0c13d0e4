"""Delivery of encoded KpiIndication messages to ms3m.v1.E2Ingest: the stream half of `Publisher`.

acked=True (the default): one PublishAcked bidi stream; up to `max_in_flight` messages are unacked at once;
acks arrive in order and are matched by message_id. When the stream breaks (server killed, UNAVAILABLE, …,
or no ack for `ack_timeout` s while messages are unacked) the publisher reconnects with exponential backoff
and re-sends every message not yet acked, in order: at-least-once; the server drops the re-sent reports it
already has by their per-series sequence numbers (counted as DUPLICATE rejections). acked=False uses the
client-streaming Publish: faster, one summary ack at close, and messages of a stream that breaks are
counted as unconfirmed (not re-sent). README, "Delivery guarantees", says what an ack promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

import grpc
import numpy as np

from ms3m.v1 import kpm_pb2

PUBLISH_ACKED = "/ms3m.v1.E2Ingest/PublishAcked"
PUBLISH = "/ms3m.v1.E2Ingest/Publish"
RETRYABLE = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED,
})
_REASON_NAMES = {v: k.removeprefix("REJECT_REASON_").lower() for k, v in kpm_pb2.RejectReason.items()}


class PublishError(RuntimeError):
    """Publishing failed for good: a non-retryable gRPC status, or the retries ran out."""


class _Stalled(Exception):
    """No connection, or no ack for ack_timeout seconds with messages unacked (retryable)."""


@dataclass
class Message:
    """An encoded message, the series and sequences its ack covers, and its (re-)send bookkeeping."""

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


class StreamDelivery:
    """The delivery methods of `Publisher` (a mixin: they work on the state `Publisher.__init__` sets up).

    `_submit` queues a message on the acked stream (waiting while max_in_flight are unacked) and
    `_write_unacked` writes one on the unacked stream (the methods `acked_method` / `unacked_method`: E2Ingest's,
    or E2smIngest's for E2SM-KPM batches); `_supervise` runs the acked stream (connect, re-send,
    read acks, reconnect) as a background task; `_fail` ends delivery for good with a `PublishError`.
    """

    acked_method = PUBLISH_ACKED
    unacked_method = PUBLISH

    async def _submit(self, msg: Message) -> None:
        while len(self._pending) >= self.max_in_flight:
            self._space.clear()
            await self._wait_or_fail(self._space)
        self._pending[msg.message_id] = msg  # from here the supervisor re-sends it if the stream breaks
        self._count_sent(msg)
        self._drained.clear()
        # shielded: cancelling a grpc.aio write cancels the whole call, so a cancelled send (Ctrl-C while
        # blocked) lets this write finish; the message is pending either way and flushed or re-sent later
        await asyncio.shield(self._write(msg))

    def _count_sent(self, msg: Message) -> None:
        if self._t_first is None:
            self._t_first = self._clock()
        c = self._counts
        c["messages"] += 1
        c["samples"] += msg.n
        c["bytes"] += len(msg.data)

    async def _write(self, msg: Message) -> None:
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
        method = self._channel.stream_stream(self.acked_method, request_serializer=_identity,
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
    async def _write_unacked(self, msg: Message) -> None:
        attempt = 0
        while True:
            try:
                if self._call is None:
                    method = self._channel.stream_unary(self.unacked_method, request_serializer=_identity,
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
