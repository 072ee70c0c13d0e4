"""DiskJournal: accepted samples that are not yet in the window buffer, durable on local disk.

While a Redis buffer is unreachable, the xApp acknowledges a report only once it is in this journal: an
append-only file of length-prefixed, CRC-checked records, fsynced before `append` returns. When the buffer
answers again the journal is flushed into it in arrival order and truncated; on start, a journal left by
a crash is read back and flushed before the state is restored, so a restart after `kill -9` loses no
acknowledged sample (README, "Delivery guarantees"). Replaying a batch the buffer already holds is
harmless: the buffer skips samples that are not newer than a series' newest.

File layout: a header line `MS3MJ1 <json>` naming the KPI column order, then records

    <4s magic "MS3R"> <u32 n> <u32 d> <u32 keys bytes> <u32 crc32 of the payload>
    payload: series keys joined by "\\n" (utf-8) | timestamp_ms int64[n] | sequence uint64[n] | values float32[n, d]

A torn last record (crash mid-write, never acknowledged) is dropped when the file is read.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from service.buffer.base import SampleBatch

log = logging.getLogger("ms3m.journal")
_FILE_MAGIC = b"MS3MJ1 "
_RECORD = struct.Struct("<4sIIII")
_RECORD_MAGIC = b"MS3R"


class JournalError(RuntimeError):
    """The journal file cannot be used (written for other KPIs, unreadable header)."""


def encode_batch(batch: SampleBatch) -> bytes:
    """One record: header and payload (see the module docstring)."""
    keys = "\n".join(batch.series).encode()
    values = np.ascontiguousarray(batch.values, np.float32)
    payload = b"".join([keys, np.asarray(batch.timestamp_ms, "<i8").tobytes(),
                        np.asarray(batch.sequence, "<u8").tobytes(), values.astype("<f4").tobytes()])
    return _RECORD.pack(_RECORD_MAGIC, len(batch), values.shape[1], len(keys), zlib.crc32(payload)) + payload


def decode_records(data: bytes, offset: int) -> tuple[list[SampleBatch], int]:
    """Every complete, intact record from `offset`; returns them and the offset after the last good one."""
    out: list[SampleBatch] = []
    while offset + _RECORD.size <= len(data):
        magic, n, d, key_len, crc = _RECORD.unpack_from(data, offset)
        size = key_len + n * 16 + n * d * 4
        start = offset + _RECORD.size
        payload = data[start:start + size]
        if magic != _RECORD_MAGIC or len(payload) < size or zlib.crc32(payload) != crc:
            break
        keys = payload[:key_len].decode().split("\n") if n else []
        ts = np.frombuffer(payload, "<i8", n, key_len).astype(np.int64)
        seq = np.frombuffer(payload, "<u8", n, key_len + 8 * n).astype(np.uint64)
        vals = np.frombuffer(payload, "<f4", n * d, key_len + 16 * n).astype(np.float32).reshape(n, d)
        out.append(SampleBatch(keys, ts, seq, vals))
        offset = start + size
    return out, offset


class DiskJournal:
    """Append-only journal file for one xApp instance. Not thread-safe: the ingest path owns it."""

    def __init__(self, path: Path, kpis: list[str], max_samples: int = 2_000_000, fsync: bool = True):
        self.path = Path(path)
        self.kpis = list(kpis)
        self.max_samples = max_samples
        self.fsync = fsync
        self.batches: collections.deque[SampleBatch] = collections.deque()
        self.samples = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._header = _FILE_MAGIC + json.dumps({"kpis": self.kpis}).encode() + b"\n"
        self._load()
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the journal's lifetime

    def _load(self) -> None:
        """Read records a previous run left behind; start a fresh file when there is none."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._rewrite()
            return
        data = self.path.read_bytes()
        end = data.find(b"\n")
        if not data.startswith(_FILE_MAGIC) or end < 0:
            raise JournalError(f"{self.path} is not an ms3m journal; move it away to start")
        try:
            kpis = json.loads(data[len(_FILE_MAGIC):end])["kpis"]
        except (ValueError, KeyError, TypeError) as e:
            raise JournalError(f"{self.path}: unreadable journal header ({e}); move it away to start") from e
        batches, good = decode_records(data, end + 1)
        if kpis != self.kpis and batches:
            raise JournalError(f"{self.path} holds {sum(map(len, batches))} acknowledged samples of KPIs {kpis}, "
                               f"but this xApp serves {self.kpis}; start once with the bundles that wrote it "
                               "so it is flushed, or move it away (its samples are then lost)")
        if good < len(data):
            log.warning("journal %s: dropping a torn record at byte %d (never acknowledged)", self.path, good)
        self.batches.extend(batches)
        self.samples = sum(len(b) for b in batches)
        if kpis != self.kpis or good < len(data):
            self._rewrite(batches)

    def _rewrite(self, batches: list[SampleBatch] = ()) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(self._header)
            for b in batches:
                fh.write(encode_batch(b))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._sync_dir()

    def _sync_dir(self) -> None:
        if self.fsync:
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def has_room(self, n: int) -> bool:
        return self.samples + n <= self.max_samples

    def append(self, batch: SampleBatch) -> None:
        """Make `batch` durable (written and fsynced). Raises OSError when the disk refuses."""
        self._fh.write(encode_batch(batch))
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.batches.append(batch)
        self.samples += len(batch)

    def take(self, max_samples: int = 10_000) -> list[SampleBatch]:
        """The oldest batches, up to about max_samples (at least one), without removing them."""
        out, n = [], 0
        for b in self.batches:
            if out and n + len(b) > max_samples:
                break
            out.append(b)
            n += len(b)
        return out

    def drop(self, count: int) -> None:
        """Forget the `count` oldest batches (they are in the buffer); the file is truncated once empty."""
        for _ in range(count):
            self.samples -= len(self.batches.popleft())
        if not self.batches:
            self._fh.truncate(0)
            self._fh.seek(0)
            self._fh.write(self._header)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
