"""service/sim/delivery.py: reconnects, re-sends, give-up and broken-stream detection, through a Publisher
against in-process fake E2Ingest servers."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest

from ms3m.v1 import kpm_pb2_grpc
from service.sim.publisher import Publisher, PublishError
from tests.service.sim_helpers import FakeIngest, SilentIngest, serving, start_server, strictly_increasing


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
    strictly_increasing(per)
    assert all(len(v) == 50 for v in per.values())


async def test_publisher_survives_a_server_restart():
    fake = FakeIngest()
    server, port = await start_server(fake)
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
        server, _ = await start_server(fake, port)

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


@pytest.mark.parametrize("wrong_ids", [False, True])
async def test_publisher_treats_missing_acks_as_a_broken_stream(wrong_ids):
    silent = SilentIngest(wrong_ids)
    async with serving(silent) as target:
        pub = Publisher(target, e2_node_id="g", retries=1, backoff=(0.01, 0.01), ack_timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(PublishError, match=r"no ack for 0\.3 s with 1 messages unacked") as err:
            async with pub:
                await pub.send(["c"], [1], None, [[1.0]], ["a"])
                await pub.flush(timeout=10)
    assert silent.streams == 2 and time.monotonic() - t0 < 5  # one reconnect (re-sent), then a clear error
    assert ("acks named unknown message ids" in str(err.value)) == wrong_ids
