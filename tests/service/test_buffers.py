"""Window buffer contract tests, run against MemoryWindowBuffer and RedisWindowBuffer alike.

Redis tests use the shared server on 127.0.0.1:6379 (each test in its own namespace, skipped when absent);
fault tests start a private redis-server on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from service.buffer import BufferUnavailable, SampleBatch
from service.buffer.memory import MemoryWindowBuffer
from service.buffer.redis_buffer import RedisWindowBuffer
from tests.conftest import REDIS_HOST, REDIS_PORT

aioredis = pytest.importorskip("redis.asyncio")

KPIS = ["DRB.UEThpDl", "RRU.PrbUsedDl", "RF.serving.RSRP"]
D = len(KPIS)
W = 8


def batch(series: list[str], ts, seq=None, values=None, seed: int = 0) -> SampleBatch:
    n = len(series)
    ts = np.asarray(ts, np.int64)
    seq = np.arange(n, dtype=np.uint64) + 1 if seq is None else np.asarray(seq, np.uint64)
    if values is None:
        values = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return SampleBatch(list(series), ts, seq, np.asarray(values, np.float32))


@functools.cache
def _redis_unreachable() -> str | None:
    """Why the shared Redis cannot be reached (a quick probe, so skips cost no client retries), or None."""
    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), 0.5).close()
    except OSError as e:
        return (f"no Redis server at {REDIS_HOST}:{REDIS_PORT} ({e}); start one with "
                "`redis-server --daemonize yes --port 6379 --save '' --appendonly no`")
    return None


def _shared_redis(request):
    """The conftest `redis_client` (own namespace, cleaned up afterwards), skipping fast without a server."""
    reason = _redis_unreachable()
    if reason:
        pytest.skip(reason)
    return request.getfixturevalue("redis_client")


@pytest.fixture(params=["memory", "redis"])
async def make_buffer(request):
    """A factory of buffers of one kind; Redis buffers share this test's namespace."""
    made = []

    def make(kpis=KPIS, window_length=W):
        if request.param == "memory":
            buf = MemoryWindowBuffer(kpis, window_length)
        else:
            ns = _shared_redis(request).test_namespace
            client = aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2)
            buf = RedisWindowBuffer(client, kpis, window_length, ns, close_client=True)
        made.append(buf)
        return buf

    if request.param == "redis":
        _shared_redis(request)  # skip before the test body when there is no server
    yield make
    for buf in made:
        await buf.close()


@pytest.fixture
async def redis_buffer(request):
    ns = _shared_redis(request).test_namespace
    client = aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2)
    buf = RedisWindowBuffer(client, KPIS, W, ns, close_client=True)
    await buf.open()
    yield buf
    await buf.close()


# ---------------------------------------------------------------- contract, both implementations


async def test_exact_trimming_keeps_last_w_in_order(make_buffer):
    buf = make_buffer()
    ts = np.arange(1, 3 * W + 1) * 1000
    vals = np.arange(3 * W * D, dtype=np.float32).reshape(3 * W, D)
    for i in range(3 * W):  # one sample per batch: the window grows, wraps, trims
        await buf.append(batch(["c1"], ts[i:i + 1], [i], vals[i:i + 1]))
    await buf.append(batch(["c2"] * (3 * W), ts, np.arange(3 * W), vals))  # one batch longer than W
    for s in ("c1", "c2"):
        w = await buf.window(s)
        np.testing.assert_array_equal(w.timestamp_ms, ts[-W:])
        np.testing.assert_array_equal(w.sequence, np.arange(2 * W, 3 * W, dtype=np.uint64))
        np.testing.assert_array_equal(w.values, vals[-W:])
        assert w.timestamp_ms.dtype == np.int64 and w.sequence.dtype == np.uint64 and w.values.dtype == np.float32
    np.testing.assert_array_equal((await buf.window("c1", 3)).timestamp_ms, ts[-3:])
    assert len(await buf.window("c1", 10 * W)) == W
    assert len(await buf.window("c1", 0)) == 0
    empty = await buf.window("nope")
    assert len(empty) == 0 and empty.values.shape == (0, D)
    with pytest.raises(ValueError, match="n must be"):
        await buf.window("c1", -1)


