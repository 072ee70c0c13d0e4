"""MemoryWindowBuffer: the embedded window buffer (no Redis), and the batch checks both buffers share.

Each series has a ring of preallocated numpy arrays (timestamps, sequence numbers, values) that grows
by doubling up to exactly `window_length` rows, so a series costs memory in proportion to what it holds.
An appended batch is grouped by series once (a dict pass and one stable argsort); each series' rows are
then written with at most two slice assignments. Nothing here blocks: the coroutines only satisfy the
WindowBuffer protocol. Not durable: a restart starts empty.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from service.buffer.base import SampleBatch, Samples

MAX_SERIES_KEY_CHARS = 512
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
_MIN_CAPACITY = 8
_INT64_MAX = np.iinfo(np.int64).max


@dataclass
class GroupedBatch:
    """A checked batch grouped by series: the rows of `keys[g]` are `bounds[g]:bounds[g+1]`, in arrival order."""

    keys: list[str]
    bounds: np.ndarray  # (G + 1,) int64
    timestamp_ms: np.ndarray  # (n,) int64, grouped order
    sequence: np.ndarray  # (n,) uint64, grouped order
    values: np.ndarray  # (n, D) float32, grouped order


def check_kpis(kpis: list[str], window_length: int) -> list[str]:
    """Validate the constructor arguments shared by both buffers; returns the KPI list as a new list."""
    kpis = list(kpis)
    if not kpis or not all(isinstance(k, str) and k for k in kpis):
        raise ValueError(f"kpis must be a non-empty list of non-empty names, got {kpis!r}")
    if len(set(kpis)) != len(kpis):
        raise ValueError(f"kpis has duplicate names: {kpis!r}")
    if isinstance(window_length, bool) or not isinstance(window_length, int | np.integer) or window_length < 1:
        raise ValueError(f"window_length must be a positive integer, got {window_length!r}")
    return kpis


def check_series_key(key: object) -> str:
    """A series key is a non-empty printable str (no control characters) of at most 512 chars."""
    if not isinstance(key, str) or not key or len(key) > MAX_SERIES_KEY_CHARS or not key.isprintable():
        raise ValueError(f"series key must be a non-empty printable str of at most {MAX_SERIES_KEY_CHARS} "
                         f"chars, got {str(key)[:80]!r}")
    return key


def check_model_name(model: object) -> str:
    if not isinstance(model, str) or not MODEL_NAME.match(model):
        raise ValueError(f"model name must match {MODEL_NAME.pattern}, got {str(model)[:80]!r}")
    return model


def check_snapshot(series: object, record: object) -> tuple[str, int, bytes]:
    """(series, timestamp, state bytes) of one snapshot record, or ValueError."""
    check_series_key(series)
    if not (isinstance(record, tuple) and len(record) == 2):
        raise ValueError(f"snapshot of {series!r} must be (timestamp_ms, bytes), got {type(record).__name__}")
    ts, data = record
    if isinstance(ts, bool) or not isinstance(ts, int | np.integer) or not 0 <= ts <= _INT64_MAX:
        raise ValueError(f"snapshot timestamp of {series!r} must be an int in [0, 2**63), got {ts!r}")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"snapshot state of {series!r} must be bytes, got {type(data).__name__}")
    return series, int(ts), bytes(data)


def check_batch(batch: SampleBatch, d: int, *, known: Container[str] = (),
                check_keys: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check a batch (shapes, dtypes, timestamps ≥ 1, series keys not in `known`); (timestamp int64,
    sequence uint64, values float32 C-contiguous), in arrival order. Raises ValueError on a malformed batch."""
    n = len(batch.series)
    ts = np.asarray(batch.timestamp_ms)
    seq = np.asarray(batch.sequence)
    values = np.asarray(batch.values)
    if ts.shape != (n,) or seq.shape != (n,):
        raise ValueError(f"batch of {n} series keys has timestamp_ms of shape {ts.shape} and sequence of "
                         f"shape {seq.shape}; both must be ({n},)")
    if values.shape != (n, d):
        raise ValueError(f"batch values must have shape ({n}, {d}) (samples, KPIs), got {values.shape}")
    if n and ts.dtype.kind not in "iu":
        raise ValueError(f"timestamp_ms must be integers, got dtype {ts.dtype}")
    if n and seq.dtype.kind not in "iu":
        raise ValueError(f"sequence must be integers, got dtype {seq.dtype}")
    if n and values.dtype.kind not in "fiu":
        raise ValueError(f"values must be numbers, got dtype {values.dtype}")
    if n and seq.dtype.kind == "i" and seq.min() < 0:
        raise ValueError("sequence numbers must be non-negative")
    if n and ts.dtype.kind == "u" and ts.max() > _INT64_MAX:
        raise ValueError("timestamp_ms must fit in int64")
    ts = ts.astype(np.int64, copy=False)
    if n and ts.min() < 1:
        # Stream id 0-0 is not storable in Redis; both buffers refuse it so they behave the same.
        raise ValueError(f"timestamp_ms must be positive epoch milliseconds, got {int(ts.min())}")
    if check_keys:
        for key in set(batch.series):
            if key not in known:
                check_series_key(key)
    return ts, seq.astype(np.uint64, copy=False), np.ascontiguousarray(values, dtype=np.float32)


