"""The simulator's traffic generator: endless, seeded synthetic E2SM-KPM values for many cells, in blocks.

Physics: the model of the offline synthetic dataset (`models.training.data.synthetic`; two latent drivers
per cell, offered load and radio condition; diurnal profiles, regimes, bursts, RSRP drift, anomalies), with
its constants, per-cell parameter draws and radio/KPI formulas taken from `contract.synthetic`, run as a
stream: per-cell parameters are drawn once and the recursive state (regime, AR(1) noise, bursts, drift,
active anomaly events) carries from block to block, so a run of any length is continuous and uses O(cells)
memory. The offline generator itself is not used: it imports `models` (torch, absent from the serving
image) and produces whole (cells, steps) arrays at once. A test checks that both give the same KPI
distributions.

Slices (`SliceSplit`): each cell also reports per S-NSSAI (sst 1 eMBB, sst 2 URLLC) the KPIs that have
per-slice subcounters in TS 28.552 (throughput, PRB use, connected UEs, RLC delay); the cell's traffic is
split by per-cell shares (eMBB most PRBs and UEs; URLLC small packets: low throughput, low delay). The
radio and power KPIs are cell-level and absent (NaN) from slice reports.
"""

from __future__ import annotations

import math

import numpy as np

from contract.kpis import SLICE_KPIS, SYNTHETIC_KPIS
from contract.synthetic import PROFILE_POINTS, REGIME_LEVEL, REGIME_SIGMA, cell_parameters, daily_profiles, derive_kpis

KPIS = list(SYNTHETIC_KPIS)  # the column order of every block (units in contract.kpis)
SLICES = ((1, "eMBB"), (2, "URLLC"))
MAX_BLOCK = 1024  # rounds per generated block (bounds the closed-form AR(1) powers, see _ar1_block)


def _ar1_block(x: np.ndarray, rho: float, y_prev: np.ndarray) -> np.ndarray:
    """y_t = rho·y_{t-1} + x_t along axis 1 of (C, B), from y_{-1} = y_prev, in closed form (float64).

    y_t = rho^(t+1)·(y_prev + Σ_{s≤t} rho^-(s+1)·x_s); the absolute error stays ≈ eps·max|x|/(1 − rho),
    and rho^-B stays finite for B ≤ MAX_BLOCK and rho ≥ 0.9.
    """
    p = rho ** np.arange(1, x.shape[1] + 1, dtype=np.float64)
    return p * (y_prev[:, None] + np.cumsum(x / p, axis=1))


