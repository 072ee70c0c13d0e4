"""Forecast → control actions (E2SM-RC style; README, "The xApp service"), with hysteresis so actions do not flap.

Rules, evaluated batch-wise over the series of one engine step (a rule whose KPI is not a forecast target is
skipped). PRB use is the `prb_kpi` target (RRU.PrbUsedDl, percent of the cell's PRBs); "peak" is the max over
the horizon of the point forecast, "upper peak" the max of the upper bound.

- anomaly_alarm (every series): a realized target outside its h=1 interval; severity from how many interval
  widths it lies beyond the violated bound (`anomaly_severity`).
- slice_prb_quota (slice series): peak > prb_high → raise, upper peak < prb_low → lower; the proposal is
  E2SM-RC RRM policy ratios with dedicated ≤ min ≤ max (see `ActionPolicy._quota`).
- cell_sleep (cell-level series, objective energy or balanced): upper peak < sleep_load → sleep for the
  horizon; a cell put to sleep wakes (any objective) when its upper peak > wake_load.
- traffic_steering (cell-level series): peak > steer_load → move the share of traffic that brings the peak
  back to prb_high to the least loaded neighbour with headroom (or leave the target to the RAN).

Raise-side rules trigger on the point forecast, release-side rules (lower quota, sleep) on the upper bound.
Confidence = 1 / (1 + 19^(−m)), m = distance of the forecast beyond the threshold in interval half-widths:
0.5 at the threshold, 0.95 when the whole (90 %) interval is beyond it.

Hysteresis per (series slot, channel): a channel's condition must hold for `enter_after` consecutive decisions
and the action kind must be out of its cooldown; the channel then stays active (no repeat) until the condition
has been absent for `exit_after` decisions. Waking bypasses the cooldown (capacity first); a critical alarm
(severity ≥ `alarm_immediate_severity`) bypasses `enter_after`, and an alarm escalates when the severity grows.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from contract.objectives import OBJECTIVES
from contract.series import cell_of, ue_of
from service.actions.config import MODES, RUN_MAX, ActionConfig

KINDS = ("slice_prb_quota", "traffic_steering", "cell_sleep", "anomaly_alarm")
SLEEP_OBJECTIVES = frozenset({"energy", "balanced"})

# hysteresis channels and the action kind (index into KINDS) each one emits
ALARM, QUOTA_UP, QUOTA_DOWN, SLEEP, WAKE, STEER = range(6)
_CHANNEL_KIND = np.array([3, 0, 0, 2, 2, 1])
CELL, SLICE, UE = 0, 1, 2  # series levels
_NEVER = np.iinfo(np.int64).min // 2
_LN19 = math.log(19.0)


@dataclass
class Action:
    """One control action. `detail` holds the fields of the proto sub-message of `kind`."""

    kind: str  # one of KINDS
    cell: str  # series key (cell id, optionally |ue=…|s=sst.sd)
    slot: int
    mode: str  # recommend | enforce
    reason: str
    confidence: float  # 0..1
    detail: dict
    horizon: int  # forecast step (1..H) that triggered it; 1 for alarms (the h=1 interval)
    time_ms: int
    action_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def confidence(margin: np.ndarray | float) -> np.ndarray:
    """Squash a margin in interval half-widths to 0..1 (0.5 at 0, 0.95 at 1); NaN → 0.5."""
    m = np.nan_to_num(np.asarray(margin, np.float64), nan=0.0, posinf=50.0, neginf=-50.0)
    return 1.0 / (1.0 + np.exp(-_LN19 * np.clip(m, -50.0, 50.0)))


def _rowwise(ufunc: np.ufunc, a: np.ndarray) -> np.ndarray:
    """ufunc-reduce (N, C) over its few columns, one vector op per column (numpy's axis-1 reduction of short
    rows is several times slower)."""
    out = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        ufunc(out, a[:, j], out=out)
    return out


def _margin(num: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """num / half_width; 0 where the interval is empty (uncalibrated: no evidence either way)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(half_width > 0, num / half_width, 0.0)