def group_batch(batch: SampleBatch, d: int, known: Container[str] = ()) -> GroupedBatch:
    """Check a batch (see check_batch) and group its rows by series, keeping each series' arrival order."""
    ts, seq, values = check_batch(batch, d, check_keys=False)
    n = len(ts)
    index: dict[str, int] = {}
    codes = [index.setdefault(s, len(index)) for s in batch.series]
    keys = list(index)
    for key in keys:
        if key not in known:
            check_series_key(key)
    if len(keys) == n:
        return GroupedBatch(keys, np.arange(n + 1, dtype=np.int64), ts, seq, values)
    code_arr = np.asarray(codes, dtype=np.int64)
    order = np.argsort(code_arr, kind="stable")
    bounds = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(np.bincount(code_arr, minlength=len(keys)), out=bounds[1:])
    return GroupedBatch(keys, bounds, ts[order], seq[order], values[order])


def keep_newer(ts: np.ndarray, last_ts: int) -> np.ndarray:
    """Which samples of one series (arrival order) are newer than everything before them.

    A sample whose timestamp is ≤ the newest stored one or an earlier sample of the same batch is a
    replay or duplicate and is skipped, exactly as Redis XADD refuses it.
    """
    before = np.maximum.accumulate(np.concatenate(([last_ts], ts[:-1])))
    return ts > before