async def test_window_partly_filled_and_split_batches(make_buffer):
    buf = make_buffer()
    await buf.append(batch(["a"] * 3, [10, 20, 30]))
    np.testing.assert_array_equal((await buf.window("a")).timestamp_ms, [10, 20, 30])
    await buf.append(batch(["a"] * (W - 1), np.arange(W - 1) * 10 + 40))  # wraps the ring mid-batch
    np.testing.assert_array_equal((await buf.window("a")).timestamp_ms, np.arange(W) * 10 + 30)


async def test_windows_of_many_series_equal_their_windows(make_buffer):
    buf = make_buffer()
    await buf.append(batch(["a", "b", "a", "b", "a"], [10, 10, 20, 20, 30]))
    for n in (None, 2, 0):
        many = await buf.windows(["a", "unknown", "b"], n)
        one = [await buf.window(k, n) for k in ("a", "unknown", "b")]
        for got, want in zip(many, one):
            np.testing.assert_array_equal(got.timestamp_ms, want.timestamp_ms)
            np.testing.assert_array_equal(got.sequence, want.sequence)
            np.testing.assert_array_equal(got.values, want.values)
    assert [len(w) for w in await buf.windows(["a", "unknown", "b"])] == [3, 0, 2]
    assert await buf.windows([]) == []


async def test_since_is_exclusive(make_buffer):
    buf = make_buffer()
    await buf.append(batch(["a"] * 5, [100, 200, 300, 400, 500]))
    np.testing.assert_array_equal((await buf.since("a", 300)).timestamp_ms, [400, 500])
    np.testing.assert_array_equal((await buf.since("a", 299)).timestamp_ms, [300, 400, 500])
    np.testing.assert_array_equal((await buf.since("a", -1)).timestamp_ms, [100, 200, 300, 400, 500])
    assert len(await buf.since("a", 500)) == 0
    assert len(await buf.since("a", 2**63 - 1)) == 0
    s = await buf.since("unknown", 0)
    assert len(s) == 0 and s.values.shape == (0, D)


async def test_last_of_known_series(make_buffer):
    buf = make_buffer()
    await buf.append(batch(["a", "b", "a"], [10, 15, 20], seq=[7, 8, 9]))
    assert await buf.last(["a", "b", "zz"]) == {"a": (20, 9), "b": (15, 8)}
    assert await buf.last([]) == {}


async def test_interleaved_series_in_one_batch_keep_their_order(make_buffer):
    buf = make_buffer()
    series = ["a", "b", "a", "c", "b", "a"]
    b = batch(series, [1, 1, 2, 1, 2, 3], seq=[1, 2, 3, 4, 5, 6])
    await buf.append(b)
    wa = await buf.window("a")
    np.testing.assert_array_equal(wa.timestamp_ms, [1, 2, 3])
    np.testing.assert_array_equal(wa.sequence, [1, 3, 6])
    np.testing.assert_array_equal(wa.values, b.values[[0, 2, 5]])
    np.testing.assert_array_equal((await buf.window("b")).sequence, [2, 5])
    assert await buf.series() == ["a", "b", "c"]


async def test_old_and_duplicate_ids_are_skipped_without_failing_the_batch(make_buffer):
    buf = make_buffer()
    await buf.append(batch(["a", "b"], [100, 100], seq=[1, 2]))
    # a: 100 duplicate, 50 old, 200 new, 150 older than 200 of the same batch, 300 new; b: 90 old, 110 new
    await buf.append(batch(["a", "a", "b", "a", "a", "b", "a"], [100, 50, 90, 200, 150, 110, 300],
                           seq=[10, 11, 12, 13, 14, 15, 16]))
    wa, wb = await buf.window("a"), await buf.window("b")
    np.testing.assert_array_equal(wa.timestamp_ms, [100, 200, 300])
    np.testing.assert_array_equal(wa.sequence, [1, 13, 16])
    np.testing.assert_array_equal(wb.timestamp_ms, [100, 110])
    assert buf.duplicates_skipped == 4
    await buf.append(batch(["a", "b"], [300, 110]))  # a replayed batch changes nothing
    assert len(await buf.window("a")) == 3 and buf.duplicates_skipped == 6


