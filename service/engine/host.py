"""One loaded bundle inside the engine: runtime, per-cell state table, normalization, intervals, latest
forecasts. Everything per cell lives in arrays indexed by the cell's slot, so a batched step is a few
numpy gathers and scatters around one runtime call. Only the engine's worker thread calls `step`,
`warm`, `restore` and `snapshot_dirty`; readers of the latest forecasts take `lock`.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from dataclasses import dataclass

import numpy as np

from contract.objectives import OBJECTIVE_DIM, objective_array
from service.engine.conformal import ConformalIntervals
from service.engine.state_table import StateTable, TableFullError
from service.runtime.backends import create_runtime
from service.runtime.bundle import Bundle
from service.runtime.ms3m_stepper import MS3MStepper
from service.runtime.rows import LazyRows, RowUpdate, row_index, take_rows

DEFAULT_OBJECTIVE = objective_array("balanced", 1.0)[0]


@dataclass
class StepResult:
    """A batched step of one model for N cells (all arrays in KPI units unless noted)."""

    slots: np.ndarray  # (N,)
    timestamp_ms: np.ndarray  # (N,) of the sample applied
    point: np.ndarray  # (N, H, K)
    lower: np.ndarray  # (N, H, K)
    upper: np.ndarray  # (N, H, K)
    actual: np.ndarray  # (N, K) realized target values of this sample (NaN = absent)
    outside: np.ndarray  # (N, K) bool: actual outside the 1-step interval issued one sample earlier
    gate: np.ndarray | None = None  # (N, E) MS³M gate weights
    logits: np.ndarray | None = None  # (N, E) MS³M gate logits (objective-conditioned preferences)
    expert_forecasts: np.ndarray | None = None  # (N, E, K) 1-step forecast of each expert (KPI units)
    expert_runs: np.ndarray | None = None  # (E,) cells each expert's graph ran for
    expert_seconds: np.ndarray | None = None  # (E,) time spent in each expert's graph
    applied: np.ndarray | None = None  # (N_in,) bool over the rows asked for: False = not finite, not applied


def concat_results(parts: list[StepResult], applied: np.ndarray) -> StepResult | None:
    """One StepResult from single-cell ones (the engine's cell-by-cell retry); None when none applied."""
    if not parts:
        return None
    cat = lambda name: None if getattr(parts[0], name) is None else np.concatenate(  # noqa: E731
        [getattr(p, name) for p in parts])
    runs = None if parts[0].expert_runs is None else np.sum([p.expert_runs for p in parts], 0)
    secs = None if parts[0].expert_seconds is None else np.sum([p.expert_seconds for p in parts], 0)
    return StepResult(cat("slots"), cat("timestamp_ms"), cat("point"), cat("lower"), cat("upper"), cat("actual"),
                      cat("outside"), cat("gate"), cat("logits"), cat("expert_forecasts"), runs, secs, applied)


def _keep_rows(st, keep: np.ndarray, applied: np.ndarray, renumber: np.ndarray):
    """A step's new state tensor restricted to the applied rows (`keep`, their batch positions)."""
    if st is None:
        return None
    if isinstance(st, RowUpdate):
        ok = applied[st.rows]
        return RowUpdate(renumber[st.rows[ok]], st.values[ok])
    return st[keep]


def finite_rows(a: np.ndarray) -> np.ndarray:
    """(n, ...) → (n,) bool: the rows holding no NaN or ±inf. One matrix-vector product per tensor, six times
    cheaper than isfinite().all() at 1,000 cells: NaN and ±inf propagate through its sums (a row whose finite
    values sum past float32's range counts as not finite too)."""
    flat = a.reshape(len(a), -1)
    return np.isfinite(flat @ np.ones(flat.shape[1], flat.dtype))


class ModelHost:
    """A bundle served for many cells. `service_kpis` is the column order of the samples it receives."""

    def __init__(self, bundle: Bundle, service_kpis: list[str], runtime: str = "onnxruntime",
                 threads: int | None = None, capacity: int = 1024, max_cells: int = 1_000_000,
                 coverage: float = 0.9):
        m = bundle.manifest
        self.bundle, self.name = bundle, m.name
        missing = [k for k in m.inputs + m.targets if k not in service_kpis]
        if missing:
            raise ValueError(f"bundle {m.name}: KPI(s) {missing} are not in the service's KPI list")
        self.inputs, self.targets = list(m.inputs), list(m.targets)
        self.input_cols = np.array([service_kpis.index(k) for k in m.inputs])
        self.target_cols = np.array([service_kpis.index(k) for k in m.targets])
        n = m.normalization
        self.in_mean, self.in_std = np.array(n.input_mean, np.float32), np.array(n.input_std, np.float32)
        self.t_mean, self.t_std = np.array(n.target_mean, np.float32), np.array(n.target_std, np.float32)
        self.horizon, self.n_targets, self.period_ms = m.horizon, len(m.targets), m.period_ms
        self.is_ms3m = bool(m.experts)
        if self.is_ms3m and runtime == "onnxruntime":
            self.stepper: MS3MStepper | None = MS3MStepper(bundle, threads)
            self.runtime = None
        else:
            self.stepper = None
            self.runtime = create_runtime(bundle, runtime, threads)
        self.expert_names = [e.name for e in m.experts] if self.is_ms3m else []
        self.scales = [e.scale for e in m.experts] if self.is_ms3m else []
        self.clock_mod = math.lcm(*self.scales) if self.scales else 1
        spec = [(s.name, tuple(s.shape)) for s in m.state]
        self.n_model_state = len(spec)
        # extra per-cell rows that travel with the state (and its snapshots): the last raw input values
        # (forward fill of absent KPIs) and the sample clock mod lcm(scales) (MS³M expert phases)
        spec += [("host.ffill", (len(m.inputs),)), ("host.clock", (1,))]
        # the model's identity for snapshots: its graphs' checksums and state layout (another version is refused)
        identity = json.dumps([sorted((r, f.sha256) for r, f in m.files.items()), spec], default=str).encode()
        self.table = StateTable(spec, capacity=capacity, max_cells=max_cells, identity=identity)
        self.intervals = ConformalIntervals(self.horizon, self.n_targets, coverage=coverage)
        self.lock = threading.Lock()
        self._new_slots: list[int] = []  # allocated since the last take_new_slots() (policy lookup)
        self.fallbacks = 0  # steps of a cell that had no active expert (all experts stepped instead)
        self._warming: dict[int, dict[int, list[np.ndarray]]] = {}  # slot → expert → inputs since begin_warm
        self._cap = 0
        self._sync_capacity()

    # -- per-slot arrays -----------------------------------------------------------------------
    def _sync_capacity(self) -> None:
        """Grow the per-slot arrays with the state table (new rows get their reset values)."""
        cap, old = self.table.capacity, self._cap
        if cap == old:
            return
        H, K, E = self.horizon, self.n_targets, len(self.expert_names)
        specs = {"last_ts": (-1, (), np.int64), "dirty": (False, (), bool), "point": (np.nan, (H, K), np.float32),
                 "lower": (np.nan, (H, K), np.float32), "upper": (np.nan, (H, K), np.float32),
                 "objective": (0.0, (OBJECTIVE_DIM,), np.float32), "enforce": (False, (), bool)}
        if E:
            # pending_off: experts the router switched off, kept running until a new expert is warm
            specs.update(active=(True, (E,), bool), pending_off=(False, (E,), bool), gate=(np.nan, (E,), np.float32))
        for name, (fill, shape, dtype) in specs.items():
            grown = np.full((cap, *shape), fill, dtype)
            if old:
                grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        self.objective[old:] = DEFAULT_OBJECTIVE
        self.intervals.ensure_capacity(cap)
        self._cap = cap

    def _reset(self, slots: list[int]) -> None:
        if not slots:
            return
        s = np.asarray(slots)
        self.last_ts[s] = -1
        self.dirty[s] = False
        self.point[s] = self.lower[s] = self.upper[s] = np.nan
        self.objective[s] = DEFAULT_OBJECTIVE
        self.enforce[s] = False
        self.table.arrays[-2][s] = np.nan  # ffill: nothing seen yet
        for slot in slots:
            self._warming.pop(int(slot), None)
        self._new_slots.extend(slots)
        if self.is_ms3m:
            self.active[s] = True
            self.pending_off[s] = False
            self.gate[s] = np.nan
        self.intervals.reset(s)

    def slots(self, series: list[str], now_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """(slots, ok mask): slots for the series, allocating new ones; ok=False where the table is full."""
        new: list[int] = []
        try:
            slots = self.table.slots_for(series, now_ms, self.period_ms, new)
            ok = np.ones(len(series), bool)
        except TableFullError:
            slots = np.full(len(series), -1, np.int64)
            for i, key in enumerate(series):  # slow path: as many as fit
                with contextlib.suppress(TableFullError):
                    slots[i] = self.table.slots_for([key], now_ms, self.period_ms, new)[0]
            ok = slots >= 0
        self._sync_capacity()
        self._reset(new)
        return slots, ok

    # -- the step ----------------------------------------------------------------------------------
    def step(self, slots: np.ndarray, values: np.ndarray, timestamp_ms: np.ndarray) -> StepResult:
        """Apply one sample to each of `slots` (distinct). values (N, D_service) raw, NaN = absent.

        Nothing is written before the runtime has answered, and a row whose forecast or new state is not
        finite is not applied at all (its state, forecast and intervals stay as they were): the result
        holds only the applied rows, `result.applied` (N,) says which. Raises only for a runtime failure,
        before anything was written."""
        rows = row_index(slots)  # a slice for one ascending run of slots: block copies, not gathers
        if self.stepper is not None:  # MS³M reads only the state tensors of the experts that run
            states = LazyRows(self.table.arrays[: self.n_model_state], rows)
            ffill, clock = take_rows(self.table.arrays[-2], rows), take_rows(self.table.arrays[-1], rows)
        else:
            arrays = self.table.gather(rows)
            states, ffill, clock = arrays[: self.n_model_state], arrays[-2], arrays[-1]
        x = values[:, self.input_cols]
        x = np.where(np.isnan(x), ffill, x)  # absent → last value seen for the cell
        xn = np.nan_to_num((x - self.in_mean) / self.in_std, nan=0.0).astype(np.float32)  # never seen → mean
        gate = logits = expert_fc = runs = secs = changed = None
        if self.stepper is not None:
            active = self.active[slots]
            idle = ~active.any(1)
            if idle.any():  # never expected (the router keeps a set until its successor is warm): step all
                active[idle] = True
                self.active[slots[idle]] = True
                self.fallbacks += int(idle.sum())
            y, new_states, details = self.stepper.run(xn, states, self.objective[slots], active)
            gate, logits, runs, secs = details.gate, details.logits, details.expert_runs, details.expert_seconds
            changed = details.changed
            with np.errstate(invalid="ignore", divide="ignore"):
                y_e = details.contributions[:, :, 0, :] / gate[:, :, None]  # (N, E, K) 1-step, normalized
            expert_fc = np.where(gate[:, :, None] > 0, y_e * self.t_std + self.t_mean, np.nan)
        else:
            y, new_states = self.runtime.run(xn, states)
        with np.errstate(over="ignore", invalid="ignore"):
            point = (y * self.t_std + self.t_mean).astype(np.float32)
        applied = np.isfinite(point).reshape(len(slots), -1).all(1)
        for i, st in enumerate(new_states):
            if isinstance(st, RowUpdate):
                applied[st.rows[~finite_rows(st.values)]] = False
            elif st is not None and (changed is None or changed[i]):
                applied &= finite_rows(st)
        if not applied.all():
            keep = np.flatnonzero(applied)
            renumber = np.cumsum(applied) - 1  # batch position → position among the kept rows
            slots, values, timestamp_ms, x, point = slots[keep], values[keep], timestamp_ms[keep], x[keep], point[keep]
            rows = slots
            clock = clock[keep]
            new_states = [_keep_rows(st, keep, applied, renumber) if changed is None or changed[i] else None
                          for i, st in enumerate(new_states)]
            if gate is not None:
                gate, logits, expert_fc = gate[keep], logits[keep], expert_fc[keep]
        if self._warming:
            self._keep_warming_inputs(slots, xn if len(xn) == len(slots) else xn[applied])
        new_clock = np.remainder(clock + 1, self.clock_mod)
        write = [*new_states, x.astype(np.float32), new_clock]
        if changed is not None:  # MS³M: state of experts that did not run stays as it is
            write = [w if c else None for w, c in zip(write, [*changed.tolist(), True, True])]
        partial = [(i, w) for i, w in enumerate(write) if isinstance(w, RowUpdate)]
        for i, w in partial:
            self.table.arrays[i][slots[w.rows]] = w.values
            write[i] = None
        self.table.scatter(rows, write)
        actual = values[:, self.target_cols]
        outside = self.intervals.observe(slots, actual)
        lower, upper, _ = self.intervals.record(slots, point)
        with self.lock:
            self.point[slots], self.lower[slots], self.upper[slots] = point, lower, upper
            self.last_ts[slots] = timestamp_ms
            if gate is not None:
                self.gate[slots] = gate
        self.dirty[slots] = True
        return StepResult(slots, timestamp_ms, point, lower, upper, actual, outside, gate, logits, expert_fc, runs,
                          secs, applied)

    # -- MS³M experts -------------------------------------------------------------------------------
    def warm(self, slots: np.ndarray, expert: int, windows: list[np.ndarray]) -> None:
        """Warm expert `expert` of `slots` from each cell's recent raw samples (W_i, D_service), oldest
        first and ending at the cell's last applied sample, then mark it active (all in the calling thread;
        the service splits this into begin_warm → warm_pieces (any thread) → finish_warm)."""
        begun, _, _ = self.begin_warm(slots, expert)
        slots, windows = np.asarray(slots)[begun], [w for w, b in zip(windows, begun) if b]
        series = [self.table.cell_of(int(s)) for s in slots]
        self.finish_warm(slots, series, expert, self.warm_pieces(expert, windows, self.table.arrays[-1][slots, 0]))

    def begin_warm(self, slots: np.ndarray, expert: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Engine thread: from now on the inputs of `slots` are kept for `expert`'s catch-up. Returns which
        slots began (B,) bool (False: that expert of the slot is already warming), the timestamp of each slot's
        last applied sample (where the warm-up window must end) and its sample clock."""
        assert self.stepper is not None
        begun = np.zeros(len(slots), bool)
        for i, slot in enumerate(np.asarray(slots, np.int64).tolist()):
            mine = self._warming.setdefault(slot, {})
            if expert not in mine:
                mine[expert] = []
                begun[i] = True
        return begun, self.last_ts[slots].copy(), self.table.arrays[-1][slots, 0].astype(np.int64)

    def cancel_warm(self, slots: np.ndarray, expert: int) -> None:
        """Engine thread: forget a begun warm-up (the expert stays off)."""
        for slot in np.asarray(slots, np.int64).tolist():
            self._warming.get(slot, {}).pop(expert, None)
            if not self._warming.get(slot, True):
                del self._warming[slot]

    def warm_pieces(self, expert: int, windows: list[np.ndarray], clock: np.ndarray) -> list[np.ndarray]:
        """Any thread (pure): the expert's state pieces from raw windows (W_i, D_service), forward-filled and
        normalized, for cells at sample clock `clock` (B,). The expensive part of a warm-up."""
        xs = []
        for w in windows:
            filled = w[:, self.input_cols].copy()
            for t in range(1, len(filled)):  # forward fill inside the window (windows are short)
                miss = np.isnan(filled[t])
                filled[t, miss] = filled[t - 1, miss]
            xs.append(np.nan_to_num((filled - self.in_mean) / self.in_std, nan=0.0).astype(np.float32))
        return self.stepper.warm(expert, xs, np.asarray(clock, np.int64))

    def finish_warm(self, slots: np.ndarray, series: list[str | None], expert: int, pieces: list[np.ndarray]) -> int:
        """Engine thread: bring `pieces` up to date with the inputs stepped since begin_warm, install them and
        switch the expert on. Slots that meanwhile hold another series (or were reset) are skipped; returns
        how many were warmed."""
        keep = [i for i, (slot, key) in enumerate(zip(np.asarray(slots).tolist(), series))
                if key is not None and self.table.cell_of(slot) == key and expert in self._warming.get(slot, {})]
        rows = [self._warming[int(slots[i])].pop(expert) for i in keep]
        self.cancel_warm(slots, expert)
        if not keep:
            return 0
        slots = np.asarray(slots)[keep]
        pieces = self.stepper.advance(expert, [p[keep] for p in pieces], rows)
        sl = self.stepper.slices[expert]
        for offset, arr in enumerate(pieces):
            self.table.arrays[sl.start + offset][slots] = arr
        self.active[slots, expert] = True
        # the experts a decision switched off while no successor was warm go off now
        off = self.pending_off[slots]
        off[:, expert] = False
        self.active[slots] &= ~off
        self.pending_off[slots] = False
        self.dirty[slots] = True
        return len(keep)

    def _keep_warming_inputs(self, slots: np.ndarray, xn: np.ndarray) -> None:
        """Record the applied normalized inputs of slots being warmed (their catch-up in finish_warm)."""
        warming = np.fromiter(self._warming, np.int64, len(self._warming))
        for i in np.flatnonzero(np.isin(slots, warming)).tolist():  # a Python loop over the warming cells only
            for rows in self._warming[int(slots[i])].values():
                rows.append(xn[i])

    def take_new_slots(self) -> list[int]:
        out, self._new_slots = self._new_slots, []
        return out

    def mark_dirty(self, series: list[str]) -> None:
        """Snapshot these cells again next time (their last snapshot write failed)."""
        for key in series:
            slot = self.table.slot(key)
            if slot is not None:
                self.dirty[slot] = True

    def forecast_from_samples(self, values: np.ndarray) -> np.ndarray:
        """Cold-start forecast for a cell the service has not seen: step a zero state over its recent raw
        samples (T, D_service), oldest first, without touching the table. Returns the point (H, K) in KPI
        units. Thread-safe (runtimes are; no shared state is written)."""
        x = values[:, self.input_cols].astype(np.float32)
        for t in range(1, len(x)):
            miss = np.isnan(x[t])
            x[t, miss] = x[t - 1, miss]
        xn = np.nan_to_num((x - self.in_mean) / self.in_std, nan=0.0).astype(np.float32)
        specs = self.table.shapes[: self.n_model_state]
        state = [np.zeros((1, *shape), np.float32) for shape in specs]
        y = None
        for row in xn:
            if self.stepper is not None:
                y, state, _ = self.stepper.run(row[None], state)
            else:
                y, state = self.runtime.run(row[None], state)
        return (y[0] * self.t_std + self.t_mean).astype(np.float32)

    # -- snapshots -----------------------------------------------------------------------------------
    def snapshot_dirty(self, limit: int | None = None, start: int = 0) -> dict[str, tuple[int, bytes]]:
        """Packed states of cells changed since the last snapshot (series → (last sample ts, bytes)): the first
        `limit` (None: all) dirty slots from slot `start` on; they are marked clean."""
        return self.snapshot_chunk(start, limit)[0]

    def snapshot_chunk(self, start: int, limit: int | None) -> tuple[dict[str, tuple[int, bytes]], int | None]:
        """snapshot_dirty's records and the slot to continue from (None: no dirty slot after these), so a
        snapshot in chunks visits every slot once even while cells keep changing."""
        slots = np.flatnonzero(self.dirty[start : self._cap]) + start
        more = limit is not None and len(slots) > limit
        if more:
            slots = slots[:limit]
        records = self.table.pack_slots(slots)
        self.dirty[slots] = False
        out = {self.table.cell_of(s): (int(self.last_ts[s]), rec) for s, rec in zip(slots.tolist(), records)}
        return out, int(slots[-1]) + 1 if more else None

    def restore(self, records: dict[str, tuple[int, bytes]], now_ms: int = 0) -> int:
        """Load snapshots; returns how many were usable (a record of another state layout is skipped)."""
        n = 0
        for series, (ts, data) in records.items():
            try:
                state = self.table.unpack(data)
            except ValueError:
                continue
            slot, _ = self.slots([series], now_ms)
            self.table.set(series, state, now_ms)
            self.last_ts[slot[0]] = ts
            n += 1
        return n

    def latest(self, series: str) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """(timestamp, point, lower, upper, gate) of the series' latest forecast, or None."""
        slot = self.table.slot(series)
        if slot is None:
            return None
        with self.lock:
            if self.last_ts[slot] < 0:
                return None
            gate = self.gate[slot].copy() if self.is_ms3m else None
            return (int(self.last_ts[slot]), self.point[slot].copy(), self.lower[slot].copy(),
                    self.upper[slot].copy(), gate)