class _Ring:
    """The last ≤ W samples of one series in a ring that grows by doubling up to W rows."""

    __slots__ = ("count", "last", "seq", "start", "ts", "vals")

    def __init__(self, d: int, capacity: int):
        self._allocate(d, capacity)
        self.count = 0
        self.last = 0  # newest timestamp; timestamps are ≥ 1

    def _allocate(self, d: int, capacity: int) -> None:
        self.ts = np.zeros(capacity, np.int64)
        self.seq = np.zeros(capacity, np.uint64)
        self.vals = np.zeros((capacity, d), np.float32)
        self.start = 0

    def last_row(self) -> int:
        return (self.start + self.count - 1) % len(self.ts)

    def _resize(self, capacity: int) -> None:
        ts, seq, vals = self._ordered(self.count)
        self._allocate(vals.shape[1], capacity)
        self.ts[: self.count], self.seq[: self.count], self.vals[: self.count] = ts, seq, vals

    def write(self, ts: np.ndarray, seq: np.ndarray, vals: np.ndarray, w: int) -> None:
        k = len(ts)
        self.last = int(ts[-1])
        if k >= w:
            if len(self.ts) != w:
                self._allocate(vals.shape[1], w)
            self.ts[:], self.seq[:], self.vals[:] = ts[k - w:], seq[k - w:], vals[k - w:]
            self.start, self.count = 0, w
            return
        cap = len(self.ts)
        need = min(self.count + k, w)
        if need > cap:
            self._resize(min(w, max(need, 2 * cap)))
            cap = len(self.ts)
        end = (self.start + self.count) % cap
        first = min(k, cap - end)
        self.ts[end:end + first], self.seq[end:end + first], self.vals[end:end + first] = (
            ts[:first], seq[:first], vals[:first])
        if first < k:
            rest = k - first
            self.ts[:rest], self.seq[:rest], self.vals[:rest] = ts[first:], seq[first:], vals[first:]
        total = self.count + k
        if total > cap:
            self.start = (self.start + total - cap) % cap
            self.count = cap
        else:
            self.count = total

    def _ordered(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the last n rows, oldest first."""
        cap = len(self.ts)
        lo = (self.start + self.count - n) % cap
        if lo + n <= cap:
            sl = slice(lo, lo + n)
            return self.ts[sl].copy(), self.seq[sl].copy(), self.vals[sl].copy()
        tail = n - (cap - lo)
        return (np.concatenate((self.ts[lo:], self.ts[:tail])), np.concatenate((self.seq[lo:], self.seq[:tail])),
                np.concatenate((self.vals[lo:], self.vals[:tail])))

    def samples(self, n: int) -> Samples:
        return Samples(*self._ordered(min(n, self.count)))

    def since(self, after_ms: int) -> Samples:
        ts, seq, vals = self._ordered(self.count)
        i = int(np.searchsorted(ts, after_ms, side="right"))
        return Samples(ts[i:], seq[i:], vals[i:])


class MemoryWindowBuffer:
    """Embedded WindowBuffer: per-series numpy rings with exact trimming, snapshots in a dict.

    Samples not newer than a series' newest stored sample (replays, duplicates) are skipped and counted
    in `duplicates_skipped`; the rest of the batch is stored.
    """

    def __init__(self, kpis: list[str], window_length: int):
        self.kpis = check_kpis(kpis, window_length)
        self.window_length = int(window_length)
        self.duplicates_skipped = 0
        self._rings: dict[str, _Ring] = {}
        self._snapshots: dict[str, dict[str, tuple[int, bytes]]] = {}

    async def append(self, batch: SampleBatch) -> None:
        """Append every sample newer than its series' newest; windows keep exactly the last W."""
        g = group_batch(batch, len(self.kpis), known=self._rings)
        if not g.keys:
            return
        d, w, rings = len(self.kpis), self.window_length, self._rings
        b = g.bounds.tolist()
        batch_rings = []
        for i, key in enumerate(g.keys):
            ring = rings.get(key)
            if ring is None:
                ring = rings[key] = _Ring(d, min(w, max(_MIN_CAPACITY, b[i + 1] - b[i])))
            batch_rings.append(ring)
        ts, seq, vals = g.timestamp_ms, g.sequence, g.values
        # Vectorized order check: every sample must be newer than the one before it in its series.
        starts = g.bounds[:-1]
        newer = np.empty(len(ts), bool)
        newer[1:] = ts[1:] > ts[:-1]
        newer[starts] = ts[starts] > np.fromiter((r.last for r in batch_rings), np.int64, len(batch_rings))
        if newer.all():
            for i, ring in enumerate(batch_rings):
                lo, hi = b[i], b[i + 1]
                ring.write(ts[lo:hi], seq[lo:hi], vals[lo:hi], w)
            return
        stale = set(np.repeat(np.arange(len(batch_rings)), np.diff(g.bounds))[~newer].tolist())
        for i, ring in enumerate(batch_rings):
            lo, hi = b[i], b[i + 1]
            if i not in stale:
                ring.write(ts[lo:hi], seq[lo:hi], vals[lo:hi], w)
                continue
            keep = keep_newer(ts[lo:hi], ring.last)
            self.duplicates_skipped += int((~keep).sum())
            if keep.any():
                ring.write(ts[lo:hi][keep], seq[lo:hi][keep], vals[lo:hi][keep], w)

    async def window(self, series: str, n: int | None = None) -> Samples:
        """The last n (default all kept) samples of a series, oldest first; empty if unknown."""
        n = check_count(n, self.window_length)
        ring = self._rings.get(series)
        if ring is None or n == 0:
            return Samples.empty(len(self.kpis))
        return ring.samples(n)

    async def since(self, series: str, after_ms: int) -> Samples:
        """The kept samples of a series with timestamp > after_ms, oldest first."""
        check_int("after_ms", after_ms)
        ring = self._rings.get(series)
        if ring is None:
            return Samples.empty(len(self.kpis))
        return ring.since(int(min(max(after_ms, -1), _INT64_MAX)))

    async def last(self, series_list: list[str]) -> dict[str, tuple[int, int]]:
        """(timestamp_ms, sequence) of the newest sample of each known series among series_list."""
        out = {}
        for key in series_list:
            ring = self._rings.get(key)
            if ring is not None and ring.count:
                row = ring.last_row()
                out[key] = (int(ring.ts[row]), int(ring.seq[row]))
        return out

    async def series(self) -> list[str]:
        """Every series with a window, sorted."""
        return sorted(self._rings)

    async def save_snapshots(self, model: str, records: dict[str, tuple[int, bytes]]) -> None:
        """Store (replace) the given series' snapshots of `model`; others of the model are kept."""
        check_model_name(model)
        checked = [check_snapshot(s, r) for s, r in records.items()]
        store = self._snapshots.setdefault(model, {})
        for series, ts, data in checked:
            store[series] = (ts, data)

    async def load_snapshots(self, model: str) -> dict[str, tuple[int, bytes]]:
        """All snapshots of `model` (a new dict)."""
        check_model_name(model)
        return dict(self._snapshots.get(model, {}))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}")


def check_count(n: int | None, w: int) -> int:
    if n is None:
        return w
    check_int("n", n)
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n}")
    return min(int(n), w)