async def test_nan_and_extreme_values_preserved(make_buffer):
    buf = make_buffer()
    vals = np.array([[np.nan, 1.5, -np.inf], [np.inf, np.nan, np.float32(3.4e38)]], np.float32)
    big = np.array([2**64 - 1, 0], np.uint64)
    await buf.append(batch(["nodeB\\n|ue=1|s=1.2", "nodeB\\n|ue=1|s=1.2"], [2**62, 2**62 + 1], big, vals))
    w = await buf.window("nodeB\\n|ue=1|s=1.2")
    np.testing.assert_array_equal(w.values, vals)  # NaNs compare equal here
    np.testing.assert_array_equal(w.sequence, big)
    np.testing.assert_array_equal(w.timestamp_ms, [2**62, 2**62 + 1])


async def test_snapshots_round_trip(make_buffer):
    buf = make_buffer()
    assert await buf.load_snapshots("ms3m") == {}
    await buf.save_snapshots("ms3m", {"a": (100, b"\x00\x01state"), "b": (0, b"")})
    await buf.save_snapshots("dlinear", {"a": (7, bytearray(b"x" * 1000))})
    await buf.save_snapshots("ms3m", {"a": (200, b"newer")})  # replaces a, keeps b
    await buf.save_snapshots("ms3m", {})
    assert await buf.load_snapshots("ms3m") == {"a": (200, b"newer"), "b": (0, b"")}
    assert await buf.load_snapshots("dlinear") == {"a": (7, b"x" * 1000)}
    with pytest.raises(ValueError, match="model name"):
        await buf.save_snapshots("bad model{x}", {"a": (1, b"")})
    with pytest.raises(ValueError, match="timestamp"):
        await buf.save_snapshots("ms3m", {"a": (-1, b"")})
    with pytest.raises(ValueError, match="bytes"):
        await buf.save_snapshots("ms3m", {"a": (1, "text")})


async def test_many_snapshots(make_buffer):
    buf = make_buffer()
    records = {f"cell{i}": (i, np.full(64, i, np.float32).tobytes()) for i in range(25_000)}
    await buf.save_snapshots("ms3m", records)
    assert await buf.load_snapshots("ms3m") == records


async def test_series_and_ping(make_buffer):
    buf = make_buffer()
    assert await buf.series() == []
    await buf.append(batch(["z", "a|ue=9", "m"], [1, 1, 1]))
    assert await buf.series() == ["a|ue=9", "m", "z"]
    assert await buf.ping() is True


