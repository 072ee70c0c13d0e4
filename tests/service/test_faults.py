"""Faults: kill -9 of the xApp mid-stream, and a Redis outage mid-stream (README, "Delivery guarantees")."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import redis

from ms3m.v1 import kpm_pb2_grpc
from service.engine.state_table import StateTable
from tests.conftest import REDIS_HOST, REDIS_PORT, redis_reachable
from tests.service.helpers import indication, make_bundle, publish, running_xapp, wait_for

CELLS, STEPS = 6, 40


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b"), "s4d")


def messages():
    return [indication(CELLS, t, mid=t + 1) for t in range(STEPS)]


def start_service(bundle: Path, namespace: str, log: Path, redis_port: int = REDIS_PORT,
                  redis_host: str = REDIS_HOST) -> tuple[subprocess.Popen, int, int]:
    env = dict(os.environ, MS3M_BUFFER="redis", MS3M_REDIS_HOST=redis_host, MS3M_REDIS_PORT=str(redis_port),
               MS3M_NAMESPACE=namespace, MS3M_BUNDLES=f'["{bundle}"]', MS3M_SNAPSHOT_INTERVAL_S="0.2",
               MS3M_HTTP_HOST="127.0.0.1", MS3M_GRPC_HOST="127.0.0.1", OMP_NUM_THREADS="1",
               MS3M_MAX_SAMPLE_AGE_MS="0", MS3M_JOURNAL_DIR=str(log.parent / "journal"))
    with open(log, "a") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--http-port", "0", "--grpc-port",
                                 "0"], stdout=subprocess.PIPE, stderr=out, env=env, text=True)
    line = proc.stdout.readline()
    m = re.search(r"REST http://localhost:(\d+)\s+gRPC localhost:(\d+)", line)
    assert m, f"service did not start: {line!r}; log: {log.read_text()[-2000:]}"
    return proc, int(m.group(1)), int(m.group(2))


async def publish_until_killed(port: int, msgs, kill_after: int, proc) -> int:
    """Publish over PublishAcked; SIGKILL the service after `kill_after` acks. Returns how many were acked."""
    acked = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = kpm_pb2_grpc.E2IngestStub(ch).PublishAcked(iter(msgs))
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in call:
                acked += 1
                if acked == kill_after:
                    proc.send_signal(signal.SIGKILL)
    return acked


async def test_kill_9_mid_stream_loses_no_acked_sample_and_state_equals_uninterrupted(bundle, tmp_path):
    if (reason := redis_reachable()) is not None:
        pytest.skip(reason)
    msgs = messages()
    ns_ref, ns = f"test-{uuid.uuid4().hex[:10]}", f"test-{uuid.uuid4().hex[:10]}"
    # reference: one uninterrupted run
    async with running_xapp([bundle], buffer="redis", redis_host=REDIS_HOST, redis_port=REDIS_PORT,
                            namespace=ns_ref) as ref:
        await publish(ref.grpc_port, msgs)
        await wait_for(lambda: ref.engine.samples == CELLS * STEPS)
        ref_states = {f"cell-{c:03d}": ref.hosts[0].table.get(f"cell-{c:03d}") for c in range(CELLS)}
        ref_fc = {k: ref.latest_forecast(k) for k in ref_states}
    # crashed run
    log = tmp_path / "service.log"
    proc, http_port, grpc_port = start_service(bundle, ns, log)
    try:
        acked = await publish_until_killed(grpc_port, msgs, 23, proc)
        proc.wait(10)
        assert 23 <= acked < STEPS
        proc, http_port, grpc_port = start_service(bundle, ns, log)
        # at-least-once client: re-send everything from the first unacknowledged message
        acks = await publish(grpc_port, msgs[acked:])
        assert sum(a.accepted for a in acks) + sum(a.rejected for a in acks) == CELLS * (STEPS - acked)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            for k, f in ref_fc.items():
                body = (await http.get(f"/v1/cells/{k}/forecast")).json()
                got = np.array([body["point"][t] for t in f.target_names]).T.ravel()
                np.testing.assert_allclose(got, np.array(f.point), rtol=1e-5, atol=1e-4)
        proc.send_signal(signal.SIGTERM)  # graceful: writes final snapshots
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        records = client.hgetall(f"{{{ns}}},state:s4d-test")
        table = StateTable([(n, s.shape) for n, s in zip(range(len(ref_states["cell-000"])), ref_states["cell-000"])])
        for k, ref_state in ref_states.items():
            got = table.unpack(records[k.encode()][8:])
            for a, b in zip(got, ref_state):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            assert client.xlen(f"{{{ns}}},win:{k}") == STEPS  # every acknowledged sample is in the buffer
    finally:
        for key in client.scan_iter(match="{test-*"):
            if ns in key.decode() or ns_ref in key.decode():
                client.delete(key)
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int, workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            redis.Redis(port=port, socket_timeout=0.2).ping()
            return proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("private redis-server did not start")


async def test_redis_outage_keeps_forecasting_reports_not_ready_and_catches_up(bundle, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    port = free_port()
    rproc = start_redis(port, tmp_path)
    msgs = messages()
    try:
        async with running_xapp([bundle], buffer="redis", redis_host="127.0.0.1", redis_port=port,
                                namespace="outage", buffer_retry_s=0.1) as xapp:
            await publish(xapp.grpc_port, msgs[:10])
            await wait_for(lambda: xapp.engine.samples == CELLS * 10)
            rproc.kill()
            rproc.wait()
            acks = await publish(xapp.grpc_port, msgs[10:25])
            assert all(a.accepted == CELLS for a in acks)  # accepted into the journal
            await wait_for(lambda: xapp.engine.samples == CELLS * 25)  # still forecasting from memory
            f = xapp.latest_forecast("cell-000")
            assert f.timestamp_ms == msgs[24].reports[0].timestamp_ms
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
                ready = await http.get("/ric/v1/health/ready")
                assert ready.status_code == 503 and "unreachable" in ready.json()["reasons"][0]
                assert 'ms3m_redis_errors_total{op="append"} 1.0' in (await http.get("/metrics")).text
                rproc = start_redis(port, tmp_path)
                await wait_for(lambda: xapp.journal.samples == 0 and xapp.buffer_ok, timeout=15)
                assert (await http.get("/ric/v1/health/ready")).status_code == 200
            await publish(xapp.grpc_port, msgs[25:])
            await wait_for(lambda: xapp.engine.samples == CELLS * STEPS)
        client = redis.Redis(port=port)
        for c in range(CELLS):  # nothing lost: every sample, in order
            entries = client.xrange(f"{{outage}},win:cell-{c:03d}")
            assert [int(e[0].split(b"-")[0]) for e in entries] == [m.reports[0].timestamp_ms for m in msgs]
    finally:
        rproc.kill()
        await asyncio.sleep(0)


async def test_acks_during_a_redis_stall_survive_kill_9(bundle, tmp_path):
    """Redis stalled (SIGSTOP) while reports keep coming: each ack follows an fsync of the journal; the xApp
    is SIGKILLed, Redis resumes, the xApp restarts: every acknowledged sample is in the buffer, and the
    state after the rest of the stream equals an uninterrupted run."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    port = free_port()
    rproc = start_redis(port, tmp_path)
    msgs = messages()
    proc = None
    try:
        async with running_xapp([bundle], buffer="redis", redis_host="127.0.0.1", redis_port=port,
                                namespace="stall-ref") as ref:
            await publish(ref.grpc_port, msgs)
            await wait_for(lambda: ref.engine.samples == CELLS * STEPS)
            ref_fc = {f"cell-{c:03d}": ref.latest_forecast(f"cell-{c:03d}") for c in range(CELLS)}
            ref_states = {k: ref.hosts[0].table.get(k) for k in ref_fc}
        log = tmp_path / "service.log"
        proc, _, grpc_port = start_service(bundle, "stall", log, redis_port=port, redis_host="127.0.0.1")
        acks = await publish(grpc_port, msgs[:10])
        assert all(a.accepted == CELLS for a in acks)
        rproc.send_signal(signal.SIGSTOP)
        try:
            acks = await publish(grpc_port, msgs[10:25])
            assert all(a.accepted == CELLS for a in acks)  # journaled and fsynced, then acknowledged
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            rproc.send_signal(signal.SIGCONT)
        client = redis.Redis(port=port)
        assert client.xlen("{stall},win:cell-000") < 25  # the stalled buffer missed some of them
        journal = next((tmp_path / "journal").glob("stall-*.journal"))
        assert journal.stat().st_size > 0
        proc, http_port, grpc_port = start_service(bundle, "stall", log, redis_port=port, redis_host="127.0.0.1")
        for c in range(CELLS):  # every acknowledged sample is in the buffer, in order, once
            entries = client.xrange(f"{{stall}},win:cell-{c:03d}")
            assert [int(e[0].split(b"-")[0]) for e in entries] == [m.reports[0].timestamp_ms for m in msgs[:25]]
        acks = await publish(grpc_port, msgs[25:])
        assert all(a.accepted == CELLS for a in acks)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            for k, f in ref_fc.items():
                for _ in range(100):
                    body = (await http.get(f"/v1/cells/{k}/forecast")).json()
                    if int(body.get("timestampMs", 0)) == f.timestamp_ms:
                        break
                    await asyncio.sleep(0.05)
                got = np.array([body["point"][t] for t in f.target_names]).T.ravel()
                np.testing.assert_allclose(got, np.array(f.point), rtol=1e-5, atol=1e-4)
        proc.send_signal(signal.SIGTERM)  # graceful: writes final snapshots
        proc.wait(20)
        records = client.hgetall("{stall},state:s4d-test")
        table = StateTable([(n, s.shape) for n, s in enumerate(ref_states["cell-000"])])
        for k, ref_state in ref_states.items():
            for a, b in zip(table.unpack(records[k.encode()][8:]), ref_state):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        client.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        rproc.send_signal(signal.SIGCONT)
        rproc.kill()
        rproc.wait()
