"""RedisWindowBuffer: windows and model state snapshots in Redis, keys in the O-RAN SC SDL form `{ns},key`.

Layout (the braces are the Redis Cluster hash tag: every key of a namespace lives in one slot, so the
append script may touch them all):

- `{ns},win:<series>`  a stream per series, entry id `<timestamp_ms>-0`, one field `d` holding the packed
  sample (little-endian uint64 sequence, then D float32 values; NaN = absent), trimmed exactly to W
  (XADD MAXLEN W, not `~`).
- `{ns},series`         the set of series keys with a window.
- `{ns},meta`           hash: `kpis` (JSON list) and `format`; written on first use, checked on every open.
- `{ns},state:<model>`  hash: series -> 8-byte little-endian timestamp of the last sample included + state.

An append is exactly one round trip: one EVALSHA of a Lua script doing every XADD (and SADD) of the batch.
A sample whose id is not newer than its stream's newest (a replay or duplicate) is skipped by the script,
so replaying a batch after a failure is harmless. Redis failures (connection, timeout, loading,
read-only, out of memory, ...) surface as BufferUnavailable; other errors propagate unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import struct
from collections.abc import Iterator

import numpy as np
import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from service.buffer.base import BufferUnavailable, SampleBatch, Samples
from service.buffer.checks import check_batch, check_count, check_int, check_kpis, check_model_name, check_snapshot

FORMAT_VERSION = "1"
NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SNAPSHOT_CHUNK = 10_000  # fields per HSET / HSCAN page
_FIELD = b"d"
_MAX_VALID_KEYS = 1_000_000
_TS = struct.Struct("<q")
_UNAVAILABLE_PREFIXES = ("OOM", "MISCONF", "LOADING", "BUSY", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN",
                         "CLUSTERDOWN", "READONLY", "NOPERM", "NOAUTH", "WRONGPASS")

# KEYS[1]: the series set. ARGV: MAXLEN, stream key prefix, n, payload size, the n series keys joined by
# "\n", the n timestamps (decimal) joined by " ", the n payloads concatenated. Packing the batch into a few
# arguments (instead of 3 per sample) halves the append cost: redis-py encodes every argument in Python.
# Returns how many samples were skipped as not newer than their stream's newest id. XADD refuses such an
# id; the refusal is told apart from real failures (OOM, wrong type ...) by comparing with the stream's
# last-generated-id, and only real failures abort (what was added before stays: re-appending is harmless).
APPEND_SCRIPT = """
local function not_newer(ms, id)
  local top = string.match(id, '^(%d+)%-')
  if #ms ~= #top then return #ms < #top end
  return ms <= top
end
local maxlen, prefix, n, size, blob = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[7]
if #blob ~= n * size then return redis.error_reply('ERR ms3m append: payload size mismatch') end
local next_ms = string.gmatch(ARGV[6], '%d+')
local added, skipped, off = {}, 0, 1
for series in string.gmatch(ARGV[5], '[^\\n]+') do
  local ms = next_ms()
  if ms == nil then return redis.error_reply('ERR ms3m append: fewer timestamps than series') end
  local key = prefix .. series
  local r = redis.pcall('XADD', key, 'MAXLEN', maxlen, ms .. '-0', 'd', string.sub(blob, off, off + size - 1))
  off = off + size
  if type(r) == 'table' and r.err then
    local info = redis.pcall('XINFO', 'STREAM', key)
    local top = nil
    if type(info) == 'table' and not info.err then
      for j = 1, #info, 2 do
        if info[j] == 'last-generated-id' then top = info[j + 1] end
      end
    end
    if top == nil or not not_newer(ms, top) then return r end
    skipped = skipped + 1
  elseif not added[series] then
    added[series] = true
    redis.call('SADD', KEYS[1], series)
  end