async def test_malformed_batches_raise_clear_errors(make_buffer):
    buf = make_buffer()
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        await buf.append(SampleBatch(["a", "b"], np.array([1, 2]), np.array([1, 2], np.uint64),
                                     np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match="both must be"):
        await buf.append(SampleBatch(["a", "b"], np.array([1]), np.array([1, 2], np.uint64),
                                     np.zeros((2, D), np.float32)))
    with pytest.raises(ValueError, match="positive epoch"):
        await buf.append(batch(["a"], [0]))
    with pytest.raises(ValueError, match="integers"):
        await buf.append(SampleBatch(["a"], np.array([1.5]), np.array([1], np.uint64), np.zeros((1, D), np.float32)))
    for bad in ["", "a\nb", "x" * 600]:
        with pytest.raises(ValueError, match="series key"):
            await buf.append(batch([bad], [1]))
    await buf.append(batch([], []))  # an empty batch is fine
    assert await buf.series() == []
    with pytest.raises(ValueError, match="kpis"):
        MemoryWindowBuffer(["a", "a"], 4)
    with pytest.raises(ValueError, match="window_length"):
        MemoryWindowBuffer(["a"], 0)


@pytest.mark.parametrize("w, n_series", [(W, 5), (100, 40)])
async def test_memory_ring_matches_a_plain_reference(w, n_series):
    """Random batch sizes (1 … 3W per series) exercise growth (rows and slots), wrap-around and whole-window
    overwrite."""
    buf, ref = MemoryWindowBuffer(KPIS, w), {}
    rng = np.random.default_rng(7)
    t = 0
    for _ in range(200):
        n = int(rng.integers(1, 3 * w))
        series = [f"s{i}" for i in rng.integers(0, n_series, n)]
        t += n
        ts = np.arange(t - n, t) + 1
        b = batch(series, ts, np.arange(n) + t, rng.standard_normal((n, D)))
        await buf.append(b)
        for i, s in enumerate(series):
            ref.setdefault(s, []).append(i + t - n)
    for _ in range(w + 3):  # then the streaming case: one sample per series per batch
        series = sorted(ref)
        n, t = len(series), t + len(series)
        await buf.append(batch(series, np.arange(t - n, t) + 1, np.arange(n) + t))
        for i, s in enumerate(series):
            ref[s].append(i + t - n)
    for s, rows in ref.items():
        win = await buf.window(s)
        np.testing.assert_array_equal(win.timestamp_ms, np.array(rows[-w:]) + 1)
        np.testing.assert_array_equal((await buf.since(s, rows[-3] + 1)).timestamp_ms, np.array(rows[-2:]) + 1)


# ---------------------------------------------------------------- Redis specifics


async def test_memory_and_redis_agree_on_random_traffic(redis_buffer):
    mem = MemoryWindowBuffer(KPIS, W)
    rng = np.random.default_rng(42)
    clock = {f"c{i}": 1000 for i in range(7)}
    for _ in range(40):
        n = int(rng.integers(1, 30))
        series = [f"c{i}" for i in rng.integers(0, 7, n)]
        ts = []
        for s in series:  # mostly increasing, some duplicates and stale replays
            clock[s] += int(rng.choice([-30, 0, 10, 10, 10, 20]))
            ts.append(max(clock[s], 1))
        vals = rng.standard_normal((n, D)).astype(np.float32)
        vals[rng.random((n, D)) < 0.1] = np.nan
        b = batch(series, ts, rng.integers(0, 2**63, n, dtype=np.uint64), vals)
        await mem.append(b)
        await redis_buffer.append(b)
    assert await mem.series() == await redis_buffer.series()
    assert mem.duplicates_skipped == redis_buffer.duplicates_skipped > 0
    for s in await mem.series():
        a, r = await mem.window(s), await redis_buffer.window(s)
        np.testing.assert_array_equal(a.timestamp_ms, r.timestamp_ms)
        np.testing.assert_array_equal(a.sequence, r.sequence)
        np.testing.assert_array_equal(a.values, r.values)
    assert await mem.last(list(clock)) == await redis_buffer.last(list(clock))


async def test_keys_follow_sdl_convention_and_stream_format(redis_buffer, redis_client):
    ns = redis_client.test_namespace
    await redis_buffer.append(batch(["a"] * (W + 3) + ["b|ue=1"], [*range(1, W + 4), 5],
                                    seq=np.arange(W + 4) + 2**40))
    await redis_buffer.save_snapshots("ms3m", {"a": (3, b"s")})
    keys = {k.decode() for k in redis_client.scan_iter(match=f"{{{ns}}}*", count=1000)}
    assert keys == {f"{{{ns}}},meta", f"{{{ns}}},series", f"{{{ns}}},win:a", f"{{{ns}}},win:b|ue=1",
                    f"{{{ns}}},state:ms3m"}
    assert redis_client.type(f"{{{ns}}},win:a") == b"stream"
    assert redis_client.xlen(f"{{{ns}}},win:a") == W  # exact trimming, not approximate
    entry_id, fields = redis_client.xrevrange(f"{{{ns}}},win:a", count=1)[0]
    assert entry_id == f"{W + 3}-0".encode() and list(fields) == [b"d"]
    payload = fields[b"d"]
    assert len(payload) == 8 + 4 * D
    assert int.from_bytes(payload[:8], "little") == 2**40 + W + 2
    assert redis_client.smembers(f"{{{ns}}},series") == {b"a", b"b|ue=1"}
    meta = redis_client.hgetall(f"{{{ns}}},meta")
    assert meta[b"format"] == b"1" and b"DRB.UEThpDl" in meta[b"kpis"]
    assert redis_client.hget(f"{{{ns}}},state:ms3m", "a") == (3).to_bytes(8, "little") + b"s"


async def test_kpi_schema_mismatch_is_refused(redis_buffer, redis_client):
    other = RedisWindowBuffer(aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT), ["DRB.UEThpDl", "PEE.AvgPower"], W,
                              redis_client.test_namespace, close_client=True)
    try:
        with pytest.raises(ValueError) as e:
            await other.open()
        assert "PEE.AvgPower" in str(e.value) and "RF.serving.RSRP" in str(e.value)
        with pytest.raises(ValueError, match="holds data written for KPIs"):
            await other.append(batch(["a"], [1], values=np.zeros((1, 2))))  # methods open lazily
    finally:
        await other.close()
    same = RedisWindowBuffer(aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT), KPIS, 2 * W,
                             redis_client.test_namespace, close_client=True)
    await same.open()  # same KPIs, another window length: fine
    await same.close()


