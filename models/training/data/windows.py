"""Training and evaluation windows over a (normalized) SeriesSet, and the dataset splits.

A window of `length` steps holds the inputs x (length, D) and, at every position t of the window, the
targets at t+1 … t+H, y (length, H, K) — the layout the streaming forecasters produce (B, L, H, K).
Inputs are forward-filled (a missing value repeats the last observed one; leading gaps are 0, the mean
after z-scoring) and come with their observation mask; a target is masked (y_mask False, y = 0) where it is
missing or lies past the end of its series. Windows never cross series boundaries.

Everything here is numpy (float32 values, bool masks, int64 indices); the trainer converts to tensors.
Normalize first (`ZScore.fit` on the training split, then `transform`): these functions do not scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from models.training.series import SeriesSet


class WindowBatch(NamedTuple):
    """A batch of windows; B windows of `length` steps, D inputs, H horizons, K targets."""

    x: np.ndarray  # (B, L, D) float32 inputs, forward-filled
    x_mask: np.ndarray  # (B, L, D) bool, True where the input was observed
    y: np.ndarray  # (B, L, H, K) float32, y[b, t, h-1] = target at step t + h (0 where masked)
    y_mask: np.ndarray  # (B, L, H, K) bool, False where the target is missing or past the series end
    origin: np.ndarray  # (B, 2) int64: (series index, start step) of each window


def forward_fill(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., T, D) with NaN → (filled float32, mask bool): NaN carried forward along T, leading NaN → 0."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim < 2:
        raise ValueError(f"forward_fill: values must be (..., T, D), got shape {values.shape}")
    mask = ~np.isnan(values)
    T = values.shape[-2]
    last = np.where(mask, np.arange(T).reshape(T, 1), -1)  # index of the latest observation so far
    last = np.maximum.accumulate(last, axis=-2)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=-2)
    return np.where(last >= 0, filled, np.float32(0.0)), mask


def resolve_targets(series_set: SeriesSet, target_index: int | str | Sequence[int | str]) -> tuple[int, ...]:
    """KPI indices from an index, a KPI name, or a sequence of them; ValueError / KeyError if invalid."""
    items = [target_index] if isinstance(target_index, int | str | np.integer) else list(target_index)
    if not items:
        raise ValueError("target_index: at least one target KPI is needed")
    out = []
    for t in items:
        i = series_set.index(t) if isinstance(t, str) else int(t)
        if not 0 <= i < len(series_set.kpis):
            raise ValueError(f"target_index {t} out of range for {len(series_set.kpis)} KPIs {series_set.kpis}")
        out.append(i)
    return tuple(out)


class _Flat:
    """All series back to back, each followed by H padding rows, so every window is one slice.

    Row r of series i lives at offsets[i] + r; inputs pad with 0 (never read), targets with NaN (masked).
    """

    def __init__(self, series_set: SeriesSet, length: int, horizon: int, target_index) -> None:
        if length < 1 or horizon < 1:
            raise ValueError(f"windows: length and horizon must be >= 1, got {length}, {horizon}")
        self.length, self.horizon = int(length), int(horizon)
        self.targets = resolve_targets(series_set, target_index)
        self.lengths = np.array([len(s) for s in series_set.series], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths + horizon)[:-1]]).astype(np.int64)
        D, K = len(series_set.kpis), len(self.targets)
        total = int((self.lengths + horizon).sum())
        self.x = np.zeros((total, D), dtype=np.float32)
        self.x_mask = np.zeros((total, D), dtype=bool)
        self.y = np.full((total, K), np.nan, dtype=np.float32)
        for s, off in zip(series_set.series, self.offsets):
            filled, mask = forward_fill(s.values)
            self.x[off:off + len(s)] = filled
            self.x_mask[off:off + len(s)] = mask
            self.y[off:off + len(s)] = s.values[:, list(self.targets)]
        self._steps = np.arange(self.length)
        self._ahead = self._steps[:, None] + np.arange(1, self.horizon + 1)  # (L, H)

    def gather(self, series: np.ndarray, starts: np.ndarray) -> WindowBatch:
        first = self.offsets[series] + starts  # (B,)
        rows = first[:, None] + self._steps  # (B, L)
        y = self.y[first[:, None, None] + self._ahead]  # (B, L, H, K)
        y_mask = ~np.isnan(y)
        return WindowBatch(self.x[rows], self.x_mask[rows], np.where(y_mask, y, np.float32(0.0)), y_mask,
                           np.stack([series, starts], axis=1).astype(np.int64))


class WindowSampler:
    """Random training windows: every start of every series long enough equally likely (with replacement).

    Series shorter than `length` give no windows; ValueError if none is long enough. Deterministic for a
    seed: the same sequence of sample() calls gives the same batches.
    """

    def __init__(self, series_set: SeriesSet, length: int, horizon: int,
                 target_index: int | str | Sequence[int | str], seed: int = 0) -> None:
        self.flat = _Flat(series_set, length, horizon, target_index)
        self.length, self.horizon, self.targets = self.flat.length, self.flat.horizon, self.flat.targets
        self.starts_per_series = np.maximum(self.flat.lengths - self.length + 1, 0)  # (S,)
        self.n_windows = int(self.starts_per_series.sum())
        if self.n_windows == 0:
            longest = int(self.flat.lengths.max(initial=0))
            raise ValueError(f"WindowSampler: no series has {length} steps (the longest has {longest})")
        self.window_ends = np.cumsum(self.starts_per_series)  # (S,) windows of series 0..i together
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` random windows as (series (n,), start (n,)), every window equally likely."""
        k = self.rng.integers(0, self.n_windows, size=n)
        series = np.searchsorted(self.window_ends, k, side="right")
        return series, k - (self.window_ends - self.starts_per_series)[series]

    def sample(self, batch_size: int) -> WindowBatch:
        """`batch_size` random windows."""
        return self.flat.gather(*self.draw(batch_size))


