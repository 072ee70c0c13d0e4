"""Seeded synthetic multi-cell RAN KPIs with plausible, correlated physics.

One `Series` per cell; the KPIs carry 3GPP TS 28.552 / O-RAN E2SM-KPM names. Everything derives from two
latent drivers per cell and step, the offered load λ (demand as a fraction of the cell's nominal capacity)
and the radio condition (serving RSRP and inter-cell interference), so the KPIs move together the way a
real cell's do:

    day phase   τ = t / cycle_steps + φ_c                  (time-compressed day, see below)
    diurnal     d(τ) ∈ [0, 1]: a per-cell mix of a business profile (midday peak) and a residential one
                (morning bump, evening peak); optional weekly modulation (weekend factor per cell)
    base load   ℓ = (floor_c + (peak_c − floor_c)·d(τ)) · weekly · level[regime]
    offered     λ = ℓ + bursts + AR(1) noise (σ by regime) + surges; bursts are Poisson arrivals with an
                exponential decay
    radio       RSRP = RSRP_c − 2·(1 − d) + slow AR(1) drift (more indoor users at night);
                interference I = I_c · (0.1 + 0.9·min(ℓ, 1)) (neighbours follow the same daily cycle);
                SINR = S / (I + N) with N = −125 dBm per 15 kHz resource element
    capacity    SE = min(0.6·log2(1 + SINR), 4.4) b/s/Hz (3GPP TR 36.942 attenuated Shannon), C = BW·SE
    PRB util    ρ = λ · C_nom / C: the same traffic needs more PRBs when the SINR is worse
    UE thp      C · (1 − ρ) (processor sharing: a flow gets the capacity the other flows leave), ρ ≤ 0.97
    delay       d0 + d1 · ρ/(1 − ρ) (M/M/1-like queueing), steep past ρ = 1 (overload), capped at 1 s
    RSRQ        N·RSRP/RSSI = 1 / (2 + 10ρ + 12/SINR): per resource block 2 reference-signal REs, 10 data
                REs busy with probability ρ, interference + noise on all 12
    CQI         SINR on the 4-bit CQI scale, ≈ 1.86 dB a step (CQI 1 at −6 dB, 15 at +20 dB), cell mean
    power       EARTH-style linear model P = P_base + P_dyn·ρ

so UE throughput rises with SINR and falls with load, PRB utilization and delay rise with load and with
falling SINR, and delay rises nonlinearly with utilization.

Time scale: timestamps advance by `period_ms` (default 1 s, the KPM reporting period the xApp serves), but
the daily cycle lasts `cycle_steps` samples (default 1440: a day at 1-minute granularity), so runs of a
few thousand steps see several "days". Pass cycle_steps=86_400 for real days at 1 s.

Labels per step (Series.labels): "regime" int8 (0 normal, 1 busy: level ×1.35 and noisier, 2 quiet: level
×0.55 and calmer; piecewise constant, exponential durations) and "anomaly" bool, the union of injected
events, with "anomaly_kind" int8 saying which (0 none, 1 traffic surge: a short spike of demand, 2 drop:
an outage in which traffic, connections and throughput collapse, 3 level shift: external interference
raising I by 6-15 dB for minutes, which lowers SINR/CQI/throughput and raises PRB use and delay;
overlapping events add up, and anomaly_kind names one of them).

Implementation: float32 (cells, steps) arrays. The stateful parts (regimes, the three first-order
recursions: load noise, bursts, RSRP drift) run over all cells at once, the recursions as a loop over
time with a vector step; everything else runs in blocks of ~1 MB per array, which keeps it in cache
(1000 cells × 10k steps: ≈2 s on one core, a third of it first-touching the 400 MB result).
Measurement noise is Box–Muller normal. Deterministic for a given seed and arguments. The constants, daily
profiles, per-cell parameters and radio/KPI formulas are `contract.synthetic`'s, shared with the simulator.
"""

from __future__ import annotations

import math

import numpy as np