async def test_constructor_validation():
    client = aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    with pytest.raises(ValueError, match="namespace"):
        RedisWindowBuffer(client, KPIS, W, "bad}ns")
    with pytest.raises(ValueError, match="decode_responses"):
        RedisWindowBuffer(aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True), KPIS, W, "ns")
    with pytest.raises(ValueError, match="kpis"):
        RedisWindowBuffer(client, [], W, "ns")
    await client.aclose()


@pytest.fixture
def sends(monkeypatch) -> list:
    """The packed commands sent to Redis from now on (one entry per round trip)."""
    from redis.asyncio.connection import AbstractConnection

    sent: list = []
    original = AbstractConnection.send_packed_command

    async def counting(self, command, check_health=True):
        sent.append(command)
        return await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


async def test_one_round_trip_per_append_and_per_last(redis_buffer, sends):
    series = [f"cell{i % 300}" for i in range(2000)]
    await redis_buffer.append(batch(series, np.repeat(np.arange(1, 8), 300)[:2000]))
    assert len(sends) == 1
    sends.clear()
    assert len(await redis_buffer.last(["cell1", "cell2", "nope"])) == 2
    assert len(sends) == 1


async def test_windows_come_back_packed_in_one_round_trip_and_refuse_foreign_entries(redis_buffer, redis_client,
                                                                                      sends):
    """Warm-ups read many windows at once: one script call returns each as two strings (times, payloads)."""
    series = [f"cell{i}" for i in range(50)]
    await redis_buffer.append(batch(series * 3, np.repeat([10, 20, 30], 50), seq=np.arange(150)))
    sends.clear()
    got = await redis_buffer.windows(series, 2)
    assert len(sends) == 1 and all(w.timestamp_ms.tolist() == [20, 30] for w in got)
    assert got[7].sequence.tolist() == [57, 107]
    redis_client.script_flush()  # a restarted server forgets its scripts: EVAL loads it again
    assert [len(w) for w in await redis_buffer.windows(series[:3])] == [3, 3, 3]
    redis_client.xadd(redis_buffer.window_key("foreign"), {"x": b"1234"}, id="5-0")
    with pytest.raises(ValueError, match="another schema"):
        await redis_buffer.windows(["cell1", "foreign"])