end
return skipped
"""
APPEND_SHA = hashlib.sha1(APPEND_SCRIPT.encode()).hexdigest()

# KEYS[1]: the series set (it routes the call to the namespace's slot). ARGV: stream key prefix, count, the
# series keys joined by "\n". Returns per series, oldest first, its entries' millisecond times joined by " "
# and their payloads concatenated: two strings instead of `count` entries, which redis-py would turn into
# Python objects one by one on the event loop (a warm-up reads whole windows of many cells).
WINDOWS_SCRIPT = """
local prefix, count = ARGV[1], ARGV[2]
local out = {}
for series in string.gmatch(ARGV[3], '[^\\n]+') do
  local e = redis.call('XREVRANGE', prefix .. series, '+', '-', 'COUNT', count)
  local ms, blobs = {}, {}
  for i = #e, 1, -1 do
    ms[#ms + 1] = string.match(e[i][1], '^(%d+)')
    local f = e[i][2]
    blobs[#blobs + 1] = (f[1] == 'd' and #f == 2) and f[2] or ''
  end
  out[#out + 1] = table.concat(ms, ' ')
  out[#out + 1] = table.concat(blobs)
end
return out
"""
WINDOWS_SHA = hashlib.sha1(WINDOWS_SCRIPT.encode()).hexdigest()


def _config(reply: dict, name: str, default: str):
    """A CONFIG GET reply's value (redis-py decodes its keys, or not, by version)."""
    return reply.get(name, reply.get(name.encode(), default))


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _is_unavailable(e: rex.ResponseError) -> bool:
    if isinstance(e, rex.ReadOnlyError | rex.OutOfMemoryError | rex.NoPermissionError | rex.ClusterDownError
                  | rex.TryAgainError):
        return True
    return str(e).lstrip().upper().startswith(_UNAVAILABLE_PREFIXES)


@contextlib.contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """Turn Redis failures into BufferUnavailable (keeping the message); programming errors pass."""
    try:
        yield
    except (rex.ConnectionError, rex.TimeoutError, OSError) as e:
        raise BufferUnavailable(f"redis {what}: {type(e).__name__}: {e}") from e
    except rex.ResponseError as e:
        if _is_unavailable(e):
            raise BufferUnavailable(f"redis {what}: {type(e).__name__}: {e}") from e
        raise


async def _execute(pipe: aioredis.client.Pipeline) -> list:
    """Run a pipeline; raise its first error as Redis sent it (not annotated with the command's arguments)."""
    replies = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class RedisWindowBuffer:
    """WindowBuffer on Redis streams (see the module docstring for the key layout).

    `client` must not decode responses. `open()` (called lazily by every method, call it at startup to fail
    fast) writes or checks the namespace's KPI list: data written for another KPI list raises ValueError.
    The client is closed by `close()` only when `close_client` is set (from_settings sets it). Samples
    skipped as replays or duplicates are counted in `duplicates_skipped`.
    """

    def __init__(self, client: aioredis.Redis, kpis: list[str], window_length: int, namespace: str, *,
                 close_client: bool = False):
        self.kpis = check_kpis(kpis, window_length)
        self.window_length = int(window_length)
        if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
            raise ValueError(f"namespace must match {NAMESPACE.pattern}, got {namespace!r}")
        if client.get_encoder().decode_responses:
            raise ValueError("RedisWindowBuffer needs a client with decode_responses=False (payloads are binary)")
        self.namespace = namespace
        self.duplicates_skipped = 0
        self._client = client
        self._close_client = close_client
        self._opened = False
        self._valid_keys: set[str] = set()  # series keys already checked (saves re-checking every batch)
        self._series_key = self.key("series")
        self._meta_key = self.key("meta")
        self._win_prefix = self.key("win:")
        self._row = np.dtype([("seq", "<u8"), ("v", "<f4", (len(self.kpis),))])

    @classmethod
    def from_settings(cls, *, host: str, port: int = 6379, password: str | None = None, db: int = 0,
                      namespace: str, kpis: list[str], window_length: int,
                      socket_timeout: float = 2.0, tls: bool = False, tls_ca_file: str | None = None
                      ) -> RedisWindowBuffer:
        """A buffer with its own client. The password (str or pydantic SecretStr) comes from the caller, who
        reads it from the environment; it is handed to the client only, never logged. tls: connect over TLS,
        verifying the server against tls_ca_file (default: the system's CAs)."""
        if hasattr(password, "get_secret_value"):
            password = password.get_secret_value()
        if not host:
            raise ValueError("redis host must be set")
        client = aioredis.Redis(
            host=host, port=int(port), password=password, db=int(db), socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout, decode_responses=False,
            # One quick retry only: callers handle BufferUnavailable (journal, retry, report not-ready).
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
            **({"ssl": True, "ssl_ca_certs": tls_ca_file} if tls else {}),
        )
        return cls(client, kpis, window_length, namespace, close_client=True)

    def key(self, name: str) -> str:
        """The SDL key `{namespace},name`."""
        return f"{{{self.namespace}}},{name}"

    def window_key(self, series: str) -> str:
        return self._win_prefix + series

    def state_key(self, model: str) -> str:
        return self.key("state:" + check_model_name(model))

    async def open(self) -> None:
        """Write the namespace's meta on first use or check it; load the append script. Idempotent."""
        if self._opened:
            return
        kpis_json = json.dumps(self.kpis)
        with _unavailable("open"):
            async with self._client.pipeline(transaction=False) as p:
                p.hsetnx(self._meta_key, "kpis", kpis_json)
                p.hsetnx(self._meta_key, "format", FORMAT_VERSION)
                p.hgetall(self._meta_key)
                p.script_load(APPEND_SCRIPT)
                p.script_load(WINDOWS_SCRIPT)
                *_, meta, _sha, _sha2 = await _execute(p)
        stored_kpis = meta.get(b"kpis", b"").decode("utf-8", "replace")
        stored_format = meta.get(b"format", b"").decode("utf-8", "replace")
        try:
            stored = json.loads(stored_kpis)
        except ValueError:
            stored = stored_kpis
        if stored != self.kpis or stored_format != FORMAT_VERSION:
            raise ValueError(
                f"Redis namespace {self.namespace!r} holds data written for KPIs {stored} (format "
                f"{stored_format or '?'}), but this buffer is configured with KPIs {self.kpis} (format "
                f"{FORMAT_VERSION}); use another namespace or delete the keys {self.key('*')}")
        self._opened = True

    async def append(self, batch: SampleBatch) -> None:
        """One EVALSHA for the whole batch; samples not newer than their stream's newest are skipped."""
        ts, seq, values = check_batch(batch, len(self.kpis), known=self._valid_keys)
        n = len(ts)
        if not n:
            return
        if len(self._valid_keys) > _MAX_VALID_KEYS:
            self._valid_keys.clear()
        self._valid_keys.update(batch.series)
        await self.open()
        rows = np.empty(n, self._row)
        rows["seq"] = seq
        rows["v"] = values
        # Arrival order is kept, so the samples of a series are added in order.
        args = (self._series_key, self.window_length, self._win_prefix, n, self._row.itemsize,
                "\n".join(batch.series), " ".join(map(str, ts.tolist())), rows.tobytes())
        with _unavailable("append"):
            try:
                skipped = await self._client.evalsha(APPEND_SHA, 1, *args)
            except rex.NoScriptError:  # script cache flushed (server restart): EVAL loads it again
                skipped = await self._client.eval(APPEND_SCRIPT, 1, *args)
        self.duplicates_skipped += int(skipped)

    async def window(self, series: str, n: int | None = None) -> Samples:
        """The last n (default all kept) samples of a series, oldest first; empty if unknown."""
        n = check_count(n, self.window_length)
        if n == 0:
            return Samples.empty(len(self.kpis))
        await self.open()
        with _unavailable("window"):
            entries = await self._client.xrevrange(self.window_key(series), "+", "-", count=n)
        return self._decode(entries[::-1], series)

    async def windows(self, series_list: list[str], n: int | None = None) -> list[Samples]:
        """`window` of each series, in one pipelined round trip."""
        n = check_count(n, self.window_length)
        series_list = list(series_list)
        if n == 0 or not series_list:
            return [Samples.empty(len(self.kpis)) for _ in series_list]
        await self.open()
        args = (self._series_key, self._win_prefix, n, "\n".join(series_list))
        with _unavailable("window"):
            try:
                flat = await self._client.evalsha(WINDOWS_SHA, 1, *args)
            except rex.NoScriptError:  # script cache flushed (server restart): EVAL loads it again
                flat = await self._client.eval(WINDOWS_SCRIPT, 1, *args)
        return [self._decode_packed(flat[2 * i], flat[2 * i + 1], s) for i, s in enumerate(series_list)]

    async def since(self, series: str, after_ms: int) -> Samples:
        """The kept samples of a series with timestamp > after_ms, oldest first."""
        check_int("after_ms", after_ms)
        if after_ms >= np.iinfo(np.int64).max:
            return Samples.empty(len(self.kpis))
        await self.open()
        start = f"({after_ms}-0" if after_ms >= 0 else "-"
        with _unavailable("since"):
            entries = await self._client.xrange(self.window_key(series), start, "+")
        return self._decode(entries, series)

    async def last(self, series_list: list[str]) -> dict[str, tuple[int, int]]:
        """(timestamp_ms, sequence) of the newest sample of each known series: one pipelined round trip."""
        series_list = list(series_list)
        if not series_list:
            return {}
        await self.open()
        with _unavailable("last"):
            async with self._client.pipeline(transaction=False) as p:
                for s in series_list:
                    p.xrevrange(self.window_key(s), "+", "-", count=1)
                replies = await _execute(p)
        out = {}
        for s, entries in zip(series_list, replies):
            if entries:
                d = self._decode(entries, s)
                out[s] = (int(d.timestamp_ms[0]), int(d.sequence[0]))
        return out

    async def series(self) -> list[str]:
        """Every series with a window, sorted."""
        await self.open()
        with _unavailable("series"):
            members = await self._client.smembers(self._series_key)
        return sorted(m.decode() for m in members)

    async def save_snapshots(self, model: str, records: dict[str, tuple[int, bytes]]) -> None:
        """Store (replace) the given series' snapshots of `model` in one pipelined round trip."""
        key = self.state_key(model)
        fields = {}
        for series, ts, data in (check_snapshot(s, r) for s, r in records.items()):
            fields[series] = _TS.pack(ts) + data
        if not fields:
            return
        await self.open()
        items = list(fields.items())
        with _unavailable("save_snapshots"):
            # Not a transaction: every record carries its own timestamp, so a partly saved set still
            # restores correctly (older records just replay more).
            async with self._client.pipeline(transaction=False) as p:
                for i in range(0, len(items), SNAPSHOT_CHUNK):
                    p.hset(key, mapping=dict(items[i:i + SNAPSHOT_CHUNK]))
                await _execute(p)

    async def load_snapshots(self, model: str) -> dict[str, tuple[int, bytes]]:
        """All snapshots of `model` (HSCAN pages, so very large sets do not block the server)."""
        key = self.state_key(model)
        await self.open()
        out: dict[str, tuple[int, bytes]] = {}
        with _unavailable("load_snapshots"):
            async for field, value in self._client.hscan_iter(key, count=SNAPSHOT_CHUNK):
                series = field.decode()
                if len(value) < _TS.size:
                    raise ValueError(f"snapshot of {series!r} in {key} has {len(value)} bytes, "
                                     f"less than its {_TS.size}-byte timestamp header")
                out[series] = (_TS.unpack_from(value)[0], bytes(value[_TS.size:]))
        return out

    async def ping(self) -> bool:
        """True when Redis answers PING; never raises."""
        try:
            return bool(await self._client.ping())
        except Exception:
            return False

    async def durability(self) -> str:
        """From INFO persistence (and CONFIG GET appendfsync where the server allows CONFIG; managed Redis
        often renames it: then "aof-everysec" is assumed, Redis' default); "unknown" when Redis does not answer."""
        try:
            info = await self._client.info("persistence")
            if int(info.get("aof_enabled", 0)):
                try:
                    policy = _text(_config(await self._client.config_get("appendfsync"), "appendfsync", "everysec"))
                except rex.ResponseError:
                    policy = "everysec"
                return f"aof-{policy}" if policy in ("always", "everysec", "no") else "unknown"
            saves = int(info.get("rdb_saves", 0)) or int(info.get("rdb_last_save_time", 0)) > 0
            try:
                rdb = bool(_text(_config(await self._client.config_get("save"), "save", "")).strip())
            except rex.ResponseError:
                rdb = bool(saves)
            return "rdb-only" if rdb else "none"
        except Exception:
            return "unknown"

    async def close(self) -> None:
        if self._close_client:
            await self._client.aclose()

    def _decode_packed(self, ms: bytes, payload: bytes, series: str) -> Samples:
        """WINDOWS_SCRIPT's two strings of one series as Samples."""
        ts = np.fromstring(ms.decode(), dtype=np.int64, sep=" ") if ms else np.zeros(0, np.int64)
        if len(payload) != len(ts) * self._row.itemsize:
            raise ValueError(f"window of {series!r} holds entries that are not {self._row.itemsize}-byte "
                             f"samples of {len(self.kpis)} KPIs (written by another schema?)")
        if not len(ts):
            return Samples.empty(len(self.kpis))
        rows = np.frombuffer(payload, self._row)
        return Samples(ts, rows["seq"].copy(), rows["v"].copy())

    def _decode(self, entries: list, series: str) -> Samples:
        """Stream entries (id, {field: payload}), oldest first, as Samples."""
        if not entries:
            return Samples.empty(len(self.kpis))
        payload = b"".join(fields.get(_FIELD, b"") for _, fields in entries)
        if len(payload) != len(entries) * self._row.itemsize:
            raise ValueError(f"window of {series!r} holds entries that are not {self._row.itemsize}-byte "
                             f"samples of {len(self.kpis)} KPIs (written by another schema?)")
        rows = np.frombuffer(payload, self._row)
        ts = np.array([int(entry_id.partition(b"-")[0]) for entry_id, _ in entries], np.int64)
        return Samples(ts, rows["seq"].copy(), rows["v"].copy())
