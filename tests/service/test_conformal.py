"""Online conformal intervals per cell (service/engine/conformal.py): coverage, finite-sample ranks, fallbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.engine.conformal import ConformalIntervals
from tests.service.helpers import ar1_stream


def run_naive(ci: ConformalIntervals, stream: np.ndarray, slots: np.ndarray, warmup: int):
    """Naive forecaster (last value for every horizon). Returns the h=1 inside fraction from observe() after
    warm-up, and the h=H inside fraction from the recorded intervals."""
    H = ci.horizon
    inside1, insideH, issued = [], [], []
    for t, x in enumerate(stream):
        out = ci.observe(slots, x)
        if t >= warmup:
            inside1.append(1.0 - out.mean())
            if t - H >= warmup:
                lo, hi = issued[t - H]
                insideH.append(((x >= lo) & (x <= hi)).mean())
        lower, upper, _ = ci.record(slots, np.repeat(x[:, None, :], H, axis=1))
        issued.append((lower[:, H - 1], upper[:, H - 1]))
    return float(np.mean(inside1)), float(np.mean(insideH))


def test_conformal_config_is_validated():
    with pytest.raises(ValueError, match="coverage"):
        ConformalIntervals(8, 2, coverage=1.0)
    with pytest.raises(ValueError, match="horizon"):
        ConformalIntervals(0, 2)
    with pytest.raises(ValueError, match="min_residuals"):
        ConformalIntervals(8, 2, window=16, min_residuals=32)
    with pytest.raises(ValueError, match="window"):
        ConformalIntervals(8, 2, window=1, min_residuals=1)
    with pytest.raises(ValueError, match="refresh_every"):
        ConformalIntervals(8, 2, refresh_every=0)
    ci = ConformalIntervals(8, 2)
    with pytest.raises(ValueError, match="coverage"):
        ci.set_coverage(0.0)
    ci.ensure_capacity(4)
    with pytest.raises(ValueError, match="shape"):
        ci.record(np.arange(2), np.zeros((2, 7, 2), np.float32))
    with pytest.raises(ValueError, match="shape"):
        ci.observe(np.arange(2), np.zeros((2, 3), np.float32))


def test_memory_per_cell():
    ci = ConformalIntervals(8, 2, window=128)
    # residual ring 128·8·2·4 + forecast ring 8·8·2·4 + counts and cached quantiles per (h, k) + two counters
    # + the last h=1 interval
    assert ci.memory_bytes_per_cell == 128 * 16 * 4 + 8 * 8 * 2 * 4 + 16 * (4 + 4) + 2 * 8 + 2 * 2 * 4 == 8864
    ci.ensure_capacity(10)
    assert ci.memory_bytes_per_cell == 8864
    assert ci._res[:10].nbytes + ci._fc[:10].nbytes < 10 * 8864


@pytest.mark.parametrize("coverage", [0.9, 0.8])
def test_empirical_coverage_ar1(coverage):
    """Over 400 cells × 300 steps, inside-interval frequency is within ±3 points of nominal (h=1 and h=H)."""
    n = 400
    ci = ConformalIntervals(horizon=4, n_targets=2, coverage=coverage)
    ci.ensure_capacity(n)
    inside1, insideH = run_naive(ci, ar1_stream(n, 300), np.arange(n), warmup=40)
    assert abs(inside1 - coverage) <= 0.03, inside1
    assert abs(insideH - coverage) <= 0.03, insideH


def test_set_coverage_applies_at_the_next_record():
    n = 200
    ci = ConformalIntervals(horizon=1, n_targets=1, coverage=0.9)
    ci.ensure_capacity(n)
    slots = np.arange(n)
    for x in ar1_stream(n, 60, K=1):
        ci.observe(slots, x)
        _, hi90, _ = ci.record(slots, x[:, None, :])
    ci.set_coverage(0.5)
    _, hi50, cal = ci.record(slots, np.zeros((n, 1, 1), np.float32))
    assert cal.all() and ci.coverage == 0.5
    assert (hi50 < hi90 - x[:, None, :]).mean() > 0.95  # half-widths shrink for (nearly) every cell


def test_quantile_is_finite_sample_conformal_rank():
    """With refresh_every=1 the half-width is exactly the ⌈(n+1)·c⌉-th smallest residual of the window."""
    ci = ConformalIntervals(horizon=1, n_targets=1, coverage=0.9, window=32, min_residuals=16, refresh_every=1)
    ci.ensure_capacity(1)
    s = np.array([0])
    rng = np.random.default_rng(1)
    actual = rng.normal(size=60).astype(np.float32)
    residuals = []
    for t, a in enumerate(actual):
        ci.observe(s, np.array([[a]], np.float32))
        if t > 0:
            residuals.append(abs(float(a)))  # the forecast is always 0
        lo, hi, cal = ci.record(s, np.zeros((1, 1, 1), np.float32))
        window = np.sort(residuals[-32:])
        n = len(window)
        if n >= 16:
            assert cal[0]
            assert hi[0, 0, 0] == pytest.approx(window[math.ceil((n + 1) * 0.9) - 1])
            assert lo[0, 0, 0] == -hi[0, 0, 0]
        else:
            assert not cal[0] and hi[0, 0, 0] == 0.0  # no pooled residuals beyond this slot's own


def test_uncalibrated_and_pooled_fallback():
    ci = ConformalIntervals(horizon=2, n_targets=1, min_residuals=16)
    ci.ensure_capacity(30)
    old, new = np.arange(20), np.array([25])
    lo, hi, cal = ci.record(old, np.zeros((20, 2, 1), np.float32))
    assert not cal.any() and (hi == 0).all() and (lo == 0).all()
    out = ci.observe(old, np.full((20, 1), 100.0, np.float32))
    assert not out.any()  # nothing calibrated was issued
    for _ in range(3):
        lo, hi, cal = ci.record(old, np.zeros((20, 2, 1), np.float32))
        ci.observe(old, np.ones((20, 1), np.float32))
    lo, hi, cal = ci.record(old, np.zeros((20, 2, 1), np.float32))
    assert cal.all()  # each slot has < 16 residuals of its own: the pooled ones
    _lo_new, hi_new, cal_new = ci.record(new, np.zeros((1, 2, 1), np.float32))
    assert cal_new[0] and hi_new[0, 0, 0] == hi[0, 0, 0]  # a brand-new slot gets the pooled quantile


def test_nan_actuals_are_skipped():
    ci = ConformalIntervals(horizon=1, n_targets=2, min_residuals=4, window=8, refresh_every=1)
    ci.ensure_capacity(1)
    s = np.array([0])
    for t in range(10):
        ci.observe(s, np.array([[1.0 + t % 3, np.nan]], np.float32))
        _lo, hi, cal = ci.record(s, np.zeros((1, 1, 2), np.float32))
    assert np.isfinite(hi[0, 0, 0]) and hi[0, 0, 0] > 0
    assert hi[0, 0, 1] == 0.0 and not cal[0]  # target 1 never realized: no residuals anywhere
    out = ci.observe(s, np.array([[np.nan, 50.0]], np.float32))
    assert not out.any()


def test_reset_does_not_leak_residuals():
    """A slot reassigned to a quiet cell must not keep the wide intervals of the noisy cell it replaced."""
    H, n = 2, 64
    ci = ConformalIntervals(horizon=H, n_targets=1, window=32, min_residuals=16, refresh_every=1, pool_size=64)
    ci.ensure_capacity(n)
    slots = np.arange(n)
    rng = np.random.default_rng(2)
    noise = np.where(slots < 1, 100.0, 1.0)[:, None]  # slot 0 is very noisy
    for _ in range(80):
        x = (noise * rng.normal(size=(n, 1))).astype(np.float32)
        ci.observe(slots, x)
        _lo, hi, _ = ci.record(slots, np.zeros((n, H, 1), np.float32))
    assert hi[0, 0, 0] > 50 and hi[1, 0, 0] < 5
    ci.reset(np.array([0]))
    assert not ci.observe(np.array([0]), np.array([[1e6]], np.float32)).any()  # no interval since the reset
    _, hi0, cal0 = ci.record(np.array([0]), np.zeros((1, H, 1), np.float32))
    assert cal0[0]
    pooled = hi0[0, 0, 0]
    for _ in range(40):  # the quiet new cell's own residuals take over
        ci.observe(np.array([0]), rng.normal(size=(1, 1)).astype(np.float32))
        _lo0, hi0, _ = ci.record(np.array([0]), np.zeros((1, H, 1), np.float32))
    assert hi0[0, 0, 0] < 5, (pooled, hi0[0, 0, 0])


def test_ensure_capacity_keeps_state():
    ci = ConformalIntervals(horizon=1, n_targets=1, window=8, min_residuals=4, refresh_every=1)
    ci.ensure_capacity(2)
    s = np.array([1])
    for t in range(10):
        ci.observe(s, np.array([[float(t % 4)]], np.float32))
        _, hi, _ = ci.record(s, np.zeros((1, 1, 1), np.float32))
    ci.ensure_capacity(1000)
    assert ci.capacity == 1000
    ci.observe(s, np.array([[2.0]], np.float32))
    _, hi2, cal = ci.record(s, np.zeros((1, 1, 1), np.float32))
    assert cal[0] and hi2[0, 0, 0] == hi[0, 0, 0] == 3.0


def test_reported_mae_and_coverage_are_the_stream_s(monkeypatch):
    """recent_mae (the pooled residuals, per horizon) and recent_coverage (h=1 intervals, weighted over the
    last COVERAGE_MEMORY observations) agree with the errors and the outside flags of the stream itself."""
    monkeypatch.setattr(ConformalIntervals, "COVERAGE_MEMORY", 10**12)  # ≈ no decay: a plain fraction
    H, K, cells, steps = 3, 2, 4, 300
    ci = ConformalIntervals(H, K, coverage=0.8, window=64, pool_size=4 * steps)
    ci.ensure_capacity(cells)
    slots = np.arange(cells)
    assert np.isnan(ci.recent_mae()).all() and np.isnan(ci.recent_coverage()).all()
    stream = ar1_stream(cells, steps, K=K, seed=3)
    errors = [[] for _ in range(H)]
    inside, scored = np.zeros(K), np.zeros(K)
    issued = np.zeros((cells, K), bool)
    for t, x in enumerate(stream):
        out = ci.observe(slots, x)
        for h in range(1, H + 1):
            if t - h >= 0:
                errors[h - 1].append(np.abs(x - stream[t - h]))  # naive forecast made h samples ago
        scored += issued.sum(axis=0)  # where an h=1 interval was issued (q > 0: calibrated, continuous values)
        inside += (issued & ~out).sum(axis=0)
        lower, _, _ = ci.record(slots, np.repeat(x[:, None, :], H, axis=1))
        issued = lower[:, 0] < x
    expected = np.stack([np.concatenate(e).mean(axis=0) for e in errors])  # (H, K)
    np.testing.assert_allclose(ci.recent_mae(), expected, rtol=1e-5)
    np.testing.assert_allclose(ci.recent_coverage(), inside / scored, rtol=1e-6)
    assert 0.7 < ci.recent_coverage().min() < 0.95  # near the nominal 0.8
