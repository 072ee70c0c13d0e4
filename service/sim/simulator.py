"""A multi-cell KPI simulator: a seeded, endless synthetic E2SM-KPM stream published to E2Ingest.

Physics: the same model as the offline generator `models/training/data/synthetic.py` (two latent drivers
per cell, offered load and radio condition; diurnal profiles, regimes, bursts, RSRP drift, anomalies; the
KPIs derived from them by the same formulas and per-cell parameter distributions), re-implemented here as a
stream: per-cell parameters are drawn once and the recursive state (regime, AR(1) noise, bursts, drift,
active anomaly events) carries from block to block, so a run of any length is continuous and uses O(cells)
memory. The offline generator cannot be reused directly: it imports `models.training.series`, and
importing the `models` package imports torch, which the serving image does not have; and it produces
whole (cells, steps) arrays at once. A test checks that both generators give the same KPI distributions.

Time: each cell produces one report per round; round k has the simulated timestamp start_ms + k·period_ms
(strictly increasing per series). `rate` (samples/s, all series together; one sample = one report) sets
how fast rounds are emitted in wall-clock time; without it `speedup` does (1.0 = real time, i.e.
rate = series / period). Accelerated runs have timestamps that run ahead of the wall clock.

Slices (slices=True): each cell also reports per S-NSSAI (sst 1 eMBB, sst 2 URLLC) the KPIs that have
per-slice subcounters in TS 28.552 (throughput, PRB use, connected UEs, RLC delay); the cell's traffic is
split by per-cell shares (eMBB most PRBs and UEs; URLLC small packets: low throughput, low delay). The
radio and power KPIs are cell-level and absent from slice reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from service.sim import SIMULATED_KPIS
from service.sim.publisher import Publisher, SeriesKey, combine_stats

KPIS = SIMULATED_KPIS  # DRB.UEThpDl kbit/s, DRB.UEThpUl kbit/s, RRU.PrbUsedDl %, RRC.ConnMean UEs,
# DRB.RlcSduDelayDl ms, RF.serving.RSRP dBm, RF.serving.RSRQ dB, RF.serving.RSSINR dB, DRB.UECqiDl 0..15,
# PEE.AvgPower W: the names and order of models/training/data/synthetic.py (checked by a test)
SLICE_KPIS = ("DRB.UEThpDl", "DRB.UEThpUl", "RRU.PrbUsedDl", "RRC.ConnMean", "DRB.RlcSduDelayDl")
SLICES = ((1, "eMBB"), (2, "URLLC"))
NOISE_DBM = -125.0
REGIME_LEVEL = np.array([1.0, 1.35, 0.55], dtype=np.float32)
REGIME_SIGMA = np.array([0.03, 0.06, 0.015], dtype=np.float32)
_PROFILE_POINTS = 4096
MAX_BLOCK = 1024  # rounds per generated block (bounds the closed-form AR(1) powers, see _ar1_block)


def _daily_profiles() -> tuple[np.ndarray, np.ndarray]:
    """Business (13:00 peak) and residential (08:10 bump, 20:40 peak) daily load shapes, each peaking at 1."""
    tau = np.arange(_PROFILE_POINTS) / _PROFILE_POINTS

    def bump(mu: float, width: float) -> np.ndarray:
        dist = (tau - mu + 0.5) % 1.0 - 0.5
        return np.exp(-0.5 * (dist / width) ** 2)

    business = bump(0.54, 0.13)
    residential = 0.45 * bump(0.34, 0.05) + bump(0.86, 0.09)
    return (business / business.max()).astype(np.float32), (residential / residential.max()).astype(np.float32)


def _spectral_efficiency(sinr_lin: np.ndarray) -> np.ndarray:
    """TR 36.942 attenuated Shannon bound: 0.6·log2(1 + SINR), 0 below −10 dB, at most 4.4 b/s/Hz."""
    se = np.minimum(np.float32(0.6) * np.log2(np.float32(1.0) + sinr_lin), np.float32(4.4))
    return np.where(sinr_lin < np.float32(0.1), np.float32(0.0), se)


def _db_sum(a_db: np.ndarray, b_db) -> np.ndarray:
    """10·log10(10^(a/10) + 10^(b/10)) without overflow."""
    hi, lo = np.maximum(a_db, b_db), np.minimum(a_db, b_db)
    return hi + np.float32(10.0) * np.log10(np.float32(1.0) + np.power(np.float32(10.0), (lo - hi) / np.float32(10)))


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
        f32 = np.float32

        def per_cell(low: float, high: float) -> np.ndarray:  # (C, 1)
            return rng.uniform(low, high, size=(C, 1)).astype(f32)

        self.phase = rng.normal(0.0, 0.03, size=(C, 1)).astype(f32)
        self.business_w = per_cell(0.0, 1.0)
        self.peak, self.floor = per_cell(0.45, 0.9), per_cell(0.03, 0.12)
        self.bandwidth = rng.choice(np.array([10.0, 20.0, 40.0, 100.0], f32), size=(C, 1), p=[0.2, 0.4, 0.25, 0.15])
        self.rsrp_c = per_cell(-108.0, -82.0)
        self.interf_c = self.rsrp_c - per_cell(6.0, 16.0)
        self.ul_loss = per_cell(3.0, 8.0)
        self.users_peak = per_cell(40.0, 400.0)
        self.d0, self.d1 = per_cell(2.0, 6.0), per_cell(2.0, 6.0)
        self.p_base, self.p_dyn = per_cell(250.0, 450.0), per_cell(150.0, 300.0)
        sinr_nom = np.power(f32(10.0), (self.rsrp_c - _db_sum(self.interf_c + 10 * np.log10(f32(0.55)),
                                                                f32(NOISE_DBM))) / 10)
        self.cap_nom = self.bandwidth * _spectral_efficiency(sinr_nom) * f32(1000.0)
        self.business_profile, self.residential_profile = _daily_profiles()
        # recursive state
        self.t = 0
        self.regime = np.zeros(C, np.int8)
        self.regime_left = np.maximum(1, rng.uniform(0.0, 2.0 * self.regime_steps, size=C).astype(np.int64))
        self.noise = np.zeros(C)
        self.bursts = np.zeros(C)
        self.drift = np.zeros(C)
        self.events = {k: np.zeros(0, t) for k, t in
                       (("cell", np.int64), ("start", np.int64), ("end", np.int64), ("kind", np.int8), ("mag", f32))}

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
        frac = day_frac + self.phase
        grid = ((frac - np.floor(frac)) * _PROFILE_POINTS).astype(np.int32) & (_PROFILE_POINTS - 1)
        bw = self.business_w
        diurnal = bw * self.business_profile[grid] + (1 - bw) * self.residential_profile[grid]
        base = (self.floor + (self.peak - self.floor) * diurnal) * REGIME_LEVEL[regime]
        drop = np.exp(log_drop)
        offered = np.maximum(base + noise + bursts + surge, 0.0) * drop

        rsrp = self.rsrp_c - 2.0 * (1.0 - diurnal) + drift
        interf = self.interf_c + 10.0 * np.log10(0.1 + 0.9 * np.minimum(base, 1.0)) + interf_shift + normal()
        sinr_db = rsrp - _db_sum(interf, f32(NOISE_DBM))
        sinr = np.power(f32(10.0), sinr_db / f32(10.0))
        cap = self.bandwidth * _spectral_efficiency(sinr) * f32(1000.0)
        rho_raw = offered * self.cap_nom / np.maximum(cap, f32(1.0))
        rho = np.clip(rho_raw, 0.0, 1.0)

        out = np.empty((C, B, len(KPIS)), f32)
        out[:, :, 0] = cap * (1.0 - np.minimum(rho_raw, 0.97)) * drop * np.exp(0.08 * normal())
        cap_ul = self.bandwidth * _spectral_efficiency(sinr / np.power(f32(10.0), self.ul_loss / 10)) * f32(330.0)
        rho_ul = 0.1 * offered * self.cap_nom / np.maximum(cap_ul, f32(1.0))
        out[:, :, 1] = cap_ul * (1.0 - np.minimum(rho_ul, 0.97)) * drop * np.exp(0.1 * normal())
        out[:, :, 2] = 100.0 * np.clip(0.02 + 0.98 * rho + 0.01 * normal(), 0.0, 1.0)
        users = self.users_peak * np.maximum(0.05 + 0.95 * (base + 0.5 * bursts) / self.peak, 0.0) * drop
        out[:, :, 3] = np.maximum(users + np.sqrt(users) * normal(), 0.0)
        busy = np.minimum(rho_raw, 0.98)
        delay = self.d0 + self.d1 * busy / (1.0 - busy) + 50.0 * self.d1 * np.maximum(rho_raw - 1.0, 0.0)
        out[:, :, 4] = np.minimum(delay * np.exp(0.1 * normal()), 1000.0)
        out[:, :, 5] = rsrp + 0.5 * normal()
        rsrq = -10.0 * np.log10(2.0 + 10.0 * rho + 12.0 / np.maximum(sinr, f32(1e-3))) + 0.3 * normal()
        out[:, :, 6] = np.clip(rsrq, -19.5, -3.0)
        out[:, :, 7] = np.clip(sinr_db + 0.5 * normal(), -20.0, 40.0)
        out[:, :, 8] = np.clip((sinr_db + 7.9) / 1.86 + 0.25 * normal(), 0.0, 15.0)
        out[:, :, 9] = self.p_base + self.p_dyn * rho + 3.0 * normal()
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


def cell_ids(n_cells: int, nodes: int = 1) -> tuple[list[str], list[str]]:
    """Cell ids "gnb-001-cell-03" spread evenly over E2 nodes "gnb-001" …; returns (cells, node of each)."""
    if nodes < 1 or nodes > n_cells:
        raise ValueError(f"nodes must be in 1..n_cells ({n_cells}), got {nodes}")
    per = math.ceil(n_cells / nodes)
    wn, wc = max(3, len(str(nodes))), max(2, len(str(per - 1)))
    node = [f"gnb-{c // per + 1:0{wn}d}" for c in range(n_cells)]
    return [f"{node[c]}-cell-{c % per:0{wc}d}" for c in range(n_cells)], node


class Pacer:
    """Token bucket: `rate` tokens/s, at most `burst` saved; `take` waits until a worthwhile chunk is due."""

    def __init__(self, rate: float, *, burst: float, min_chunk: int, clock: Callable[[], float],
                 sleep: Callable[[float], object] = asyncio.sleep):
        self.rate, self.burst, self.min_chunk = rate, burst, max(1, int(min_chunk))
        self.clock, self.sleep = clock, sleep
        self.tokens = 0.0
        self.t = clock()

    async def take(self, max_n: int, deadline: float | None = None) -> int:
        """Up to max_n tokens (≥ min(max_n, min_chunk)); 0 if they would only come after `deadline`."""
        if self.rate <= 0:
            return max_n
        need = min(max_n, self.min_chunk)
        while True:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= need:
                n = min(max_n, int(self.tokens))
                self.tokens -= n
                return n
            wait = (need - self.tokens) / self.rate
            if deadline is not None and now + wait > deadline:
                return 0
            await self.sleep(wait)


MAX_BACKDATE_MS = 6 * 86_400_000  # within the xApp's default max_sample_age_ms (7 days)


async def simulate(
    target: str = "localhost:50051",
    *,
    n_cells: int = 100,
    rate: float | None = None,
    speedup: float | None = None,
    period_ms: int = 1000,
    duration_s: float | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    kpis: Sequence[str] | None = None,
    slices: bool = False,
    missing_rate: float = 0.0,
    nodes: int = 1,
    batch_size: int = 1000,
    acked: bool = True,
    max_in_flight: int = 8,
    cycle_steps: int = 1440,
    anomalies: bool = True,
    start_ms: int | None = None,
    on_progress: Callable[[dict], None] | None = None,
    progress_interval_s: float = 1.0,
    stop: asyncio.Event | None = None,
    publisher_factory: Callable[[str], Publisher] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Stream synthetic KPIs of n_cells to target until duration_s, n_samples or `stop`; return final stats.

    rate: samples/s over all series (0: as fast as possible); speedup: rate as a multiple of real time
    (default 1.0); give one of them. kpis: a subset of KPIS (default all); missing_rate: fraction of values
    sent as absent; nodes: E2 nodes (one stream each) the cells are spread over; start_ms: the first
    simulated timestamp (default now, floored to the period). publisher_factory(e2_node_id) → Publisher
    replaces the default. on_progress(stats) is called every progress_interval_s with the running stats.
    Raises ValueError on bad arguments, PublishError when delivery fails for good.
    """
    kpis = list(KPIS if kpis is None else kpis)
    unknown = [k for k in kpis if k not in KPIS]
    if unknown or not kpis or len(set(kpis)) != len(kpis):
        raise ValueError(f"kpis must be distinct names from {KPIS}, got {kpis}")
    if slices and not set(kpis) & set(SLICE_KPIS):
        raise ValueError(f"slices need at least one of the per-slice KPIs {list(SLICE_KPIS)} in kpis")
    if rate is not None and speedup is not None:
        raise ValueError("give rate or speedup, not both")
    if (rate is not None and rate < 0) or (speedup is not None and speedup <= 0):
        raise ValueError(f"rate must be >= 0 and speedup > 0, got rate={rate}, speedup={speedup}")
    if int(period_ms) != period_ms or period_ms < 1:
        raise ValueError(f"period_ms must be a positive integer, got {period_ms!r}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
    if (duration_s is not None and duration_s <= 0) or (n_samples is not None and n_samples < 1):
        raise ValueError("duration_s must be > 0 and n_samples >= 1")
    cells, node_of_cell = cell_ids(n_cells, nodes)
    stream = CellKpiStream(n_cells, seed, cycle_steps=cycle_steps, anomalies=anomalies)
    split = SliceSplit(n_cells, seed) if slices else None
    cols = [KPIS.index(k) for k in kpis]
    per_cell = 1 + (len(SLICES) if slices else 0)
    S = n_cells * per_cell  # series (samples per round)
    if rate is None:
        rate = (1.0 if speedup is None else speedup) * S * 1000.0 / period_ms
    keys = [SeriesKey(c, None, sst) for c in cells for sst in (None, *(s for s, _ in SLICES[: per_cell - 1]))]
    node_names = sorted(set(node_of_cell))
    node_of = np.repeat(np.array([node_names.index(n) for n in node_of_cell]), per_cell)  # per series
    if publisher_factory is None:
        def publisher_factory(node: str) -> Publisher:
            return Publisher(target, e2_node_id=node, batch_size=batch_size, acked=acked,
                             max_in_flight=max_in_flight, granularity_period_ms=int(period_ms))
    pubs = [publisher_factory(n) for n in node_names]
    local = np.empty(S, np.int64)  # series → index in its node's publisher
    for k, pub in enumerate(pubs):
        mine = np.flatnonzero(node_of == k)
        local[mine] = pub.register([keys[i] for i in mine])
    rng = np.random.default_rng([seed, 2])
    if start_ms is None:  # a bounded, paced run ends near the wall clock (the xApp bounds how far ahead it may be)
        now_ms = time.time_ns() // 1_000_000
        span = int(rate * duration_s / S) * int(period_ms) if rate and duration_s is not None else 0
        start_ms = now_ms - min(span, MAX_BACKDATE_MS)
        start_ms -= start_ms % int(period_ms)
    rounds_per_block = max(1, min(MAX_BLOCK, 65_536 // S))
    config = {"target": target, "n_cells": n_cells, "series": S, "slices": slices, "nodes": len(pubs),
              "kpis": kpis, "period_ms": int(period_ms), "rate": rate,
              "speedup": rate * period_ms / (1000.0 * S) if rate else None, "duration_s": duration_s,
              "n_samples": n_samples, "seed": seed, "batch_size": batch_size, "acked": acked,
              "missing_rate": missing_rate, "start_ms": start_ms}

    # the flat sample stream: round-major, series in `keys` order
    buf_series = np.zeros(0, np.int64)
    buf_ts = np.zeros(0, np.int64)
    buf_vals = np.zeros((0, len(kpis)), np.float64)

    def refill(need: int) -> None:
        nonlocal buf_series, buf_ts, buf_vals
        parts_s, parts_t, parts_v, have = [buf_series], [buf_ts], [buf_vals], len(buf_series)
        while have < need:
            r0 = stream.t
            block = stream.next_block(rounds_per_block)  # (R, C, K)
            R = block.shape[0]
            if split is not None:
                block = np.concatenate([block[:, :, None, :], split.split(block)], axis=2)  # (R, C, 3, K)
            v = block.reshape(R * S, len(KPIS))[:, cols].astype(np.float64)
            if missing_rate > 0:
                v[rng.random(v.shape) < missing_rate] = np.nan
            parts_s.append(np.tile(np.arange(S), R))
            parts_t.append(np.repeat(start_ms + (r0 + np.arange(R, dtype=np.int64)) * int(period_ms), S))
            parts_v.append(v)
            have += R * S
        buf_series, buf_ts, buf_vals = (np.concatenate(parts_s), np.concatenate(parts_t), np.concatenate(parts_v))

    pacer = Pacer(rate, burst=max(batch_size * len(pubs), rate * 0.25), min_chunk=max(1, rate * 0.01),
                  clock=clock)
    t0 = clock()
    deadline = None if duration_s is None else t0 + duration_s
    sent = 0
    ticker = None
    if on_progress is not None:
        ticker = asyncio.get_running_loop().create_task(
            _progress(lambda: combine_stats(pubs), on_progress, progress_interval_s, clock, t0, rate))
    try:
        for pub in pubs:
            await pub.start()
        while (stop is None or not stop.is_set()) and (n_samples is None or sent < n_samples):
            if deadline is not None and clock() >= deadline:
                break
            want = batch_size * len(pubs) if n_samples is None else min(batch_size * len(pubs), n_samples - sent)
            n = await pacer.take(want, deadline)
            if n == 0:
                break
            if len(buf_series) < n:
                refill(n)
            s, t, v = buf_series[:n], buf_ts[:n], buf_vals[:n]
            buf_series, buf_ts, buf_vals = buf_series[n:], buf_ts[n:], buf_vals[n:]
            if len(pubs) == 1:
                sending = pubs[0].send(local[s], t, None, v, kpis)
            else:
                node = node_of[s]
                sending = asyncio.gather(*(pubs[k].send(local[s[m]], t[m], None, v[m], kpis)
                                           for k in range(len(pubs)) if (m := node == k).any()))
            if not await until_stopped(sending, stop):
                break
            sent += n
        await asyncio.gather(*(p.close() for p in pubs))
    except BaseException:
        for p in pubs:
            await p.close(flush=False)
        raise
    finally:
        if ticker is not None:
            ticker.cancel()
    return {"command": "simulate", "config": config, "wall_s": round(clock() - t0, 3), **combine_stats(pubs)}


async def until_stopped(aw, stop: asyncio.Event | None) -> bool:
    """Await aw unless `stop` is set first (then cancel it, e.g. a send blocked on backpressure); True if done."""
    if stop is None:
        await aw
        return True
    task, waiter = asyncio.ensure_future(aw), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _progress(snapshot: Callable[[], dict], callback: Callable[[dict], None], interval: float,
                    clock: Callable[[], float], t0: float, target_rate: float | None) -> None:
    """Call back once per interval with the stats, the current send rate and the target rate."""
    prev_n, prev_t = 0, clock()
    while True:
        await asyncio.sleep(interval)
        st = snapshot()
        now = clock()
        st["rate_now"] = round((st["samples"] - prev_n) / max(now - prev_t, 1e-9), 1)
        st["target_rate"] = target_rate
        st["wall_s"] = round(now - t0, 3)
        prev_n, prev_t = st["samples"], now
        callback(st)
