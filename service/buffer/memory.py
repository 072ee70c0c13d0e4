"""MemoryWindowBuffer: the embedded window buffer (no Redis).

Every series owns a small ring of fixed-size pages from one shared pool (timestamps, sequence numbers,
values), taken as its own window fills, so memory per series is bounded by its own window. An appended
batch is grouped by series once (a dict pass and one stable argsort) and written with one fancy-index
assignment per array, so the cost of a batch of 1,000 cells is a few numpy calls, not 1,000 Python
ones. Nothing here blocks: the coroutines only satisfy the WindowBuffer protocol. Not durable: a
restart starts empty.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from service.buffer.base import SampleBatch, Samples
from service.buffer.checks import (
    check_batch,
    check_count,
    check_int,
    check_kpis,
    check_model_name,
    check_series_key,
    check_snapshot,
)

PAGE_ROWS = 16  # rows per page of the memory buffer's pool
_INT64_MAX = np.iinfo(np.int64).max


@dataclass
class GroupedBatch:
    """A checked batch grouped by series: the rows of `keys[g]` are `bounds[g]:bounds[g+1]`, in arrival order."""

    keys: list[str]
    bounds: np.ndarray  # (G + 1,) int64
    timestamp_ms: np.ndarray  # (n,) int64, grouped order
    sequence: np.ndarray  # (n,) uint64, grouped order
    values: np.ndarray  # (n, D) float32, grouped order


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
    """The last ≤ W samples of every series, in pages of P rows taken from one shared pool.

    Sample number i of a series (counted from its first) lives at row i % P of the series' logical page
    (i // P) % M, M = ceil((W − 1) / P) + 1 — enough pages that the last W samples are always held. A page
    is taken from the pool when its series first reaches it and then reused by that series in a ring, so
    a series holds memory for its own samples only (at most M·P rows), whatever other series send, and a
    batch with any number of series is still written with one fancy-index assignment per array.
    """

    def __init__(self, d: int, window: int):
        self.d, self.w = d, window
        self.p = min(PAGE_ROWS, window)
        self.m = -(-(window - 1) // self.p) + 1
        self.slot: dict[str, int] = {}
        self.pages = np.full((0, self.m), -1, np.int32)  # (slots, M) pool page of each logical page, -1 none
        self.total = np.zeros(0, np.int64)  # samples ever written per slot
        self.last = np.zeros(0, np.int64)  # newest timestamp; timestamps are ≥ 1
        self.used = 0  # pool pages handed out
        self._grow_slots(16)
        self._grow_pool(16)

    def _grow_slots(self, n: int) -> None:
        old = len(self.total)
        self.pages = np.concatenate([self.pages, np.full((n - old, self.m), -1, np.int32)])
        self.total = np.concatenate([self.total, np.zeros(n - old, np.int64)])
        self.last = np.concatenate([self.last, np.zeros(n - old, np.int64)])

    def _grow_pool(self, n: int) -> None:
        old = self.ts.shape[0] if hasattr(self, "ts") else 0
        grown = (np.zeros((n, self.p), np.int64), np.zeros((n, self.p), np.uint64),
                 np.zeros((n, self.p, self.d), np.float32))
        if old:
            for new, cur in zip(grown, (self.ts, self.seq, self.vals)):
                new[:old] = cur
        self.ts, self.seq, self.vals = grown

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ts, self.seq, self.vals, self.pages, self.total, self.last))

    def slots_for(self, keys: list[str]) -> np.ndarray:
        slot = self.slot
        out = np.fromiter((slot.setdefault(k, len(slot)) for k in keys), np.int64, len(keys))
        if len(slot) > len(self.total):
            self._grow_slots(max(len(slot), 2 * len(self.total)))
        return out

    def _rows(self, row: np.ndarray, index: np.ndarray, allocate: bool) -> tuple[np.ndarray, np.ndarray]:
        """(pool page, row in page) of sample numbers `index` of slots `row`, taking new pages if asked."""
        lp = (index // self.p) % self.m
        page = self.pages[row, lp]
        if allocate and (page < 0).any():
            missing = np.unique(row[page < 0] * self.m + lp[page < 0])
            need = self.used + len(missing)
            if need > self.ts.shape[0]:  # by a quarter: the pool is most of the buffer's memory
                self._grow_pool(max(need, self.ts.shape[0] + self.ts.shape[0] // 4 + 64))
            self.pages.reshape(-1)[missing] = np.arange(self.used, need, dtype=np.int32)
            self.used = need
            page = self.pages[row, lp]
        return page, index % self.p

    def write(self, slots: np.ndarray, counts: np.ndarray, ts: np.ndarray, seq: np.ndarray,
              vals: np.ndarray) -> None:
        """Append counts[g] samples (grouped, arrival order) to slot slots[g]; only each slot's last W stay."""
        if len(ts) == len(slots) and (counts == 1).all():  # one sample per series: the streaming case
            row, index = slots, self.total[slots]
        else:
            ends = np.cumsum(counts)
            rank = np.arange(len(ts)) - np.repeat(ends - counts, counts)
            keep = rank >= np.repeat(counts, counts) - self.w  # older ones would be overwritten in this batch
            row = np.repeat(slots, counts)[keep]
            index = (np.repeat(self.total[slots], counts) + rank)[keep]
            ts, seq, vals = ts[keep], seq[keep], vals[keep]
        page, pos = self._rows(row, index, allocate=True)
        self.ts[page, pos], self.seq[page, pos], self.vals[page, pos] = ts, seq, vals
        self.total[slots] += counts
        some = counts > 0
        self.last[slots[some]] = self._newest(slots[some])

    def _newest(self, slots: np.ndarray) -> np.ndarray:
        page, pos = self._rows(slots, self.total[slots] - 1, allocate=False)
        return self.ts[page, pos]

    def ordered(self, slot: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last n (≤ held) samples of a slot, oldest first (copies)."""
        total = int(self.total[slot])
        n = min(n, total, self.w)
        index = total - n + np.arange(n)
        page, pos = self._rows(np.full(n, slot), index, allocate=False)
        return self.ts[page, pos], self.seq[page, pos], self.vals[page, pos]

    def held(self, slot: int) -> int:
        return int(min(self.total[slot], self.w))


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

    async def windows(self, series_list: list[str], n: int | None = None) -> list[Samples]:
        """`window` of each series."""
        return [await self.window(s, n) for s in series_list]

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

    async def durability(self) -> str:
        return "memory"

    async def close(self) -> None:
        pass
