"""Argument checks both window buffers share, so the memory and Redis buffers refuse the same input with the
same ValueError."""

from __future__ import annotations

import re
from collections.abc import Container

import numpy as np

from service.buffer.base import SampleBatch

MAX_SERIES_KEY_CHARS = 512
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
_INT64_MAX = np.iinfo(np.int64).max


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
