"""The window buffer contract (docs/architecture.md, "Wire and storage formats").

Every accepted KPI sample of a series (a cell, optionally narrowed to a UE and/or a slice) is appended
to that series' window, which keeps exactly the last `window_length` samples. A sample is identified by
its timestamp (ms): timestamps strictly increase per series (ingest enforces it), so the id of the last
sample applied to a model state is that sample's timestamp. Values are float32 in the service's KPI
order (NaN = absent); the E2 sequence number travels with the sample for de-duplication after restarts.

Model state snapshots (bytes per series, opaque to the buffer) are stored per model together with the
timestamp of the last sample they include, so a restart restores them and replays only newer samples.

Implementations: MemoryWindowBuffer (embedded, default without Redis) and RedisWindowBuffer (keys in the
O-RAN SC SDL form `{namespace},key`; one round trip per appended batch). Methods raise BufferUnavailable
when the backing store cannot be reached; callers decide (journal, retry, report not-ready).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class BufferUnavailable(RuntimeError):
    """The backing store cannot be reached (connection refused, timeout, loading, read-only …)."""


@dataclass
class SampleBatch:
    """n samples, in arrival order; several may belong to one series (then in increasing time)."""

    series: list[str]  # series keys (see series_key)
    timestamp_ms: np.ndarray  # (n,) int64
    sequence: np.ndarray  # (n,) uint64, E2 sequence number
    values: np.ndarray  # (n, D) float32, the service's KPI order, NaN = absent

    def __len__(self) -> int:
        return len(self.series)

    @classmethod
    def empty(cls, d: int) -> SampleBatch:
        return cls([], np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros((0, d), np.float32))

    @classmethod
    def concat(cls, batches: list[SampleBatch]) -> SampleBatch:
        if len(batches) == 1:
            return batches[0]
        return cls([k for b in batches for k in b.series], np.concatenate([b.timestamp_ms for b in batches]),
                   np.concatenate([b.sequence for b in batches]), np.concatenate([b.values for b in batches]))

    def take(self, index: np.ndarray | list[int]) -> SampleBatch:
        idx = np.asarray(index, dtype=np.int64)
        return SampleBatch([self.series[i] for i in idx], self.timestamp_ms[idx], self.sequence[idx],
                           self.values[idx])


@dataclass
class Samples:
    """The samples of one series, oldest first."""

    timestamp_ms: np.ndarray  # (n,) int64
    sequence: np.ndarray  # (n,) uint64
    values: np.ndarray  # (n, D) float32

    def __len__(self) -> int:
        return len(self.timestamp_ms)

    @classmethod
    def empty(cls, d: int) -> Samples:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros((0, d), np.float32))

    def take(self, index: np.ndarray) -> Samples:
        return Samples(self.timestamp_ms[index], self.sequence[index], self.values[index])


# WindowBuffer.durability(): the modes that keep an acknowledged sample when the store restarts (README,
# "Delivery guarantees"), and the ones that do not
DURABLE_MODES = ("aof-always", "aof-everysec")
DURABILITY_MODES = (*DURABLE_MODES, "aof-no", "rdb-only", "none", "memory", "unknown")


class WindowBuffer(Protocol):
    """What the service needs from a window buffer. All methods are coroutines (asyncio)."""

    kpis: list[str]  # the KPI order of `values` (D names)
    window_length: int

    async def append(self, batch: SampleBatch) -> None:
        """Append all samples; durable when this returns. Windows keep exactly the last window_length."""

    async def window(self, series: str, n: int | None = None) -> Samples:
        """The last n (default: all kept) samples of a series, oldest first; empty if unknown."""

    async def windows(self, series_list: list[str], n: int | None = None) -> list[Samples]:
        """`window` of each series, in one round trip where the store allows."""

    async def since(self, series: str, after_ms: int) -> Samples:
        """The kept samples of a series with timestamp > after_ms, oldest first."""

    async def last(self, series_list: list[str]) -> dict[str, tuple[int, int]]:
        """(timestamp_ms, sequence) of the newest sample of each known series among series_list."""

    async def series(self) -> list[str]:
        """Every series with a window."""

    async def save_snapshots(self, model: str, records: dict[str, tuple[int, bytes]]) -> None:
        """Store state snapshots of `model`: series → (timestamp of the last sample included, bytes)."""

    async def load_snapshots(self, model: str) -> dict[str, tuple[int, bytes]]:
        """All snapshots of `model`."""

    async def ping(self) -> bool:
        """True when the backing store answers."""

    async def durability(self) -> str:
        """How the store keeps acknowledged samples across its own restart (DURABILITY_MODES): "aof-always",
        "aof-everysec", "aof-no", "rdb-only", "none", "memory" (this process only) or "unknown"."""

    async def close(self) -> None: ...
