"""Online split-conformal prediction intervals per cell, horizon and target.

For every cell slot we keep the last H point forecasts and a ring of the absolute residuals
|actual − forecast made h samples earlier| of its last `window` observed samples, one (H, K) row per sample
(NaN where the actual or the forecast was missing), so a push writes one contiguous row. The interval issued
with a new forecast is point ∓ q, q = the ⌈(n+1)·coverage⌉-th smallest of the slot's n finite residuals for
that (h, k) (finite-sample split conformal). A slot with too few residuals borrows the quantile of a pooled reservoir
(the last `pool_size` residual rows of all cells); when that too is short, q = 0 and the slot is reported
as not calibrated.

Cost: per sample O(H·K) gathers and scatters; the per-slot quantiles are re-sorted every `refresh_every`
samples (staggered over slots), so a slot's quantile lags its residual ring by at most that many samples.
Call `observe` (the sample's realized targets) and then `record` (the forecast made after it) for each
sample of a slot, in that order. Not thread-safe: the engine's worker thread owns it.
"""

from __future__ import annotations

import numpy as np


class ConformalIntervals:
    """Per-slot conformal intervals. Slots are rows 0..capacity-1 managed by the caller (the state table)."""

    def __init__(self, horizon: int, n_targets: int, coverage: float = 0.9, window: int = 128,
                 min_residuals: int = 16, refresh_every: int = 16, pool_size: int | None = None):
        if horizon < 1 or n_targets < 1:
            raise ValueError(f"horizon ({horizon}) and n_targets ({n_targets}) must be ≥ 1")
        if not 2 <= window <= 32_767:
            raise ValueError(f"window must be 2..32767 samples, got {window}")
        if not 1 <= min_residuals <= window:
            raise ValueError(f"min_residuals must be in 1..window ({window}), got {min_residuals}")
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be ≥ 1 sample, got {refresh_every}")
        pool_size = window * 32 if pool_size is None else pool_size
        if pool_size < min_residuals:
            raise ValueError(f"pool_size ({pool_size}) must be ≥ min_residuals ({min_residuals})")
        self.horizon, self.n_targets = H, K = int(horizon), int(n_targets)
        self.window, self.min_residuals = int(window), int(min_residuals)
        self.refresh_every, self.pool_size = int(refresh_every), int(pool_size)
        self._hk = HK = H * K
        self._cap = 0
        # per slot; the (h, k) axis is flattened to h·K + k
        self._res = np.empty((0, self.window, HK), np.float32)  # residual ring, NaN = empty or missing
        self._pushed = np.empty(0, np.int64)  # rows ever pushed; ring position = pushed % window
        self._n = np.empty((0, HK), np.int32)  # finite residuals in the ring per (h, k)
        self._qloc = np.empty((0, HK), np.float32)  # cached local quantile, NaN = not available
        self._fc = np.empty((0, H, H, K), np.float32)  # ring of the last H forecasts (at record count % H)
        self._count = np.empty(0, np.int64)  # forecasts recorded
        self._lo1 = np.empty((0, K), np.float32)  # h=1 interval issued with the last forecast, NaN = none
        self._hi1 = np.empty((0, K), np.float32)
        # pooled reservoir over all slots: one row per (h, k), the last pool_size residual rows (NaN = missing)
        self._pool = np.full((HK, self.pool_size), np.nan, np.float32)
        self._pool_pos = 0
        self._pool_new = np.zeros(HK, np.int64)  # finite residuals pushed per (h, k) since the last refresh
        self._qpool = np.full(HK, np.nan, np.float32)
        # realized h=1 coverage, exponentially weighted over the last ~COVERAGE_MEMORY observations per target
        self._cov_n = np.zeros(K, np.float64)
        self._cov_in = np.zeros(K, np.float64)
        self.set_coverage(coverage)

    COVERAGE_MEMORY = 1024  # observations (all cells together) behind recent_coverage()

    # -- configuration ------------------------------------------------------------------------------
    def set_coverage(self, coverage: float) -> None:
        """Nominal coverage in (0, 1); cached quantiles are recomputed at each slot's next record()."""
        c = float(coverage)
        if not 0.0 < c < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        self.coverage = c
        n = np.arange(self.window + 1)
        self._kth = self._rank(n)  # 0-based index of the conformal quantile among n sorted residuals
        self._enough = (n >= self.min_residuals) & (self._kth < n)  # local quantile finite for n residuals
        self._qloc[:] = np.nan
        self._qpool[:] = np.nan
        self._pool_new[:] = 1  # force a pooled refresh at the next record()

    def _rank(self, n: np.ndarray) -> np.ndarray:
        return np.ceil((n + 1) * self.coverage - 1e-9).astype(np.int64) - 1

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def memory_bytes_per_cell(self) -> int:
        """Bytes of per-slot arrays: residual ring W·H·K·4 + forecast ring H·H·K·4 + counters, cached
        quantiles and the last h=1 interval (H=8, K=2, W=128: 8,864 B ≈ 8.7 KiB). The pooled reservoir
        (H·K·pool_size·4 B, 256 KiB by default) is shared by all slots and not counted."""
        arrays = (self._res, self._pushed, self._n, self._qloc, self._fc, self._count, self._lo1, self._hi1)
        return sum(a.itemsize * int(np.prod(a.shape[1:])) for a in arrays)

    # -- slots ------------------------------------------------------------------------------------------
    def ensure_capacity(self, n: int) -> None:
        """Grow to at least n slots (exactly n: the caller's table decides the growth policy)."""
        old = self._cap
        if n <= old:
            return
        add, H, K, HK = n - old, self.horizon, self.n_targets, self._hk

        def grow(a, fill, shape):
            return np.concatenate([a, np.full((add, *shape), fill, a.dtype)])

        self._res = grow(self._res, np.nan, (self.window, HK))
        self._pushed = grow(self._pushed, 0, ())
        self._n = grow(self._n, 0, (HK,))
        self._qloc = grow(self._qloc, np.nan, (HK,))
        self._fc = grow(self._fc, np.nan, (H, H, K))
        self._count = grow(self._count, 0, ())
        self._lo1 = grow(self._lo1, np.nan, (K,))
        self._hi1 = grow(self._hi1, np.nan, (K,))
        self._cap = n

    def reset(self, slots: np.ndarray) -> None:
        """Forget everything about `slots` (reassigned to new cells); the pooled reservoir is kept."""
        slots = np.asarray(slots, np.int64)
        self._res[slots] = np.nan
        self._pushed[slots] = 0
        self._n[slots] = 0
        self._qloc[slots] = np.nan
        self._fc[slots] = np.nan
        self._count[slots] = 0
        self._lo1[slots] = np.nan
        self._hi1[slots] = np.nan

    # -- the stream ---------------------------------------------------------------------------------------
    def observe(self, slots: np.ndarray, actual: np.ndarray) -> np.ndarray:
        """Realized targets of the new sample: slots (N,) distinct, actual (N, K) float, NaN = missing.

        Pushes the residuals |actual − forecast made h samples ago| (h = 1..H) as one ring row (slots with
        none push nothing). Returns outside (N, K) bool: the actual lies outside the h=1 interval issued with
        the previous forecast (False when none was issued, it was not calibrated, or the actual is missing)."""
        slots = np.asarray(slots, np.int64)
        a = np.asarray(actual, np.float32)
        N, H, K = len(slots), self.horizon, self.n_targets
        if a.shape != (N, K):
            raise ValueError(f"actual has shape {a.shape}, expected ({N}, {K})")
        if N == 0:
            return np.zeros((0, K), bool)
        hs = np.arange(1, H + 1)
        made = self._count[slots][:, None] - hs  # (N, H) record index of the forecast for this sample
        rows = (made % H) * H + (hs - 1) + (slots * (H * H))[:, None]  # rows of the (cap·H·H, K) view
        pred = np.take(self._fc.reshape(-1, K), rows, axis=0)  # (N, H, K); NaN if never made (made < 0)
        r = np.abs(a[:, None, :] - pred).reshape(N, self._hk)
        ok = ~np.isnan(r)
        some = ok.any(axis=1)
        s = slots
        if not some.all():
            s, r, ok = slots[some], r[some], ok[some]
        if len(s):
            pushed = self._pushed[s]
            at = pushed % self.window
            self._n[s] += ok.astype(np.int32) - ~np.isnan(self._res[s, at])  # minus the row it replaces
            self._res[s, at] = r
            self._pushed[s] = pushed + 1
            self._push_pool(r, ok)
        lo, hi = self._lo1[slots], self._hi1[slots]
        outside = (a < lo) | (a > hi)  # NaN on either side compares False
        scored = ~np.isnan(lo) & ~np.isnan(a)  # (N, K) an interval was issued and the value realized
        m = scored.sum(axis=0)
        decay = (1.0 - 1.0 / self.COVERAGE_MEMORY) ** m
        self._cov_n = self._cov_n * decay + m
        self._cov_in = self._cov_in * decay + (scored & ~outside).sum(axis=0)
        return outside

    def record(self, slots: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Store the forecasts made after the sample: point (N, H, K). Returns (lower, upper) (N, H, K)
        float32 = point ∓ q and calibrated (N,) bool: every (h, k) had a local or pooled quantile (else
        q = 0 there)."""
        slots = np.asarray(slots, np.int64)
        p = np.asarray(point, np.float32)
        N, H, K = len(slots), self.horizon, self.n_targets
        if p.shape != (N, H, K):
            raise ValueError(f"point has shape {p.shape}, expected ({N}, {H}, {K})")
        count = self._count[slots]
        q = self._refresh_local(slots, count)
        self._refresh_pool()
        q = np.where(np.isnan(q), self._qpool, q)
        cal = ~np.isnan(q)
        q = np.where(cal, q, np.float32(0)).reshape(N, H, K)
        lower, upper = p - q, p + q
        self._fc[slots, count % H] = p
        self._count[slots] = count + 1
        cal1 = cal[:, :K]
        self._lo1[slots] = np.where(cal1, lower[:, 0], np.nan)
        self._hi1[slots] = np.where(cal1, upper[:, 0], np.nan)
        return lower, upper, cal.all(axis=1)

    # -- what the service reports --------------------------------------------------------------------------
    def recent_mae(self) -> np.ndarray:
        """(H, K) mean absolute error of the forecasts h = 1..H steps ahead over the pooled reservoir (the last
        pool_size residual rows of all cells), in the targets' units; NaN where none was realized yet. Read from
        another thread it may mix rows of two pushes: a monitoring figure, not a calibration input."""
        pool = self._pool.copy()
        n = np.count_nonzero(~np.isnan(pool), axis=1)
        total = np.nansum(pool, axis=1)
        mae = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        return mae.reshape(self.horizon, self.n_targets).astype(np.float64)

    def recent_coverage(self) -> np.ndarray:
        """(K,) fraction of realized values inside the h=1 interval issued with the forecast before them,
        exponentially weighted over the last ~COVERAGE_MEMORY scored observations; NaN before the first."""
        n, inside = self._cov_n.copy(), self._cov_in.copy()
        return np.where(n > 0, inside / np.maximum(n, 1e-300), np.nan)

    # -- quantiles ----------------------------------------------------------------------------------------
    def _refresh_local(self, slots: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Re-sort the rings of slots whose turn it is (staggered), or that just got enough residuals; returns
        the local quantiles of `slots` (N, H·K), NaN where not available."""
        n, q = self._n[slots], self._qloc[slots]  # (N, H·K)
        due = (count + slots) % self.refresh_every == 0
        due |= (np.isnan(q) & self._enough[n]).any(axis=1)
        if due.any():
            s, n = slots[due], n[due]
            ring = np.ascontiguousarray(self._res[s].transpose(0, 2, 1))  # (M, H·K, W)
            ring.sort(axis=2)  # NaN last
            qs = np.take_along_axis(ring, np.minimum(self._kth[n], self.window - 1)[:, :, None], axis=2)[:, :, 0]
            q[due] = self._qloc[s] = np.where(self._enough[n], qs, np.nan)
        return q

    def _push_pool(self, res: np.ndarray, ok: np.ndarray) -> None:
        """Append residual rows (m, H·K) (NaN = missing; ok = finite) to the pooled ring, keeping the last
        pool_size; a batch larger than that contributes an evenly strided subsample of its rows."""
        P = self.pool_size
        if len(res) > P:
            step = -(-len(res) // P)
            res, ok = res[::step], ok[::step]
        idx = (self._pool_pos + np.arange(len(res))) % P
        self._pool[:, idx] = res.T
        self._pool_pos = int((self._pool_pos + len(res)) % P)
        self._pool_new += ok.sum(axis=0)

    def _refresh_pool(self) -> None:
        """Recompute the pooled quantiles once a quarter of the reservoir is new, or when a missing one may now
        exist."""
        new = self._pool_new
        if not ((new >= self.pool_size // 4).any() or (np.isnan(self._qpool) & (new > 0)).any()):
            return
        ring = np.sort(self._pool, axis=1)  # NaN last
        n = np.count_nonzero(~np.isnan(ring), axis=1)
        k = self._rank(n)
        q = ring[np.arange(self._hk), np.clip(k, 0, self.pool_size - 1)]
        self._qpool = np.where((n >= self.min_residuals) & (k < n), q, np.nan).astype(np.float32)
        self._pool_new[:] = 0