from contract.kpis import SYNTHETIC_KPIS
from contract.synthetic import (
    PROFILE_POINTS,
    REGIME_LEVEL,
    REGIME_SIGMA,
    cell_parameters,
    daily_profiles,
    derive_kpis,
)
from models.training.series import Series, SeriesSet

KPIS = list(SYNTHETIC_KPIS)  # names, units and order in contract.kpis (the simulator sends the same)

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: the first timestamp of every series


def _ar1(x: np.ndarray, rho: float, stationary: bool = False) -> np.ndarray:
    """y_t = rho·y_{t-1} + x_t along the time axis of a (C, T) array, y_{-1} = 0.

    stationary: scale x_0 by 1/√(1 − rho²), so white innovations give a stationary process from t = 0."""
    xt = np.ascontiguousarray(x.T)  # (T, C): each step reads and writes one contiguous row
    if stationary:
        xt[0] /= xt.dtype.type(math.sqrt(1.0 - rho * rho))
    y = np.empty_like(xt)
    prev = np.zeros(xt.shape[1], dtype=xt.dtype)
    r = xt.dtype.type(rho)
    for t in range(xt.shape[0]):
        prev = r * prev + xt[t]
        y[t] = prev
    return np.ascontiguousarray(y.T)


def _gauss(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 by Box–Muller on float32 uniforms (≈3× faster than the float32 ziggurat;
    the tails end at 5.8σ, where 1 − u reaches 2^-24)."""
    n = math.prod(shape)
    m = (n + 1) // 2
    u = rng.random((2, m), dtype=np.float32)
    r = np.sqrt(np.float32(-2.0) * np.log1p(-u[0]))
    theta = np.float32(2.0 * math.pi) * u[1]
    z = np.empty(2 * m, dtype=np.float32)
    z[:m] = r * np.cos(theta)
    z[m:] = r * np.sin(theta)
    return z[:n].reshape(shape)


def _regimes(rng: np.random.Generator, T: int, C: int, mean_steps: float) -> np.ndarray:
    """(C, T) int8 regime per step: normal segments (mean 2·mean_steps) alternate with busy or quiet ones."""
    durations: list[np.ndarray] = []
    total = np.zeros(C)
    k = 0
    while (total < T).any():
        n = max(4, math.ceil(T / mean_steps) + 2)
        normal = np.arange(k, k + n) % 2 == 0
        d = np.maximum(rng.exponential(1.0, size=(C, n)) * mean_steps * np.where(normal, 2.0, 1.0), 10.0)
        if k == 0:  # a random phase, so the cells do not all switch together at the start
            d[:, 0] = rng.uniform(0.0, 2.0 * mean_steps, size=C)
        durations.append(d)
        total = total + d.sum(1)
        k += n
    ends = np.cumsum(np.concatenate(durations, axis=1), axis=1).astype(np.int64)  # (C, M)
    M = ends.shape[1]
    abnormal = rng.choice(np.array([1, 2], dtype=np.int8), size=(C, M + 1))
    seg_regime = np.where(np.arange(M + 1) % 2 == 0, np.int8(0), abnormal).astype(np.int8)  # (C, M + 1)
    marks = np.zeros((C, T + 1), dtype=np.int32)
    c_idx, k_idx = np.nonzero(ends < T)
    np.add.at(marks, (c_idx, ends[c_idx, k_idx]), 1)
    seg = np.cumsum(marks[:, :T], axis=1)  # (C, T) segment index
    return np.take_along_axis(seg_regime, seg, axis=1)


def _events(rng: np.random.Generator, T: int, C: int, rate: float) -> dict[str, np.ndarray]:
    """Anomaly events (Poisson, `rate` per cell and step), sorted by cell: cell, start, end, kind, magnitude."""
    n = rng.poisson(rate * T * C)
    cell = rng.integers(0, C, size=n)
    start = rng.integers(0, T, size=n)
    kind = rng.choice(np.array([1, 2, 3], dtype=np.int8), size=n, p=[0.4, 0.3, 0.3])
    dur = np.select([kind == 1, kind == 2], [rng.integers(1, 6, size=n), rng.integers(5, 61, size=n)],
                    rng.integers(60, 601, size=n))
    mag = np.select([kind == 1, kind == 2],  # surge: + offered load; drop: log factor; shift: + interference dB
                    [rng.uniform(0.6, 1.5, size=n), np.log(rng.uniform(0.0, 0.1, size=n) + 1e-3)],
                    rng.uniform(6.0, 15.0, size=n)).astype(np.float32)
    order = np.argsort(cell, kind="stable")
    return {"cell": cell[order], "start": start[order], "end": np.minimum(start + dur, T)[order],
            "kind": kind[order], "mag": mag[order]}


def _apply_events(events: dict[str, np.ndarray], c0: int, c1: int, T: int):
    """The events of cells c0..c1-1 as (c1-c0, T) arrays: surge, log drop factor, interference dB, kind."""
    nb = c1 - c0
    effect = np.zeros((3, nb, T), dtype=np.float32)
    kind_map = np.zeros((nb, T), dtype=np.int8)
    lo, hi = np.searchsorted(events["cell"], [c0, c1])
    for i in range(lo, hi):  # a few events per cell and thousand steps
        c, s, e, k = events["cell"][i] - c0, events["start"][i], events["end"][i], events["kind"][i]
        effect[k - 1, c, s:e] += events["mag"][i]
        kind_map[c, s:e] = k
    return effect[0], effect[1], effect[2], kind_map


def synthetic_kpis(
    n_cells: int,
    length: int,
    period_ms: int = 1000,
    seed: int = 0,
    anomalies: bool = True,
    regimes: bool = True,
    *,
    cycle_steps: int = 1440,
    weekly: bool = False,
    burst_rate: float = 1 / 400,
    burst_steps: float = 20.0,
    regime_steps: float | None = None,
    anomaly_rate: float = 1 / 1500,
    missing_rate: float = 0.0,
) -> SeriesSet:
    """`n_cells` series ("cell0000", …) of `length` steps of the KPIs in `KPIS`; see the module docstring.

    cycle_steps: samples per simulated day; weekly: weekend days (5 and 6 of each 7) change the load by a
    per-cell factor (business cells quieter, residential ones busier); burst_rate: Poisson burst arrivals
    per cell and step, each decaying with time constant burst_steps; regime_steps: mean length of a busy or
    quiet regime (normal ones last twice as long; default cycle_steps / 2); anomaly_rate: events per cell
    and step; missing_rate: fraction of (cell, step) reports lost (all KPIs NaN there).
    Raises ValueError on non-positive sizes or rates out of range.
    """
    for name, v in (("n_cells", n_cells), ("length", length), ("period_ms", period_ms), ("cycle_steps", cycle_steps)):
        if int(v) != v or v < 1:
            raise ValueError(f"synthetic_kpis: {name} must be a positive integer, got {v!r}")
    for name, v in (("burst_rate", burst_rate), ("anomaly_rate", anomaly_rate), ("missing_rate", missing_rate)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"synthetic_kpis: {name} must be in [0, 1), got {v!r}")
    if burst_steps <= 0:
        raise ValueError(f"synthetic_kpis: burst_steps must be > 0, got {burst_steps!r}")
    regime_steps = cycle_steps / 2 if regime_steps is None else regime_steps
    if regime_steps <= 0:
        raise ValueError(f"synthetic_kpis: regime_steps must be > 0, got {regime_steps!r}")

    T, C = int(length), int(n_cells)
    f32 = np.float32
    rng = np.random.default_rng(seed)

    def uniform_unit(shape: tuple[int, int]) -> np.ndarray:  # zero mean, unit variance
        return (rng.random(shape, dtype=f32) - f32(0.5)) * f32(math.sqrt(12.0))

    p = cell_parameters(rng, C)  # per-cell heterogeneity (contract.synthetic)
    phase, business_w, peak, floor = p.phase, p.business_w, p.peak, p.floor

    # the stateful pieces, over all cells at once: regimes, the three first-order recursions, events
    regime = _regimes(rng, T, C, regime_steps) if regimes else np.zeros((C, T), dtype=np.int8)
    noise = _ar1(uniform_unit((C, T)) * (REGIME_SIGMA[regime] * f32(math.sqrt(1 - 0.9**2))), 0.9, True)
    arrivals = np.zeros((C, T), dtype=f32)
    n_burst = rng.poisson(burst_rate * T * C)
    np.add.at(arrivals.reshape(-1), rng.integers(0, T * C, size=n_burst), rng.exponential(0.3, n_burst).astype(f32))
    bursts = _ar1(arrivals, math.exp(-1.0 / burst_steps))
    del arrivals
    # slow drift of the serving RSRP (UE mix, shadowing), time constant 300 steps, σ = 1.5 dB
    drift = _ar1(uniform_unit((C, T)) * f32(1.5 * math.sqrt(1 - math.exp(-2 / 300))), math.exp(-1 / 300), True)
    events = _events(rng, T, C, anomaly_rate) if anomalies else _events(rng, T, C, 0.0)

    values = np.empty((C, T, len(KPIS)), dtype=f32)
    kind = np.empty((C, T), dtype=np.int8)
    steps = np.arange(T, dtype=np.int64)
    day_frac = ((steps % cycle_steps) / cycle_steps).astype(f32)  # (T,) exact before it meets the phase
    business, residential = daily_profiles()
    block = max(1, (1 << 18) // T)  # ~1 MB float32 arrays: cache-friendly, no page-fault churn
    for c0 in range(0, C, block):
        c1 = min(C, c0 + block)
        cs = slice(c0, c1)
        nb = c1 - c0

        def normal(nb: int = nb) -> np.ndarray:
            return _gauss(rng, (nb, T))

        # diurnal (and weekly) base load
        frac = day_frac + phase[cs]  # (nb, T) days, in (-0.2, 1.2)
        grid = ((frac - np.floor(frac)) * PROFILE_POINTS).astype(np.int32) & (PROFILE_POINTS - 1)
        diurnal = business_w[cs] * business[grid] + (1 - business_w[cs]) * residential[grid]  # (nb, T)
        base = floor[cs] + (peak[cs] - floor[cs]) * diurnal
        if weekly:
            weekend = (steps // cycle_steps + np.floor(frac).astype(np.int64)) % 7 >= 5
            base *= 1.0 + weekend.astype(f32) * (0.1 - 0.45 * business_w[cs])
        base *= REGIME_LEVEL[regime[cs]]

        # offered load, times the outage factor
        surge, log_drop, interf_shift, kind[cs] = _apply_events(events, c0, c1, T)
        drop = np.exp(log_drop)  # 1 outside outages
        offered = np.maximum(base + noise[cs] + bursts[cs] + surge, 0.0) * drop

        # radio and the KPIs
        out = values[cs]
        derive_kpis(out, p.rows(cs), base=base, diurnal=diurnal, offered=offered, drop=drop, bursts=bursts[cs],
                    drift=drift[cs], interf_shift=interf_shift, normal=normal)
        if missing_rate > 0:
            out[rng.random((nb, T)) < missing_rate] = np.nan
    del noise, bursts, drift

    timestamps = START_MS + steps * int(period_ms)
    timestamps.flags.writeable = False  # one array shared by all series
    series = [
        Series(f"cell{c:04d}", values[c], timestamps,
               {"regime": regime[c], "anomaly": kind[c] > 0, "anomaly_kind": kind[c]})
        for c in range(C)
    ]
    source = {
        "dataset": "synthetic",
        "generator": "models.training.data.synthetic.synthetic_kpis",
        "seed": seed,
        "params": {"n_cells": C, "length": T, "period_ms": int(period_ms), "anomalies": anomalies,
                   "regimes": regimes, "cycle_steps": int(cycle_steps), "weekly": weekly, "burst_rate": burst_rate,
                   "burst_steps": burst_steps, "regime_steps": regime_steps, "anomaly_rate": anomaly_rate,
                   "missing_rate": missing_rate},
    }
    return SeriesSet(list(KPIS), int(period_ms), series, source)
