"""The fake E2Ingest servers and stream checks shared by the tests of service/sim/."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import numpy as np

from ms3m.v1 import kpm_pb2, kpm_pb2_grpc


def report_key(r: kpm_pb2.KpiReport) -> tuple:
    """The series of a report: (cell id, UE id or None, slice sst or None)."""
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
            k = report_key(r)
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


async def start_server(servicer, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    kpm_pb2_grpc.add_E2IngestServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


@contextlib.asynccontextmanager
async def serving(servicer):
    server, port = await start_server(servicer)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def check_stream(messages: list[kpm_pb2.KpiIndication], names: list[str]) -> dict[tuple, list[tuple[int, int]]]:
    """Structure of every message; returns (timestamp, sequence) per series in arrival order."""
    per: dict[tuple, list[tuple[int, int]]] = {}
    for m in messages:
        assert list(m.meas_names) == names
        assert m.granularity_period_ms > 0 and m.message_id > 0
        for r in m.reports:
            assert len(r.values) == len(names)
            assert list(r.absent) == sorted(set(r.absent)) and all(a < len(names) for a in r.absent)
            assert all(np.isfinite(v) for v in r.values)
            per.setdefault(report_key(r), []).append((r.timestamp_ms, r.sequence))
    return per


def strictly_increasing(per: dict) -> None:
    for k, pairs in per.items():
        ts, seq = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.uint64)
        assert (np.diff(ts) > 0).all(), f"timestamps of {k} not strictly increasing"
        assert (seq[1:] > seq[:-1]).all(), f"sequences of {k} not strictly increasing"


class SilentIngest(kpm_pb2_grpc.E2IngestServicer):
    """Reads every message and never acks (wrong_ids: acks with message ids the publisher never used)."""

    def __init__(self, wrong_ids: bool = False):
        self.wrong_ids, self.streams = wrong_ids, 0

    async def PublishAcked(self, request_iterator, context):
        self.streams += 1
        async for msg in request_iterator:
            if self.wrong_ids:
                yield kpm_pb2.IngestAck(message_id=msg.message_id + 10_000, messages=1)
