"""The synthetic-traffic physics shared by the offline dataset (`models.training.data.synthetic`) and the
streaming simulator (`service.sim.generator`), defined once so both draw the same cells for a seed and derive
the KPIs by the same formulas: constants, the daily load profiles, the per-cell parameters and the radio/KPI
model. float32 throughout; numpy only (no torch, nothing from `models` or `service`).

Each generator keeps its own time axis (whole arrays offline, blocks with carried state online) and its own
random draws for the latent drivers; `cell_parameters` consumes the generator's rng in a fixed order, so it
must be called at the same point of both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from contract.kpis import SYNTHETIC_KPIS

NOISE_DBM = -125.0  # thermal noise per 15 kHz RE: −174 dBm/Hz + 41.8 dB + 7 dB noise figure
REGIME_LEVEL = np.array([1.0, 1.35, 0.55], dtype=np.float32)  # base-load factor: normal, busy, quiet
REGIME_SIGMA = np.array([0.03, 0.06, 0.015], dtype=np.float32)  # σ of the AR(1) load noise per regime
PROFILE_POINTS = 4096  # grid of a day for the daily profiles (a power of 2: indices wrap with a mask)
_COL = {k: i for i, k in enumerate(SYNTHETIC_KPIS)}


def daily_profiles() -> tuple[np.ndarray, np.ndarray]:
    """Business (13:00 peak) and residential (08:10 bump, 20:40 peak) daily load shapes on a grid of
    PROFILE_POINTS per day, each peaking at 1."""
    tau = np.arange(PROFILE_POINTS) / PROFILE_POINTS

    def bump(mu: float, width: float) -> np.ndarray:
        dist = (tau - mu + 0.5) % 1.0 - 0.5  # wrapped distance in days
        return np.exp(-0.5 * (dist / width) ** 2)

    business = bump(0.54, 0.13)  # 13:00
    residential = 0.45 * bump(0.34, 0.05) + bump(0.86, 0.09)  # 08:10 and 20:40
    return (business / business.max()).astype(np.float32), (residential / residential.max()).astype(np.float32)


def spectral_efficiency(sinr_lin: np.ndarray) -> np.ndarray:
    """TR 36.942 attenuated Shannon bound: 0.6·log2(1 + SINR), 0 below −10 dB, at most 4.4 b/s/Hz."""
    se = np.minimum(np.float32(0.6) * np.log2(np.float32(1.0) + sinr_lin), np.float32(4.4))
    return np.where(sinr_lin < np.float32(0.1), np.float32(0.0), se)


def db_sum(a_db: np.ndarray, b_db: float | np.ndarray) -> np.ndarray:
    """10·log10(10^(a/10) + 10^(b/10)) without overflow."""
    hi = np.maximum(a_db, b_db)
    lo = np.minimum(a_db, b_db)
    return hi + np.float32(10.0) * np.log10(np.float32(1.0) + np.power(np.float32(10.0), (lo - hi) / np.float32(10.0)))


@dataclass(frozen=True)
class CellParameters:
    """Per-cell heterogeneity, (cells, 1) float32 each: broadcasts against (cells, steps)."""

    phase: np.ndarray  # day-phase offset, days (± 45 min)
    business_w: np.ndarray  # weight of the business profile (the rest is residential)
    peak: np.ndarray  # base load at the daily peak
    floor: np.ndarray  # base load at the daily minimum
    bandwidth_mhz: np.ndarray
    rsrp_c: np.ndarray  # mean serving RSRP, dBm
    interf_c: np.ndarray  # per-RE interference at full neighbour load, dBm
    ul_loss: np.ndarray  # UL SINR below DL SINR, dB
    users_peak: np.ndarray  # connected UEs at the daily peak
    d0: np.ndarray  # RLC delay at no load, ms
    d1: np.ndarray  # RLC delay scale of the queueing term, ms
    p_base: np.ndarray  # power at no load, W
    p_dyn: np.ndarray  # power added at full PRB use, W
    cap_nom: np.ndarray  # capacity at median conditions (neighbours half loaded), kbit/s: load 1 offers this much

    def rows(self, cells: slice) -> CellParameters:
        """The parameters of a range of cells."""
        return CellParameters(**{f.name: getattr(self, f.name)[cells] for f in fields(self)})


def cell_parameters(rng: np.random.Generator, n_cells: int) -> CellParameters:
    """Draw the per-cell parameters of n_cells cells from rng (always the same draws, in the same order)."""
    C, f32 = int(n_cells), np.float32

    def per_cell(low: float, high: float) -> np.ndarray:  # (C, 1)
        return rng.uniform(low, high, size=(C, 1)).astype(f32)

    phase = rng.normal(0.0, 0.03, size=(C, 1)).astype(f32)
    business_w = per_cell(0.0, 1.0)
    peak, floor = per_cell(0.45, 0.9), per_cell(0.03, 0.12)
    bandwidth_mhz = rng.choice(np.array([10.0, 20.0, 40.0, 100.0], dtype=f32), size=(C, 1), p=[0.2, 0.4, 0.25, 0.15])
    rsrp_c = per_cell(-108.0, -82.0)
    interf_c = rsrp_c - per_cell(6.0, 16.0)
    ul_loss = per_cell(3.0, 8.0)
    users_peak = per_cell(40.0, 400.0)
    d0, d1 = per_cell(2.0, 6.0), per_cell(2.0, 6.0)
    p_base, p_dyn = per_cell(250.0, 450.0), per_cell(150.0, 300.0)
    sinr_nom = np.power(f32(10.0), (rsrp_c - db_sum(interf_c + 10 * np.log10(f32(0.55)), f32(NOISE_DBM))) / 10)
    cap_nom = bandwidth_mhz * spectral_efficiency(sinr_nom) * f32(1000.0)
    return CellParameters(phase, business_w, peak, floor, bandwidth_mhz, rsrp_c, interf_c, ul_loss, users_peak,
                          d0, d1, p_base, p_dyn, cap_nom)


def derive_kpis(out: np.ndarray, p: CellParameters, *, base: np.ndarray, diurnal: np.ndarray, offered: np.ndarray,
                drop: np.ndarray, bursts: np.ndarray, drift: np.ndarray, interf_shift: np.ndarray,
                normal: Callable[[], np.ndarray]) -> None:
    """Radio, capacity and the KPIs of SYNTHETIC_KPIS (in that order) into out (cells, steps, K).

    The latent drivers are (cells, steps) float32: base load, diurnal profile value, offered load, outage
    factor drop, bursts, RSRP drift (dB) and interference shift (dB); p holds the same cells' parameters;
    normal() returns a fresh (cells, steps) standard normal float32 array (drawn 11 times, in a fixed order).
    """
    f32 = np.float32
    rsrp = p.rsrp_c - 2.0 * (1.0 - diurnal) + drift
    interf = p.interf_c + 10.0 * np.log10(0.1 + 0.9 * np.minimum(base, 1.0)) + interf_shift + normal()
    sinr_db = rsrp - db_sum(interf, f32(NOISE_DBM))
    sinr = np.power(f32(10.0), sinr_db / f32(10.0))
    cap = p.bandwidth_mhz * spectral_efficiency(sinr) * f32(1000.0)
    rho_raw = offered * p.cap_nom / np.maximum(cap, f32(1.0))  # PRB demand; > 1 is overload
    rho = np.clip(rho_raw, 0.0, 1.0)

    out[:, :, _COL["DRB.UEThpDl"]] = cap * (1.0 - np.minimum(rho_raw, 0.97)) * drop * np.exp(0.08 * normal())
    # UL: UE power-limited (SINR lower by ul_loss, a third of the capacity), a tenth of the DL traffic
    cap_ul = p.bandwidth_mhz * spectral_efficiency(sinr / np.power(f32(10.0), p.ul_loss / 10)) * f32(330.0)
    rho_ul = 0.1 * offered * p.cap_nom / np.maximum(cap_ul, f32(1.0))
    out[:, :, _COL["DRB.UEThpUl"]] = cap_ul * (1.0 - np.minimum(rho_ul, 0.97)) * drop * np.exp(0.1 * normal())
    out[:, :, _COL["RRU.PrbUsedDl"]] = 100.0 * np.clip(0.02 + 0.98 * rho + 0.01 * normal(), 0.0, 1.0)
    users = p.users_peak * np.maximum(0.05 + 0.95 * (base + 0.5 * bursts) / p.peak, 0.0) * drop
    out[:, :, _COL["RRC.ConnMean"]] = np.maximum(users + np.sqrt(users) * normal(), 0.0)
    busy = np.minimum(rho_raw, 0.98)
    delay = p.d0 + p.d1 * busy / (1.0 - busy) + 50.0 * p.d1 * np.maximum(rho_raw - 1.0, 0.0)
    out[:, :, _COL["DRB.RlcSduDelayDl"]] = np.minimum(delay * np.exp(0.1 * normal()), 1000.0)
    out[:, :, _COL["RF.serving.RSRP"]] = rsrp + 0.5 * normal()
    rsrq = -10.0 * np.log10(2.0 + 10.0 * rho + 12.0 / np.maximum(sinr, f32(1e-3))) + 0.3 * normal()
    out[:, :, _COL["RF.serving.RSRQ"]] = np.clip(rsrq, -19.5, -3.0)
    out[:, :, _COL["RF.serving.RSSINR"]] = np.clip(sinr_db + 0.5 * normal(), -20.0, 40.0)
    out[:, :, _COL["DRB.UECqiDl"]] = np.clip((sinr_db + 7.9) / 1.86 + 0.25 * normal(), 0.0, 15.0)
    out[:, :, _COL["PEE.AvgPower"]] = p.p_base + p.p_dyn * rho + 3.0 * normal()
