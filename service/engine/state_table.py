"""Per-model table of recurrent states for many cells, in preallocated arrays.

Each state tensor of a model is one array of shape (capacity, *shape); a cell owns one slot (row).
The engine gathers the slots of a batch, runs one batched step, and scatters the new states back.
Slots of cells idle for at least `min_idle_periods` reporting periods may be evicted, least recently
seen first, when the table is full; a cell that has been seen more recently is never evicted.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

from service.runtime.rows import take_rows

_MAGIC = b"MS3S"
_HEADER = struct.Struct("<4sBII")  # magic, version, number of float32 values, identity of the model (crc32)
_VERSION = 2


class TableFullError(RuntimeError):
    """No free slot and no cell idle long enough to evict."""


class StateTable:
    """States of many cells for one model. Not thread-safe: the engine's inference thread owns it."""

    def __init__(
        self,
        spec: Sequence[tuple[str, Sequence[int]]],
        capacity: int = 1024,
        max_cells: int = 1_000_000,
        min_idle_periods: int = 3,
        dtype=np.float32,
        identity: bytes | None = None,
    ):
        if capacity < 1 or max_cells < 1:
            raise ValueError("capacity and max_cells must be ≥ 1")
        # records carry crc32(identity): a snapshot of another model (or version, or state layout) is refused;
        # a table built without one (a reader, a test) accepts any
        self.identity = None if identity is None else zlib.crc32(identity)
        self.names = [name for name, _ in spec]
        self.shapes = [tuple(int(d) for d in shape) for _, shape in spec]
        self.dtype = np.dtype(dtype)
        self.max_cells = max_cells
        self.min_idle_periods = min_idle_periods
        self._floats = [int(np.prod(s)) if s else 1 for s in self.shapes]
        self.floats_per_cell = sum(self._floats)
        self._capacity = 0
        self.arrays: list[np.ndarray] = []
        self.last_seen = np.zeros(0, dtype=np.int64)  # ms, per slot
        self._slot_of: dict[str, int] = {}
        self._cell_of: list[str | None] = []
        self._free: list[int] = []
        self._grow(min(capacity, max_cells))

    # -- capacity ------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, cell: str) -> bool:
        return cell in self._slot_of

    def cells(self) -> list[str]:
        return list(self._slot_of)

    @property
    def bytes_per_cell(self) -> int:
        return self.floats_per_cell * self.dtype.itemsize

    def _grow(self, new_capacity: int) -> None:
        old = self._capacity
        self.arrays = [
            np.concatenate([a, np.zeros((new_capacity - old, *s), self.dtype)]) if old else
            np.zeros((new_capacity, *s), self.dtype)
            for a, s in zip(self.arrays or [None] * len(self.shapes), self.shapes)
        ]
        self.last_seen = np.concatenate([self.last_seen, np.zeros(new_capacity - old, np.int64)])
        self._cell_of.extend([None] * (new_capacity - old))
        self._free.extend(range(new_capacity - 1, old - 1, -1))  # pop() hands out low slots first
        self._capacity = new_capacity

    # -- slots ---------------------------------------------------------------------------------
    def slot(self, cell: str) -> int | None:
        return self._slot_of.get(cell)

    def slots_for(self, cells: Sequence[str], now_ms: int, period_ms: int | None = None,
                  new: list[int] | None = None) -> np.ndarray:
        """Slots of `cells` (allocating zero states for new ones), marking them seen at `now_ms`; newly
        allocated slots are appended to `new` when given.

        Raises TableFullError when a new cell needs a slot, the table is at max_cells and no cell has
        been idle for min_idle_periods × period_ms."""
        out = np.empty(len(cells), dtype=np.int64)
        get = self._slot_of.get
        for i, cell in enumerate(cells):
            s = get(cell)
            if s is None:
                s = self._allocate(cell, now_ms, period_ms, protect=cells)
                if new is not None:
                    new.append(s)
            out[i] = s
        self.last_seen[out] = now_ms
        return out

    def _allocate(self, cell: str, now_ms: int, period_ms: int | None, protect: Sequence[str]) -> int:
        if not self._free:
            if self._capacity < self.max_cells:
                self._grow(min(self.max_cells, max(2 * self._capacity, 1)))
            else:
                evicted = self.evict_idle(now_ms, period_ms, limit=1, protect=set(protect))
                if not evicted:
                    raise TableFullError(
                        f"state table full ({self.max_cells} cells) and no cell idle for "
                        f"{self.min_idle_periods} reporting periods"
                    )
        s = self._free.pop()
        self._slot_of[cell] = s
        self._cell_of[s] = cell
        for a in self.arrays:
            a[s] = 0
        return s

    def evict_idle(
        self, now_ms: int, period_ms: int | None, limit: int | None = None, protect: Iterable[str] = ()
    ) -> list[str]:
        """Evict cells not seen for ≥ min_idle_periods × period_ms, least recently seen first."""
        if period_ms is None or not self._slot_of:
            return []
        protect = set(protect)
        used = np.fromiter(self._slot_of.values(), dtype=np.int64)
        idle = used[now_ms - self.last_seen[used] >= self.min_idle_periods * period_ms]
        idle = idle[np.argsort(self.last_seen[idle], kind="stable")]
        evicted = []
        for s in idle:
            cell = self._cell_of[s]
            if cell in protect:
                continue
            self.remove(cell)
            evicted.append(cell)
            if limit is not None and len(evicted) >= limit:
                break
        return evicted

    def remove(self, cell: str) -> None:
        s = self._slot_of.pop(cell)
        self._cell_of[s] = None
        self._free.append(s)

    # -- batched access ------------------------------------------------------------------------
    def gather(self, slots: np.ndarray | slice) -> list[np.ndarray]:
        """Copies of the states at `slots` (or their row_index): one (n, *shape) array per state tensor."""
        return [take_rows(a, slots) for a in self.arrays]

    def scatter(self, slots: np.ndarray | slice, states: Sequence[np.ndarray | None]) -> None:
        """Write (n, *shape) states back to `slots` (distinct, or their row_index); None leaves a tensor as it
        is."""
        for a, s in zip(self.arrays, states):
            if s is not None:
                a[slots] = s

    def get(self, cell: str) -> list[np.ndarray] | None:
        s = self._slot_of.get(cell)
        return None if s is None else [a[s].copy() for a in self.arrays]

    def set(self, cell: str, states: Sequence[np.ndarray], now_ms: int = 0) -> None:
        s = self.slots_for([cell], now_ms)[0]
        for a, v, shape in zip(self.arrays, states, self.shapes):
            v = np.asarray(v, dtype=self.dtype)
            if v.shape != shape:
                raise ValueError(f"state shape {v.shape} does not match {shape}")
            a[s] = v

    # -- serialization (Redis snapshots) -------------------------------------------------------
    def pack(self, cell: str) -> bytes:
        """One cell's state as bytes: a small header, then every tensor as little-endian float32."""
        s = self._slot_of[cell]
        body = b"".join(np.ascontiguousarray(a[s], dtype="<f4").tobytes() for a in self.arrays)
        return self._header() + body

    def unpack(self, data: bytes) -> list[np.ndarray]:
        """Inverse of pack; raises ValueError on a foreign or mismatched record."""
        if len(data) < _HEADER.size:
            raise ValueError("state record too short")
        magic, version, n, identity = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError("not a state record of this format")
        if self.identity is not None and identity != self.identity:
            raise ValueError("state record of another model (bundle version or state layout)")
        if n != self.floats_per_cell or len(data) != _HEADER.size + 4 * n:
            raise ValueError(f"state record holds {n} values, this model's state has {self.floats_per_cell}")
        flat = np.frombuffer(data, dtype="<f4", offset=_HEADER.size).astype(self.dtype)
        out, i = [], 0
        for k, shape in zip(self._floats, self.shapes):
            out.append(flat[i : i + k].reshape(shape).copy())
            i += k
        return out

    def pack_slots(self, slots: np.ndarray) -> list[bytes]:
        """pack() for many slots at once (vectorized copy, one bytes object per slot)."""
        n = len(slots)
        if n == 0:
            return []
        flat = np.concatenate([a[slots].reshape(n, -1) for a in self.arrays], axis=1).astype("<f4", copy=False)
        header = self._header()
        return [header + row.tobytes() for row in flat]

    def _header(self) -> bytes:
        return _HEADER.pack(_MAGIC, _VERSION, self.floats_per_cell, self.identity or 0)

    def cell_of(self, slot: int) -> str | None:
        return self._cell_of[slot]

    def pack_many(self, cells: Iterable[str]) -> dict[str, bytes]:
        return {c: self.pack(c) for c in cells if c in self._slot_of}

    def restore(self, records: dict[str, bytes], now_ms: int = 0) -> None:
        for cell, data in records.items():
            self.set(cell, self.unpack(data), now_ms)