async def test_data_errors_are_not_masked(redis_buffer, redis_client):
    redis_client.set(redis_buffer.window_key("oops"), "not a stream")
    redis_client.set(redis_buffer.key("state:m"), "not a hash")
    from redis.exceptions import ResponseError

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis_buffer.append(batch(["ok", "oops"], [1, 1]))
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis_buffer.load_snapshots("m")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis_buffer.windows(["ok", "oops"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_server_raises_buffer_unavailable():
    buf = RedisWindowBuffer.from_settings(host="127.0.0.1", port=_free_port(), password="not-logged", namespace="t",
                                          kpis=KPIS, window_length=W, socket_timeout=0.5)
    try:
        assert await buf.ping() is False
        for call in (buf.open(), buf.append(batch(["a"], [1])), buf.window("a"), buf.since("a", 0),
                     buf.last(["a"]), buf.series(), buf.save_snapshots("m", {"a": (1, b"")}), buf.load_snapshots("m")):
            with pytest.raises(BufferUnavailable) as e:
                await call
            assert "not-logged" not in str(e.value)
    finally:
        await buf.close()


class PrivateRedis:
    """A redis-server of this test alone on an ephemeral port, with an fsync-always AOF in tmp_path."""

    def __init__(self, path):
        self.path, self.port, self.proc = path, _free_port(), None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.path),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"private redis-server did not start on port {self.port}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_killed_server_then_restart(private_redis):
    buf = RedisWindowBuffer.from_settings(host="127.0.0.1", port=private_redis.port, namespace="fault", kpis=KPIS,
                                          window_length=W, socket_timeout=1)
    try:
        await buf.append(batch(["a"] * 3, [1, 2, 3]))
        await buf.save_snapshots("m", {"a": (2, b"st")})
        private_redis.kill()  # kill -9: acknowledged samples must be in the AOF
        assert await buf.ping() is False
        with pytest.raises(BufferUnavailable, match="redis append"):
            await buf.append(batch(["a"], [4]))
        with pytest.raises(BufferUnavailable):
            await buf.window("a")
        private_redis.start()  # same port and directory; the script cache is empty now (NOSCRIPT path)
        assert await buf.ping() is True
        await buf.append(batch(["a", "a"], [3, 4]))  # 3 is a replay: skipped
        np.testing.assert_array_equal((await buf.window("a")).timestamp_ms, [1, 2, 3, 4])
        assert await buf.load_snapshots("m") == {"a": (2, b"st")}
        admin = aioredis.Redis(host="127.0.0.1", port=private_redis.port)
        stats = await admin.info("commandstats")
        await admin.aclose()
        assert stats["cmdstat_eval"]["calls"] == 1  # EVALSHA got NOSCRIPT after the restart: EVAL reloaded it
    finally:
        await buf.close()


async def test_out_of_memory_is_buffer_unavailable(private_redis):
    buf = RedisWindowBuffer.from_settings(host="127.0.0.1", port=private_redis.port, namespace="oom", kpis=KPIS,
                                          window_length=W, socket_timeout=1)
    admin = aioredis.Redis(host="127.0.0.1", port=private_redis.port)
    try:
        await buf.open()
        await admin.config_set("maxmemory", 1)
        with pytest.raises(BufferUnavailable, match=r"OutOfMemoryError.*maxmemory"):
            await buf.append(batch(["a"], [1]))
        with pytest.raises(BufferUnavailable, match="OutOfMemoryError"):
            await buf.save_snapshots("m", {"a": (1, b"")})
        assert (await buf.window("a")).timestamp_ms.tolist() == []  # reads still work
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.aclose()
        await buf.close()


# ---------------------------------------------------------------- throughput (printed, not asserted)


async def test_append_throughput_printed(make_buffer, capsys):
    buf = make_buffer(kpis=[f"k{i}" for i in range(12)], window_length=512)
    n, n_series, rounds = 5000, 1000, 6
    series = [f"cell{i % n_series}" for i in range(n)]
    rng = np.random.default_rng(0)
    best = float("inf")
    for r in range(rounds):
        ts = np.repeat(np.arange(n // n_series), n_series) + 1 + r * (n // n_series)
        b = SampleBatch(series, ts.astype(np.int64), np.arange(n, dtype=np.uint64),
                        rng.standard_normal((n, 12)).astype(np.float32))
        t = time.perf_counter()
        await buf.append(b)
        best = min(best, time.perf_counter() - t)
    await asyncio.sleep(0)
    with capsys.disabled():
        print(f"\n{type(buf).__name__}: append of {n} samples over {n_series} series: "
              f"{n / best:,.0f} samples/s ({best * 1e3:.2f} ms per batch, best of {rounds})")


async def test_memory_buffer_one_chatty_series_does_not_grow_the_others():
    from service.buffer.memory import PAGE_ROWS

    W, n = 256, 2000
    buf = MemoryWindowBuffer(KPIS, W)
    keys = [f"c{i}" for i in range(n)]
    await buf.append(SampleBatch(keys, np.full(n, 10, np.int64), np.ones(n, np.uint64),
                                 np.zeros((n, len(KPIS)), np.float32)))
    quiet = buf._slab.used
    t = np.arange(11, 11 + 4 * W, dtype=np.int64)
    await buf.append(SampleBatch(["c0"] * len(t), t, np.arange(2, 2 + len(t), dtype=np.uint64),
                                 np.ones((len(t), len(KPIS)), np.float32)))
    assert quiet == n  # one page per series that sent one sample
    assert buf._slab.used == n - 1 + buf._slab.m  # the chatty one holds its own ring only
    assert buf._slab.m * PAGE_ROWS <= W + 2 * PAGE_ROWS
    w = await buf.window("c0")
    assert len(w) == W and w.timestamp_ms.tolist() == t[-W:].tolist()
    assert len(await buf.window("c1")) == 1


async def test_durability_reports_the_servers_persistence(private_redis):
    """WindowBuffer.durability() follows the server's AOF / RDB configuration, changed live with CONFIG SET."""
    import redis.asyncio as aioredis

    buf = RedisWindowBuffer.from_settings(host="127.0.0.1", port=private_redis.port, namespace="dur", kpis=KPIS,
                                          window_length=W, socket_timeout=1)
    admin = aioredis.Redis(host="127.0.0.1", port=private_redis.port)
    try:
        assert await buf.durability() == "aof-always"  # PrivateRedis: --appendonly yes --appendfsync always
        await admin.config_set("appendfsync", "everysec")
        assert await buf.durability() == "aof-everysec"
        await admin.config_set("appendonly", "no")
        assert await buf.durability() == "none"  # --save "" as well
        await admin.config_set("save", "900 1")
        assert await buf.durability() == "rdb-only"
        assert await MemoryWindowBuffer(KPIS, W).durability() == "memory"
        private_redis.kill()
        assert await buf.durability() == "unknown"
    finally:
        await admin.aclose()
        await buf.close()


async def test_the_xapp_warns_when_its_redis_would_lose_acknowledged_samples(private_redis, tmp_path):
    """Ready, but its readiness detail and ms3m_buffer_durability say the ack promise does not hold."""
    import httpx
    import redis.asyncio as aioredis

    from tests.service.helpers import make_bundle, running_xapp

    admin = aioredis.Redis(host="127.0.0.1", port=private_redis.port)
    await admin.config_set("appendonly", "no")
    await admin.aclose()
    settings = {"buffer": "redis", "redis_host": "127.0.0.1", "redis_port": private_redis.port, "namespace": "warn"}
    async with (running_xapp([make_bundle(tmp_path, "s4d")], **settings) as xapp,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http):
        for _ in range(100):
            ready = (await http.get("/ric/v1/health/ready")).json()
            if ready.get("warnings"):
                break
            await asyncio.sleep(0.05)
        assert ready["status"] == "ready" and "no append-only file" in ready["warnings"][0], ready
        assert 'ms3m_buffer_durability{mode="none"} 1.0' in (await http.get("/metrics")).text