class ActionPolicy:
    """Turns batched forecasts into actions. Per-slot state grows with the slots it sees; a slot that
    now carries another series is reset (detected from the series key, or told through `reset`)."""

    def __init__(self, targets: Sequence[str], config: ActionConfig | None = None, verify_keys: bool = True):
        """verify_keys: compare each series key with the one its slot had (~25–100 ns per series) to notice
        reassigned slots; a caller that calls reset() on every reassignment may turn it off."""
        self.targets = list(targets)
        self.config = config if config is not None else ActionConfig()
        self.verify_keys = verify_keys
        self._cap = 0
        self._slot_of_cell: dict[str, int] = {}  # cell-level series: cell id → slot
        self._groups: dict[str, set[int]] = {}  # cell id prefix before the last '-' → cell-level slots
        self._group_arrays: dict[str, np.ndarray] = {}
        self._alloc(0)

    @property
    def prb_index(self) -> int | None:
        k = self.config.prb_kpi
        return self.targets.index(k) if k in self.targets else None

    # -- per-slot state -------------------------------------------------------------------------------
    def _alloc(self, cap: int) -> None:
        K, old = len(self.targets), self._cap
        specs = {"_key": (None, (), object), "_level": (CELL, (), np.int8),
                 # per channel: > 0 decisions in a row with the condition, < 0 in a row without (saturating)
                 "_run": (0, (6,), np.int16), "_active": (False, (6,), bool),
                 "_last_ms": (_NEVER, (6,), np.int64),  # last action of the channel's kind
                 "_alarm_sev": (0, (), np.int8), "_sleeping": (False, (), bool),
                 "_prev": (np.nan, (3, K), np.float32),  # h=1 point, lower, upper of the last decision
                 "_load_peak": (np.nan, (), np.float32), "_load_ms": (_NEVER, (), np.int64),
                 "_first_ms": (0, (), np.int64), "_decisions": (0, (), np.int64)}
        for name, (fill, shape, dtype) in specs.items():
            grown = np.full((cap, *shape), fill, dtype)
            if old:
                grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        self._cap = cap

    def ensure_capacity(self, n: int) -> None:
        """Grow the per-slot arrays to hold slots 0..n-1 (geometrically; new slots start reset)."""
        if n > self._cap:
            self._alloc(max(n, 2 * self._cap))

    def reset(self, slots: np.ndarray) -> None:
        """Forget the series of `slots` (the caller reassigned them)."""
        for s in np.asarray(slots, np.int64).tolist():
            if s < self._cap:
                self._forget(s)

    def _forget(self, s: int) -> None:
        key = self._key[s]
        if key is not None and self._level[s] == CELL:
            cell = cell_of(key)
            if self._slot_of_cell.get(cell) == s:
                del self._slot_of_cell[cell]
            prefix = cell.rpartition("-")[0]
            if prefix and s in self._groups.get(prefix, ()):
                self._groups[prefix].discard(s)
                self._group_arrays.pop(prefix, None)
        self._key[s] = None
        self._level[s] = CELL
        self._run[s] = 0
        self._active[s] = False
        self._last_ms[s] = _NEVER
        self._alarm_sev[s] = 0
        self._sleeping[s] = False
        self._prev[s] = np.nan
        self._load_peak[s] = np.nan
        self._load_ms[s] = _NEVER
        self._first_ms[s] = self._decisions[s] = 0

    def _register(self, cells: Sequence[str], slots: np.ndarray, slices: Sequence) -> None:
        """Take note of series new to their slot (a Python loop over those only)."""
        known = self._key[slots]
        changed = np.flatnonzero(known != np.array(cells, dtype=object) if self.verify_keys else
                                 np.equal(known, None))
        for i in changed.tolist():
            s, key = int(slots[i]), cells[i]
            self._forget(s)
            self._key[s] = key
            cell = cell_of(key)
            level = UE if ue_of(key) is not None else SLICE if slices[i] is not None else CELL
            self._level[s] = level
            if level == CELL:
                self._slot_of_cell[cell] = s
                prefix = cell.rpartition("-")[0]
                if prefix:
                    self._groups.setdefault(prefix, set()).add(s)
                    self._group_arrays.pop(prefix, None)

    # -- decisions --------------------------------------------------------------------------------------
    def decide(self, now_ms: int, cells: Sequence[str], slots: np.ndarray, point: np.ndarray, lower: np.ndarray,
               upper: np.ndarray, actual: np.ndarray, outside: np.ndarray,
               slices: Sequence[tuple[int, int | None] | None], objective: Sequence[str] | str = "balanced",
               modes: Sequence[str | None] | None = None) -> list[Action]:
        """One decision for N series (distinct slots). point/lower/upper (N, H, K) and actual (N, K) in KPI
        units (NaN = missing), outside (N, K) from ConformalIntervals.observe, slices (sst, sd) or None per
        series, objective per series or one for all, modes: per-series override of config.mode (None = keep)."""
        cfg, now = self.config, int(now_ms)
        slots = np.asarray(slots, np.int64)
        N, K = len(slots), len(self.targets)
        point, lower, upper = (np.asarray(a, np.float32) for a in (point, lower, upper))
        actual, outside = np.asarray(actual, np.float32), np.asarray(outside, bool)
        if point.ndim != 3 or point.shape[0] != N or point.shape[2] != K or lower.shape != point.shape \
                or upper.shape != point.shape:
            raise ValueError(f"point/lower/upper must be ({N}, H, {K}); got {point.shape}, {lower.shape}, "
                             f"{upper.shape}")
        if actual.shape != (N, K) or outside.shape != (N, K) or len(cells) != N or len(slices) != N:
            raise ValueError(f"cells, slices ({N}), actual and outside ({N}, {K}) must match the {N} slots")
        if modes is not None and len(modes) != N:
            raise ValueError(f"modes must have one entry per series ({N})")
        if isinstance(objective, str):
            if objective not in OBJECTIVES:
                raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        elif len(objective) != N:
            raise ValueError(f"objective must be one name or one per series ({N})")
        if N == 0:
            return []
        self.ensure_capacity(int(slots.max()) + 1)
        self._register(cells, slots, slices)
        level = self._level[slots]
        cond = np.zeros((N, 6), bool)

        # anomaly: how far beyond the h=1 interval issued one sample ago, in interval widths
        p0, lo0, hi0 = self._prev[slots].transpose(1, 0, 2)  # (N, K) each
        with np.errstate(divide="ignore", invalid="ignore"):
            widths = np.maximum(lo0 - actual, actual - hi0) / (hi0 - lo0)
        widths = np.where(np.isnan(widths), 0.0, np.maximum(widths, 0.0))  # unknown bounds: just outside
        widths = np.where(outside, widths, -1.0)
        t1, t2, t3 = cfg.anomaly_severity
        worst = _rowwise(np.maximum, widths)  # (N,) the target furthest outside, -1 = none
        severity = (worst >= t1).astype(np.int8) + (worst >= t2) + (worst >= t3)
        cond[:, ALARM] = severity >= 1

        k = self.prb_index
        if k is not None:
            p, lo, up = point[:, :, k], lower[:, :, k], upper[:, :, k]  # (N, H)
            peak, up_peak = _rowwise(np.maximum, p), _rowwise(np.maximum, up)  # NaN anywhere → NaN → False
            cell, sleeping = level == CELL, self._sleeping[slots]
            cond[:, QUOTA_UP] = (level == SLICE) & (peak > cfg.prb_high)
            cond[:, QUOTA_DOWN] = (level == SLICE) & (up_peak < cfg.prb_low)
            cond[:, STEER] = cell & (peak > cfg.steer_load)
            cond[:, WAKE] = cell & sleeping & (up_peak > cfg.wake_load)
            may_sleep = cell & ~sleeping & (up_peak < cfg.sleep_load)
            if isinstance(objective, str):
                may_sleep &= objective in SLEEP_OBJECTIVES
            else:
                cand = np.flatnonzero(may_sleep)
                may_sleep[cand] = [objective[i] in SLEEP_OBJECTIVES for i in cand.tolist()]
            cond[:, SLEEP] = may_sleep
            fresh = cell & ~np.isnan(peak)
            self._load_peak[slots[fresh]] = peak[fresh]
            self._load_ms[slots[fresh]] = now

        # hysteresis; the cooldown is checked for the few candidates only
        run = self._run[slots]
        run = np.where(cond, np.minimum(np.maximum(run, 0), RUN_MAX - 1) + 1,
                       np.maximum(np.minimum(run, 0), 1 - RUN_MAX) - 1).astype(np.int16)
        active = self._active[slots] & (run > -cfg.exit_after)
        ready = run >= cfg.enter_after
        ready[:, ALARM] |= severity >= cfg.alarm_immediate_severity
        fire = cond & ready
        fire[:, 1:] &= ~active[:, 1:]
        again = np.flatnonzero(fire[:, ALARM] & active[:, ALARM])  # an alarm repeats only when it escalates
        fire[again, ALARM] = severity[again] > self._alarm_sev[slots[again]]
        rows = np.unique(np.flatnonzero(fire) // fire.shape[1])
        if rows.size:
            cool = now - self._last_ms[slots[rows]] >= cfg.cooldown_ms
            cool[:, WAKE] = True
            fire[rows] &= cool
            rows = rows[fire[rows].any(axis=1)]
        row_modes = [cfg.mode if modes is None or modes[i] is None else modes[i] for i in rows.tolist()]
        for i, mode in zip(rows.tolist(), row_modes):
            if mode not in MODES:
                raise ValueError(f"mode for {cells[i]!r} must be one of {MODES}, got {mode!r}")
        escalated = active[rows, ALARM]
        active |= fire
        self._run[slots], self._active[slots] = run, active

        # per-slot memory for the next decision
        prev = np.empty((N, 3, K), np.float32)
        prev[:, 0], prev[:, 1], prev[:, 2] = point[:, 0], lower[:, 0], upper[:, 0]
        self._prev[slots] = prev
        first = self._decisions[slots] == 0
        self._first_ms[slots[first]] = now
        self._decisions[slots] += 1
        if rows.size == 0:
            return []

        actions: list[Action] = []
        for i, esc, mode in zip(rows.tolist(), escalated.tolist(), row_modes):
            s = int(slots[i])
            for ch in np.flatnonzero(fire[i]).tolist():
                self._last_ms[s, _CHANNEL_KIND[ch] == _CHANNEL_KIND] = now
                if ch == ALARM:
                    kk = int(np.argmax(widths[i]))
                    self._alarm_sev[s] = severity[i]
                    a = self._alarm(i, kk, float(actual[i, kk]), float(p0[i, kk]), float(lo0[i, kk]),
                                    float(hi0[i, kk]), float(widths[i, kk]), int(severity[i]), esc)
                elif ch in (QUOTA_UP, QUOTA_DOWN):
                    a = self._quota(ch == QUOTA_UP, slices[i], p[i], lo[i], up[i])
                elif ch == STEER:
                    a = self._steer(cells[i], s, now, p[i], lo[i])
                else:
                    self._sleeping[s] = ch == SLEEP
                    a = self._sleep(s, now, p[i], lo[i], up[i]) if ch == SLEEP else self._wake(p[i], lo[i], up[i])
                kind, reason, conf, detail, h = a
                actions.append(Action(kind, cells[i], s, mode, reason, float(conf), detail, h, now))
        return actions

    # -- action builders (only for series that emit) -------------------------------------------------------
    def _alarm(self, i, k, observed, expected, lower, upper, widths, severity, escalated):
        kpi = self.targets[k]
        conf = confidence(1.0 + 2.0 * widths) if np.isfinite(lower) else 0.5
        reason = (f"{kpi} = {observed:.4g} outside its forecast interval [{lower:.4g}, {upper:.4g}] (expected "
                  f"{expected:.4g}): {widths:.2f} interval widths beyond the bound, severity {severity}"
                  + (" (escalated)" if escalated else ""))
        detail = {"kpi": kpi, "observed": observed, "expected": expected, "lower": lower, "upper": upper,
                  "severity": severity}
        return "anomaly_alarm", reason, conf, detail, 1

    def _quota(self, up, sl, p, lo, hi):
        """E2SM-RC RRM policy ratios for the slice, from the forecast over the horizon (both directions):
        min_prb_ratio (guaranteed) = ⌈upper peak + headroom⌉, dedicated_prb_ratio (reserved even when idle) =
        ⌊lowest lower bound⌋ (traffic the slice is all but certain to carry), max_prb_ratio = the configured
        cap; clipped so that 0 ≤ dedicated ≤ min ≤ max ≤ 100."""
        cfg = self.config
        mx = cfg.slice_max_prb_ratio
        mn = int(min(max(math.ceil(float(hi.max()) + cfg.quota_headroom), 0), mx))
        ded = int(min(max(math.floor(float(lo.min())), 0), mn))
        if up:
            h = int(np.argmax(p))
            conf = float(confidence(_margin(p - cfg.prb_high, p - lo)).max())
            why = f"forecast peak {p[h]:.1f} % > prb_high {cfg.prb_high:g} % in {h + 1} step(s): raise"
        else:
            h = int(np.argmax(hi))
            conf = float(confidence(_margin(cfg.prb_low - p, hi - p)).min())
            why = f"forecast upper bound ≤ {hi[h]:.1f} % < prb_low {cfg.prb_low:g} % over the horizon: lower"
        sst, sd = sl
        name = f"sst={sst}" + (f" sd={sd}" if sd is not None else "")
        reason = (f"slice {name} PRB use {why} the quota to min {mn} %, dedicated {ded} %, max {mx} % "
                  f"(upper peak {float(hi.max()):.1f} % + {cfg.quota_headroom:g} headroom)")
        detail = {"slice": (sst, sd), "min_prb_ratio": mn, "max_prb_ratio": mx, "dedicated_prb_ratio": ded}
        return "slice_prb_quota", reason, conf, detail, h + 1

    def _steer(self, cell_key, s, now, p, lo):
        cfg = self.config
        h = int(np.argmax(p))
        peak = float(p[h])
        need = min(max((peak - cfg.prb_high) / peak, 0.0), cfg.max_steer_share)
        target, share, nb_load = self._neighbour(cell_of(cell_key), s, now), need, None
        if target is not None:
            target, nb_load = target
            share = min(need, (cfg.prb_high - nb_load) / peak)  # keep the neighbour below prb_high
        conf = float(confidence(_margin(p - cfg.steer_load, p - lo)).max())
        to = (f"to {target} (forecast peak {nb_load:.1f} %)" if target
              else "to a neighbour chosen by the RAN (no known neighbour with headroom)")
        reason = (f"PRB use forecast peak {peak:.1f} % > steer_load {cfg.steer_load:g} % in {h + 1} step(s): "
                  f"steer {share:.1%} of the traffic {to} to bring it to {cfg.prb_high:g} %")
        return "traffic_steering", reason, conf, {"target_cell_id": target or "", "traffic_share": share}, h + 1

    def _neighbour(self, cell: str, s: int, now: int) -> tuple[str, float] | None:
        """Least loaded neighbour with headroom below prb_high: configured neighbours, else cells sharing the
        id prefix before the last '-', among cell-level series with a forecast at most neighbour_max_age_ms old."""
        cfg = self.config
        names = cfg.neighbours.get(cell)
        if names is not None:
            cand = np.array([self._slot_of_cell[n] for n in names if n in self._slot_of_cell], np.int64)
        else:
            prefix = cell.rpartition("-")[0]
            if not prefix:
                return None
            cand = self._group_arrays.get(prefix)
            if cand is None:
                cand = self._group_arrays[prefix] = np.fromiter(self._groups.get(prefix, ()), np.int64)
        cand = cand[cand != s]
        load = self._load_peak[cand]
        ok = (now - self._load_ms[cand] <= cfg.neighbour_max_age_ms) & (load < cfg.prb_high)
        if not ok.any():
            return None
        j = int(np.argmin(np.where(ok, load, np.inf)))
        return cell_of(self._key[cand[j]]), float(load[j])

    def _sleep(self, s, now, p, lo, hi):
        cfg = self.config
        H = len(p)
        period = cfg.period_ms
        if period is None:
            n = int(self._decisions[s])
            period = (now - int(self._first_ms[s])) / (n - 1) if n > 1 and now > self._first_ms[s] else 1000.0
        duration = max(1, math.ceil(H * period / 1000.0))
        h = int(np.argmax(hi))
        conf = float(confidence(_margin(cfg.sleep_load - p, hi - p)).min())
        reason = (f"PRB use forecast upper bound ≤ {hi[h]:.1f} % < sleep_load {cfg.sleep_load:g} % over the "
                  f"next {H} step(s): sleep for {duration} s")
        return "cell_sleep", reason, conf, {"sleep": True, "duration_s": duration}, h + 1

    def _wake(self, p, lo, hi):
        cfg = self.config
        h = int(np.argmax(hi))
        conf = float(confidence(_margin(p - cfg.wake_load, p - lo)).max())
        reason = (f"sleeping cell: PRB use forecast upper bound {hi[h]:.1f} % > wake_load {cfg.wake_load:g} % "
                  f"in {h + 1} step(s): wake")
        return "cell_sleep", reason, conf, {"sleep": False, "duration_s": 0}, h + 1