class Lanes:
    """Truncated-BPTT batches of `batch` lanes: lane b walks one series in consecutive windows; a lane whose
    series has no further full window restarts at a random window of a random series (reported as fresh).

    `series`, `pos` (start of the lane's next window) and `fresh` are (batch,) arrays, saved with checkpoints.
    """

    def __init__(self, sampler: WindowSampler, batch: int):
        self.sampler = sampler
        self.series = np.zeros(batch, np.int64)
        self.pos = np.zeros(batch, np.int64)
        self.fresh = np.ones(batch, bool)
        self.restart(np.arange(batch))

    def restart(self, lanes: np.ndarray) -> None:
        """Move `lanes` to random windows and mark them fresh."""
        self.series[lanes], self.pos[lanes] = self.sampler.draw(len(lanes))
        self.fresh[lanes] = True

    def next(self) -> tuple[WindowBatch, np.ndarray]:
        """The next window of every lane and which lanes start fresh (B,) bool (their state starts at zero)."""
        flat = self.sampler.flat
        batch = flat.gather(self.series, self.pos)
        fresh = self.fresh.copy()
        L = self.sampler.length
        self.pos += L
        self.fresh[:] = False
        done = np.flatnonzero(self.pos + L > flat.lengths[self.series])
        if done.size:
            self.restart(done)
        return batch, fresh