class CellKpiStream:
    """Endless synthetic KPIs for n cells: `next_block(rounds)` → (rounds, cells, len(KPIS)) float32.

    Arguments as in synthetic_kpis (cycle_steps: rounds per simulated day; burst_rate, anomaly_rate per cell
    and round; regime_steps: mean busy/quiet regime length, normal ones last twice as long).
    Deterministic for a seed and the same sequence of block sizes.
    """

    def __init__(self, n_cells: int, seed: int = 0, *, cycle_steps: int = 1440, anomalies: bool = True,
                 regimes: bool = True, burst_rate: float = 1 / 400, burst_steps: float = 20.0,
                 regime_steps: float | None = None, anomaly_rate: float = 1 / 1500):
        if int(n_cells) != n_cells or n_cells < 1:
            raise ValueError(f"n_cells must be a positive integer, got {n_cells!r}")
        if int(cycle_steps) != cycle_steps or cycle_steps < 1:
            raise ValueError(f"cycle_steps must be a positive integer, got {cycle_steps!r}")
        for name, v in (("burst_rate", burst_rate), ("anomaly_rate", anomaly_rate)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        self.n_cells = C = int(n_cells)
        self.cycle_steps = int(cycle_steps)
        self.regimes, self.anomalies = regimes, anomalies
        self.burst_rate, self.burst_steps, self.anomaly_rate = burst_rate, burst_steps, anomaly_rate
        self.regime_steps = cycle_steps / 2 if regime_steps is None else regime_steps
        if burst_steps <= 0 or self.regime_steps <= 0:
            raise ValueError("burst_steps and regime_steps must be > 0")
        self.rng = rng = np.random.default_rng(seed)
        self.params = cell_parameters(rng, C)  # per-cell heterogeneity, as the offline generator draws it
        self.business_profile, self.residential_profile = daily_profiles()
        # recursive state
        self.t = 0
        self.regime = np.zeros(C, np.int8)
        self.regime_left = np.maximum(1, rng.uniform(0.0, 2.0 * self.regime_steps, size=C).astype(np.int64))
        self.noise = np.zeros(C)
        self.bursts = np.zeros(C)
        self.drift = np.zeros(C)
        self.events = {k: np.zeros(0, t) for k, t in
                       (("cell", np.int64), ("start", np.int64), ("end", np.int64), ("kind", np.int8),
                        ("mag", np.float32))}

    def _next_regimes(self, B: int) -> np.ndarray:
        """(C, B) int8 regimes, continuing the current segments (exponential durations, at least 10 rounds)."""
        C = self.n_cells
        if not self.regimes:
            return np.zeros((C, B), np.int8)
        out = np.empty((C, B), np.int8)
        cols = np.arange(B)
        pos = np.zeros(C, np.int64)
        while True:
            end = np.minimum(pos + self.regime_left, B)
            m = (cols >= pos[:, None]) & (cols < end[:, None])
            out[m] = np.broadcast_to(self.regime[:, None], (C, B))[m]
            self.regime_left -= end - pos
            pos = end
            sw = np.flatnonzero(self.regime_left == 0)
            if len(sw):
                was_normal = self.regime[sw] == 0
                self.regime[sw] = np.where(was_normal, self.rng.choice(np.array([1, 2], np.int8), size=len(sw)), 0)
                mean = self.regime_steps * np.where(was_normal, 1.0, 2.0)  # the new segment's mean length
                self.regime_left[sw] = np.maximum(10, (self.rng.exponential(1.0, len(sw)) * mean).astype(np.int64))
            if (pos >= B).all():
                return out

    def _next_events(self, B: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Surge, log drop factor and interference shift (dB) for this block, (C, B) each."""
        C, t0, rng = self.n_cells, self.t, self.rng
        effect = np.zeros((3, C, B), np.float32)
        if not self.anomalies:
            return effect[0], effect[1], effect[2]
        n = rng.poisson(self.anomaly_rate * B * C)
        kind = rng.choice(np.array([1, 2, 3], np.int8), size=n, p=[0.4, 0.3, 0.3])
        dur = np.select([kind == 1, kind == 2], [rng.integers(1, 6, size=n), rng.integers(5, 61, size=n)],
                        rng.integers(60, 601, size=n))
        mag = np.select([kind == 1, kind == 2],  # surge: + offered load; drop: log factor; shift: + interference dB
                        [rng.uniform(0.6, 1.5, size=n), np.log(rng.uniform(0.0, 0.1, size=n) + 1e-3)],
                        rng.uniform(6.0, 15.0, size=n)).astype(np.float32)
        start = t0 + rng.integers(0, B, size=n)
        new = {"cell": rng.integers(0, C, size=n), "start": start, "end": start + dur, "kind": kind, "mag": mag}
        ev = {k: np.concatenate([self.events[k], new[k]]) for k in self.events}
        for c, s, e, k, g in zip(ev["cell"].tolist(), ev["start"].tolist(), ev["end"].tolist(), ev["kind"].tolist(),
                                 ev["mag"].tolist()):
            lo, hi = max(s, t0) - t0, min(e, t0 + B) - t0
            if hi > lo:
                effect[k - 1, c, lo:hi] += g
        keep = ev["end"] > t0 + B
        self.events = {k: v[keep] for k, v in ev.items()}
        return effect[0], effect[1], effect[2]

    def next_block(self, rounds: int) -> np.ndarray:
        """The next `rounds` rounds (≤ MAX_BLOCK) of every cell: (rounds, cells, len(KPIS)) float32."""
        B, C, rng, f32 = int(rounds), self.n_cells, self.rng, np.float32
        if not 1 <= B <= MAX_BLOCK:
            raise ValueError(f"rounds must be in 1..{MAX_BLOCK}, got {rounds}")

        def unit(shape=(C, B)) -> np.ndarray:  # zero mean, unit variance
            return (rng.random(shape) - 0.5) * math.sqrt(12.0)

        def normal() -> np.ndarray:
            return rng.standard_normal((C, B), dtype=f32)

        first = self.t == 0
        regime = self._next_regimes(B)
        # the three first-order recursions (float64), stationary from round 0 like the offline generator
        x = unit() * (REGIME_SIGMA[regime] * math.sqrt(1 - 0.9**2))
        if first:
            x[:, 0] /= math.sqrt(1 - 0.9**2)
        noise = _ar1_block(x, 0.9, self.noise)
        arrivals = np.zeros((C, B))
        n_burst = rng.poisson(self.burst_rate * B * C)
        np.add.at(arrivals.reshape(-1), rng.integers(0, B * C, size=n_burst), rng.exponential(0.3, n_burst))
        bursts = _ar1_block(arrivals, math.exp(-1.0 / self.burst_steps), self.bursts)
        rho_d = math.exp(-1 / 300)
        x = unit() * (1.5 * math.sqrt(1 - rho_d**2))
        if first:
            x[:, 0] /= math.sqrt(1 - rho_d**2)
        drift = _ar1_block(x, rho_d, self.drift)
        self.noise, self.bursts, self.drift = noise[:, -1].copy(), bursts[:, -1].copy(), drift[:, -1].copy()
        noise, bursts, drift = noise.astype(f32), bursts.astype(f32), drift.astype(f32)
        surge, log_drop, interf_shift = self._next_events(B)

        steps = self.t + np.arange(B, dtype=np.int64)
        day_frac = ((steps % self.cycle_steps) / self.cycle_steps).astype(f32)
        p = self.params
        frac = day_frac + p.phase
        grid = ((frac - np.floor(frac)) * PROFILE_POINTS).astype(np.int32) & (PROFILE_POINTS - 1)
        bw = p.business_w
        diurnal = bw * self.business_profile[grid] + (1 - bw) * self.residential_profile[grid]
        base = (p.floor + (p.peak - p.floor) * diurnal) * REGIME_LEVEL[regime]
        drop = np.exp(log_drop)
        offered = np.maximum(base + noise + bursts + surge, 0.0) * drop

        out = np.empty((C, B, len(KPIS)), f32)
        derive_kpis(out, p, base=base, diurnal=diurnal, offered=offered, drop=drop, bursts=bursts, drift=drift,
                    interf_shift=interf_shift, normal=normal)
        self.t += B
        return np.ascontiguousarray(out.transpose(1, 0, 2))


class SliceSplit:
    """Per-slice reports derived from cell reports (see the module docstring); NaN for cell-level KPIs."""

    def __init__(self, n_cells: int, seed: int):
        rng = np.random.default_rng([seed, 1])
        self.prb_share = rng.uniform(0.6, 0.9, n_cells).astype(np.float32)  # eMBB share of the cell's PRBs
        self.ue_share = rng.uniform(0.7, 0.95, n_cells).astype(np.float32)  # eMBB share of connected UEs
        self.urllc_thp = rng.uniform(0.02, 0.08, n_cells).astype(np.float32)  # URLLC / cell UE throughput
        self.rng = rng

    def split(self, cell: np.ndarray) -> np.ndarray:
        """(rounds, cells, K) cell values in KPIS order → (rounds, cells, 2, K): sst 1 then sst 2."""
        R, C, _ = cell.shape
        out = np.full((R, C, 2, len(KPIS)), np.nan, np.float32)
        thp_dl, thp_ul, prb, conn, delay = (cell[:, :, KPIS.index(k)] for k in SLICE_KPIS)
        jitter = np.exp(0.05 * self.rng.standard_normal((R, C, 2), dtype=np.float32))
        e, u = out[:, :, 0], out[:, :, 1]
        e[..., 0] = thp_dl * jitter[..., 0]
        e[..., 1] = thp_ul * jitter[..., 0]
        e[..., 2] = prb * self.prb_share
        e[..., 3] = conn * self.ue_share
        e[..., 4] = delay * 1.15
        u[..., 0] = thp_dl * self.urllc_thp * jitter[..., 1]
        u[..., 1] = thp_ul * 2.0 * self.urllc_thp * jitter[..., 1]
        u[..., 2] = prb * (1.0 - self.prb_share)
        u[..., 3] = conn * (1.0 - self.ue_share)
        u[..., 4] = 1.0 + 0.1 * delay  # scheduled first: little queueing
        return out

