"""MemoryWindowBuffer: the embedded window buffer (no Redis), and the batch checks both buffers share.

Every series owns one row (slot) of shared ring arrays (timestamps, sequence numbers, values) whose
row capacity grows by doubling up to exactly `window_length`. An appended batch is grouped by series
once (a dict pass and one stable argsort) and written with one fancy-index assignment per array, so the
cost of a batch of 1,000 cells is a few numpy calls, not 1,000 Python ones. Nothing here blocks: the
coroutines only satisfy the WindowBuffer protocol. Not durable: a restart starts empty.
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


class _Slab:
    """The last ≤ W samples of every series, one row (slot) per series, in shared ring arrays.

    Slot r holds its samples at ring positions total[r] % C (C the row capacity), so a batch with any
    number of series is written with one fancy-index assignment per array. C grows by doubling up to
    W as windows fill and the slot count by doubling as series arrive.
    """

    def __init__(self, d: int, window: int):
        self.d, self.w = d, window
        self.slot: dict[str, int] = {}
        self._allocate(16, min(window, _MIN_CAPACITY))

    def _allocate(self, slots: int, capacity: int) -> None:
        self.ts = np.zeros((slots, capacity), np.int64)
        self.seq = np.zeros((slots, capacity), np.uint64)
        self.vals = np.zeros((slots, capacity, self.d), np.float32)
        self.total = np.zeros(slots, np.int64)  # samples ever written per slot
        self.last = np.zeros(slots, np.int64)  # newest timestamp; timestamps are ≥ 1

    def _regrow(self, slots: int, capacity: int) -> None:
        old = (self.ts, self.seq, self.vals, self.total, self.last)
        n_old, c_old = self.ts.shape
        self._allocate(slots, capacity)
        self.total[:n_old], self.last[:n_old] = old[3], old[4]
        kept = np.minimum(old[3], c_old)  # (n_old,) samples held per slot
        k = np.arange(min(c_old, capacity))
        rows = np.arange(n_old)[:, None]
        age = kept[:, None] - 1 - k  # newest first: age 0 is the latest sample
        valid = age >= 0
        src = (old[3][:, None] - 1 - k) % c_old
        dst = (old[3][:, None] - 1 - k) % capacity
        r, sp, dp = np.broadcast_to(rows, src.shape)[valid], src[valid], dst[valid]
        self.ts[r, dp], self.seq[r, dp], self.vals[r, dp] = old[0][r, sp], old[1][r, sp], old[2][r, sp]

    def slots_for(self, keys: list[str]) -> np.ndarray:
        slot = self.slot
        out = np.fromiter((slot.setdefault(k, len(slot)) for k in keys), np.int64, len(keys))
        if len(slot) > len(self.total):
            self._regrow(max(len(slot), 2 * len(self.total)), self.ts.shape[1])
        return out

    def write(self, slots: np.ndarray, counts: np.ndarray, ts: np.ndarray, seq: np.ndarray,
              vals: np.ndarray) -> None:
        """Append counts[g] samples (grouped, arrival order) to slot slots[g]; only each slot's last W stay."""
        cap = self.ts.shape[1]
        need = int(min(self.w, (np.minimum(self.total[slots], cap) + counts).max()))
        if need > cap:
            self._regrow(len(self.total), min(self.w, max(need, 2 * cap)))
            cap = self.ts.shape[1]
        if len(ts) == len(slots) and (counts == 1).all():  # one sample per series: the streaming case
            pos = self.total[slots] % cap
            self.ts[slots, pos], self.seq[slots, pos], self.vals[slots, pos] = ts, seq, vals
            self.total[slots] += 1
            self.last[slots] = ts
            return
        ends = np.cumsum(counts)
        rank = np.arange(len(ts)) - np.repeat(ends - counts, counts)
        row = np.repeat(slots, counts)
        keep = rank >= np.repeat(counts, counts) - cap  # older ones would be overwritten in this batch
        pos = (np.repeat(self.total[slots], counts) + rank) % cap
        row, pos = row[keep], pos[keep]
        self.ts[row, pos], self.seq[row, pos], self.vals[row, pos] = ts[keep], seq[keep], vals[keep]
        self.total[slots] += counts
        some = counts > 0
        self.last[slots[some]] = ts[ends[some] - 1]

    def ordered(self, slot: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last n (≤ held) samples of a slot, oldest first (copies)."""
        cap, total = self.ts.shape[1], int(self.total[slot])
        n = min(n, total, cap, self.w)
        pos = (total - n + np.arange(n)) % cap
        return self.ts[slot, pos], self.seq[slot, pos], self.vals[slot, pos]

    def held(self, slot: int) -> int:
        return int(min(self.total[slot], self.ts.shape[1]))


class MemoryWindowBuffer:
    """Embedded WindowBuffer: every series' ring in shared numpy arrays (`_Slab`), exact trimming,
    snapshots in a dict.

    Samples not newer than a series' newest stored sample (replays, duplicates) are skipped and counted
    in `duplicates_skipped`; the rest of the batch is stored.
    """

    def __init__(self, kpis: list[str], window_length: int):
        self.kpis = check_kpis(kpis, window_length)
        self.window_length = int(window_length)
        self.duplicates_skipped = 0
        self._slab = _Slab(len(self.kpis), self.window_length)
        self._snapshots: dict[str, dict[str, tuple[int, bytes]]] = {}

    async def append(self, batch: SampleBatch) -> None:
        """Append every sample newer than its series' newest; windows keep exactly the last W."""
        slab = self._slab
        g = group_batch(batch, len(self.kpis), known=slab.slot)
        if not g.keys:
            return
        slots = slab.slots_for(g.keys)
        counts = np.diff(g.bounds)
        ts, seq, vals = g.timestamp_ms, g.sequence, g.values
        # Vectorized order check: every sample must be newer than the one before it in its series.
        starts = g.bounds[:-1]
        newer = np.empty(len(ts), bool)
        newer[1:] = ts[1:] > ts[:-1]
        newer[starts] = ts[starts] > slab.last[slots]
        if not newer.all():
            group = np.repeat(np.arange(len(slots)), counts)
            keep = np.ones(len(ts), bool)
            for i in np.unique(group[~newer]).tolist():
                lo, hi = int(g.bounds[i]), int(g.bounds[i + 1])
                keep[lo:hi] = keep_newer(ts[lo:hi], int(slab.last[slots[i]]))
            self.duplicates_skipped += int((~keep).sum())
            ts, seq, vals = ts[keep], seq[keep], vals[keep]
            counts = np.bincount(group[keep], minlength=len(slots))
        slab.write(slots, counts, ts, seq, vals)

    async def window(self, series: str, n: int | None = None) -> Samples:
        """The last n (default all kept) samples of a series, oldest first; empty if unknown."""
        n = check_count(n, self.window_length)
        slot = self._slab.slot.get(series)
        if slot is None or n == 0:
            return Samples.empty(len(self.kpis))
        return Samples(*self._slab.ordered(slot, n))

    async def since(self, series: str, after_ms: int) -> Samples:
        """The kept samples of a series with timestamp > after_ms, oldest first."""
        check_int("after_ms", after_ms)
        slot = self._slab.slot.get(series)
        if slot is None:
            return Samples.empty(len(self.kpis))
        ts, seq, vals = self._slab.ordered(slot, self.window_length)
        i = int(np.searchsorted(ts, int(min(max(after_ms, -1), _INT64_MAX)), side="right"))
        return Samples(ts[i:], seq[i:], vals[i:])

    async def last(self, series_list: list[str]) -> dict[str, tuple[int, int]]:
        """(timestamp_ms, sequence) of the newest sample of each known series among series_list."""
        slab, out = self._slab, {}
        for key in series_list:
            slot = slab.slot.get(key)
            if slot is not None and slab.held(slot):
                ts, seq, _ = slab.ordered(slot, 1)
                out[key] = (int(ts[0]), int(seq[0]))
        return out

    async def series(self) -> list[str]:
        """Every series with a window, sorted."""
        return sorted(k for k, slot in self._slab.slot.items() if self._slab.held(slot))

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