class EvalWindows:
    """Deterministic sliding windows (starts 0, stride, 2·stride, … ≤ T − length per series), in batches.

    len() is the number of windows; iterating yields WindowBatch chunks of at most batch_size in order
    (series by series); all() gives them in one batch (mind the memory: N·L·H·K targets).
    """

    def __init__(self, series_set: SeriesSet, length: int, horizon: int,
                 target_index: int | str | Sequence[int | str], stride: int = 1, batch_size: int = 256) -> None:
        if stride < 1 or batch_size < 1:
            raise ValueError(f"eval_windows: stride and batch_size must be >= 1, got {stride}, {batch_size}")
        self.flat = _Flat(series_set, length, horizon, target_index)
        self.length, self.horizon, self.targets = self.flat.length, self.flat.horizon, self.flat.targets
        self.batch_size = int(batch_size)
        per = [np.arange(0, max(int(T) - self.length + 1, 0), stride) for T in self.flat.lengths]
        self.origins = np.zeros((0, 2), np.int64) if not per else np.concatenate(
            [np.stack([np.full(len(p), i), p], axis=1) for i, p in enumerate(per)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.origins)

    def __iter__(self) -> Iterator[WindowBatch]:
        for a in range(0, len(self), self.batch_size):
            o = self.origins[a:a + self.batch_size]
            yield self.flat.gather(o[:, 0], o[:, 1])

    def all(self) -> WindowBatch:
        return self.flat.gather(self.origins[:, 0], self.origins[:, 1])


def eval_windows(series_set: SeriesSet, length: int, horizon: int, target_index: int | str | Sequence[int | str],
                 stride: int = 1, batch_size: int = 256) -> EvalWindows:
    """All sliding windows with the given stride (stride 1: every window), iterable in batches."""
    return EvalWindows(series_set, length, horizon, target_index, stride, batch_size)


def split_by_time(series_set: SeriesSet, val_fraction: float, test_fraction: float,
                  min_length: int = 1) -> tuple[SeriesSet, SeriesSet, SeriesSet]:
    """Each series cut into contiguous train / val / test blocks, in that order (test last).

    Block sizes round(T·fraction) for val and test, the rest train; blocks shorter than min_length are left
    out of their split. Series keep their names (the three sets hold different time ranges of them).
    """
    _check_fractions(val_fraction, test_fraction)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for s in series_set.series:
        T = len(s)
        n_test, n_val = round(T * test_fraction), round(T * val_fraction)
        bounds = {"train": (0, T - n_val - n_test), "val": (T - n_val - n_test, T - n_test), "test": (T - n_test, T)}
        for split, (a, b) in bounds.items():
            if b - a >= max(min_length, 1):
                parts[split].append(s.slice(a, b))
    train, val, test = (SeriesSet(list(series_set.kpis), series_set.period_ms, parts[k],
                                  {**series_set.source, "split": k, "split_by": "time"})
                        for k in ("train", "val", "test"))
    return train, val, test


def split_by_series(series_set: SeriesSet, val_fraction: float, test_fraction: float, seed: int = 0, *,
                    group: Callable[[str], str] | None = None,
                    stratify: Callable[[str], str] | None = None) -> tuple[SeriesSet, SeriesSet, SeriesSet]:
    """(train, val, test) by whole series; deterministic for a seed and independent of the series order.

    group: series name → unit key (series with the same key go to the same split; default: each series);
    stratify: unit key → stratum; each stratum is split in the same proportions, as nearly as whole units
    allow (largest-remainder rounding to hit round(N·fraction) units overall, keeping at least one train
    unit per stratum where possible). A positive fraction gets at least one unit when there are 3 or more.
    """
    _check_fractions(val_fraction, test_fraction)
    group = group or (lambda name: name)
    stratify = stratify or (lambda key: "")
    units = sorted({group(s.name) for s in series_set.series})
    strata: dict[str, list[str]] = {}
    for u in units:
        strata.setdefault(stratify(u), []).append(u)
    keys = sorted(strata)
    sizes = np.array([len(strata[k]) for k in keys])
    N = int(sizes.sum())

    def target(fraction: float, room: int) -> int:
        n = round(N * fraction)
        if fraction > 0 and n == 0 and N >= 3:
            n = 1
        return min(n, room)

    n_test = _allocate(sizes, test_fraction, target(test_fraction, N - 1), sizes - 1, sizes)
    n_val = _allocate(sizes, val_fraction, target(val_fraction, N - 1 - int(n_test.sum())), sizes - 1 - n_test,
                      sizes - n_test)
    rng = np.random.default_rng(seed)
    assign: dict[str, str] = {}
    for k, nt, nv in zip(keys, n_test, n_val):
        order = [strata[k][i] for i in rng.permutation(len(strata[k]))]
        for j, u in enumerate(order):
            assign[u] = "test" if j < nt else "val" if j < nt + nv else "train"
    names = {split: [s.name for s in series_set.series if assign[group(s.name)] == split]
             for split in ("train", "val", "test")}
    out = []
    for split in ("train", "val", "test"):
        sub = series_set.subset(names[split])
        sub.source = {**series_set.source, "split": split, "split_by": "series", "seed": seed}
        out.append(sub)
    return out[0], out[1], out[2]


def _allocate(sizes: np.ndarray, fraction: float, total: int, soft_cap: np.ndarray, hard_cap: np.ndarray) -> np.ndarray:
    """Whole units per stratum summing to `total` (as far as hard_cap allows): floor(size·fraction), then
    one more to the strata with the largest remainders; up to soft_cap (which keeps a train unit per
    stratum) before any stratum goes up to hard_cap (the units it has left)."""
    soft_cap, hard_cap = np.maximum(soft_cap, 0), np.maximum(hard_cap, 0)
    quota = sizes * fraction
    n = np.minimum(np.floor(quota).astype(np.int64), soft_cap)
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    for cap in (soft_cap, hard_cap):
        while n.sum() < total and (n < cap).any():
            for i in order:
                if n.sum() < total and n[i] < cap[i]:
                    n[i] += 1
    return n


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= f < 1.0) or math.isnan(f):
            raise ValueError(f"split: {name} must be in [0, 1), got {f!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"split: val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
