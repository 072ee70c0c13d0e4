"""Validation of KpiIndication messages into SampleBatches (pure; no I/O).

A report is accepted when it is well formed, names only known KPIs, carries finite values within float32
and the KPI's plausible range, has a timestamp within the allowed window around the xApp's clock, is newer
than the series' last accepted sample (timestamps strictly increase per series) and its sequence number is
new for the series and not too far past the last one (sequence numbers strictly increase per series of one
E2 node; a re-sent report is a duplicate). The bounds keep one corrupt report from locking a series (a
timestamp in the year 3000, a sequence of 2^64 − 1) or from overflowing a model state. Rejections are
counted by reason and the first few are described. `commit()` records accepted samples once they are
durable, so a failed append can be retried without being taken for a duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from contract.series import ID_PATTERN, series_key
from ms3m.v1 import kpm_pb2
from service.buffer.base import SampleBatch

R = kpm_pb2.RejectReason
CELL_ID = ID_PATTERN
MAX_DETAILS = 32
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class IngestLimits:
    """Bounds beyond which a report is refused (None = unbounded). Timestamps in epoch ms."""

    max_future_ms: int | None = None  # how far past the xApp's clock a timestamp may be
    max_age_ms: int | None = None  # how far behind the clock a timestamp may be
    max_sequence_gap: int | None = None  # how far past a series' last sequence number the next may jump
    low: Sequence[float] | None = None  # per service KPI: the lowest plausible value
    high: Sequence[float] | None = None  # per service KPI: the highest plausible value


def plausible_range(kpis: list[str], stats: list[tuple[list[str], list[float], list[float]]],
                    sigmas: float) -> tuple[list[float], list[float]]:
    """Per KPI, mean ± sigmas·std of the training statistics (KPI names, means, stds) of every bundle that
    uses it, widest over bundles; ±float32 max for a KPI without statistics."""
    low, high = [-FLOAT32_MAX] * len(kpis), [FLOAT32_MAX] * len(kpis)
    seen = [False] * len(kpis)
    for names, means, stds in stats:
        for name, m, sd in zip(names, means, stds):
            if name not in kpis:
                continue
            i = kpis.index(name)
            lo, hi = m - sigmas * abs(sd), m + sigmas * abs(sd)
            low[i], high[i] = (lo, hi) if not seen[i] else (min(low[i], lo), max(high[i], hi))
            seen[i] = True
    return [max(v, -FLOAT32_MAX) for v in low], [min(v, FLOAT32_MAX) for v in high]


@dataclass
class Rejections:
    counts: dict[int, int] = field(default_factory=dict)
    details: list[kpm_pb2.RejectedReport] = field(default_factory=list)

    def add(self, message_id: int, index: int, reason: int, detail: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        if len(self.details) < MAX_DETAILS:
            self.details.append(kpm_pb2.RejectedReport(message_id=message_id, index=index, reason=reason,
                                                       detail=detail))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Rejections) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.details.extend(other.details[: max(0, MAX_DETAILS - len(self.details))])


class IngestValidator:
    """Validates indications against the service's KPI list and each series' last accepted sample."""

    def __init__(self, kpis: list[str], max_reports: int = 20_000, ignore_unknown_kpis: bool = False,
                 limits: IngestLimits | None = None, clock: Callable[[], float] = time.time):
        self.kpis = list(kpis)
        self.limits = limits = limits or IngestLimits()
        self.clock = clock
        d = len(self.kpis)
        self._low = np.asarray(limits.low if limits.low is not None else [-FLOAT32_MAX] * d, np.float64)
        self._high = np.asarray(limits.high if limits.high is not None else [FLOAT32_MAX] * d, np.float64)
        if self._low.shape != (d,) or self._high.shape != (d,):
            raise ValueError(f"limits.low / limits.high need one value per KPI ({d})")
        self._col = {k: i for i, k in enumerate(self.kpis)}
        self.max_reports = max_reports
        self.ignore_unknown = ignore_unknown_kpis
        self.last_ts: dict[str, int] = {}
        self.last_seq: dict[str, int] = {}
        self._columns_cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray, list[str]]] = {}

    def restore(self, last: dict[str, tuple[int, int]]) -> None:
        """Last (timestamp, sequence) per series, e.g. from the buffer after a restart."""
        for key, (ts, seq) in last.items():
            self.last_ts[key] = max(ts, self.last_ts.get(key, ts))
            self.last_seq[key] = max(seq, self.last_seq.get(key, seq))

    def _columns(self, names) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(positions in the message of known names, their service columns, unknown names)."""
        key = tuple(names)
        hit = self._columns_cache.get(key)
        if hit is None:
            pos, cols, unknown = [], [], []
            for i, n in enumerate(key):
                c = self._col.get(n)
                if c is None:
                    unknown.append(n)
                else:
                    pos.append(i)
                    cols.append(c)
            hit = (np.array(pos, np.int64), np.array(cols, np.int64), unknown)
            if len(self._columns_cache) < 1024:
                self._columns_cache[key] = hit
        return hit

    def validate(self, msg: kpm_pb2.KpiIndication) -> tuple[SampleBatch, Rejections]:
        """Accepted samples (in message order) and the rejections. Does not change the series' state."""
        rej = Rejections()
        mid = msg.message_id
        reports = msg.reports
        n = len(reports)
        empty = SampleBatch.empty(len(self.kpis))
        if n == 0:
            return empty, rej
        if n > self.max_reports:
            rej.add(mid, 0, R.REJECT_REASON_OVERSIZED, f"{n} reports in one message, at most {self.max_reports}", n)
            return empty, rej
        names = msg.meas_names
        M = len(names)
        if M == 0 or len(set(names)) != M:
            rej.add(mid, 0, R.REJECT_REASON_MALFORMED,
                    "meas_names is empty" if M == 0 else "meas_names has duplicates", n)
            return empty, rej
        pos, cols, unknown = self._columns(names)
        if unknown and not self.ignore_unknown:
            rej.add(mid, 0, R.REJECT_REASON_UNKNOWN_KPI,
                    f"unknown measurement name(s) {unknown[:8]}; this xApp's models use {self.kpis}", n)
            return empty, rej

        # The hot loop touches each report once and keeps plain Python lists (numpy scalar access
        # costs more than the checks); a cell id already accepted skips the regex.
        last_ts, last_seq = self.last_ts, self.last_seq
        match = CELL_ID.match
        lim = self.limits
        now_ms = int(self.clock() * 1000) if lim.max_future_ms is not None or lim.max_age_ms is not None else 0
        t_hi = now_ms + lim.max_future_ms if lim.max_future_ms is not None else 2**63 - 1
        t_lo = max(1, now_ms - lim.max_age_ms) if lim.max_age_ms is not None else 1
        gap = lim.max_sequence_gap
        keys: list[str] = []
        ts_l: list[int] = []
        seq_l: list[int] = []
        rows: list = []
        keep: list[int] = []
        absent_rows: list[tuple[int, list[int]]] = []
        for i, r in enumerate(reports):
            cell = r.cell_id
            if cell not in last_ts and not match(cell):
                rej.add(mid, i, R.REJECT_REASON_MALFORMED, f"cell_id {cell[:70]!r} is not 1–64 of [A-Za-z0-9_.:-]")
                continue
            vals = r.values
            if len(vals) != M:
                rej.add(mid, i, R.REJECT_REASON_MALFORMED, f"{len(vals)} values for {M} meas_names")
                continue
            t = r.timestamp_ms
            if t <= 0:
                rej.add(mid, i, R.REJECT_REASON_MALFORMED, f"timestamp_ms {t} must be > 0")
                continue
            if t > t_hi or t < t_lo:
                rej.add(mid, i, R.REJECT_REASON_TIMESTAMP_OUT_OF_RANGE,
                        f"timestamp_ms {t} is {'ahead of' if t > t_hi else 'behind'} the xApp's clock ({now_ms}) "
                        f"by more than {lim.max_future_ms if t > t_hi else lim.max_age_ms} ms")
                continue
            if r.absent:
                ab = list(r.absent)
                if any(a >= M for a in ab):
                    rej.add(mid, i, R.REJECT_REASON_MALFORMED, f"absent index out of range (meas_names has {M})")
                    continue
                absent_rows.append((len(keep), ab))
            if r.HasField("ue_id") or r.HasField("slice"):
                sst = r.slice.sst if r.HasField("slice") else None
                sd = r.slice.sd if r.HasField("slice") and r.slice.HasField("sd") else None
                ue = r.ue_id if r.HasField("ue_id") else None
                if (sst is not None and sst > 255) or (sd is not None and sd > 0xFFFFFF):
                    rej.add(mid, i, R.REJECT_REASON_MALFORMED, f"S-NSSAI sst {sst} / sd {sd} out of range "
                            "(sst 0–255, sd 24 bits: 0–16777215)")
                    continue
                if ue is not None and not match(ue):
                    rej.add(mid, i, R.REJECT_REASON_MALFORMED, "ue_id is not 1–64 of [A-Za-z0-9_.:-]")
                    continue
                keys.append(series_key(cell, ue, sst, sd))
            else:
                keys.append(cell)
            ts_l.append(t)
            seq_l.append(r.sequence)
            rows.append(vals)
            keep.append(i)
        k = len(keep)
        if k == 0:
            return empty, rej
        # fromiter over the chained containers: ~3× faster than np.array(list of repeated fields)
        values = np.fromiter(chain.from_iterable(rows), np.float64, k * M).reshape(k, M)  # (k, M)
        for row, ab in absent_rows:
            values[row, ab] = 0.0  # checked as finite; NaN (= absent) after the check
        ok = [True] * k
        if not np.isfinite(values).all():
            for row in np.flatnonzero(~np.isfinite(values).all(1)).tolist():
                rej.add(mid, keep[row], R.REJECT_REASON_NON_FINITE, "NaN or ±Inf in a present value")
                ok[row] = False
        for row, ab in absent_rows:
            values[row, ab] = np.nan
        known = values[:, pos]  # (k, known KPIs) NaN = absent
        with np.errstate(invalid="ignore"):
            outside = (known < self._low[cols]) | (known > self._high[cols])
        if outside.any():
            for row in np.flatnonzero(outside.any(1)).tolist():
                if ok[row]:
                    j = int(np.flatnonzero(outside[row])[0])
                    c = int(cols[j])
                    rej.add(mid, keep[row], R.REJECT_REASON_VALUE_OUT_OF_RANGE,
                            f"{self.kpis[c]} = {known[row, j]:.6g} outside its plausible range "
                            f"[{self._low[c]:.6g}, {self._high[c]:.6g}]")
                    ok[row] = False
        # order and duplicates, against the series' state and earlier reports of this message
        seen_ts: dict[str, int] = {}
        seen_seq: dict[str, int] = {}
        for row in range(k):
            if not ok[row]:
                continue
            key = keys[row]
            s = seq_l[row]
            prev_s = seen_seq.get(key, last_seq.get(key))
            if prev_s is not None and s <= prev_s:
                rej.add(mid, keep[row], R.REJECT_REASON_DUPLICATE, f"sequence {s} already received for {key}")
                ok[row] = False
                continue
            if gap is not None and prev_s is not None and s - prev_s > gap:
                rej.add(mid, keep[row], R.REJECT_REASON_SEQUENCE_GAP,
                        f"sequence {s} jumps {s - prev_s} past {prev_s} of series {key} (at most {gap})")
                ok[row] = False
                continue
            t = ts_l[row]
            prev_t = seen_ts.get(key, last_ts.get(key))
            if prev_t is not None and t <= prev_t:
                rej.add(mid, keep[row], R.REJECT_REASON_OUT_OF_ORDER,
                        f"timestamp {t} not after {prev_t} of series {key}")
                ok[row] = False
                continue
            seen_ts[key] = t
            seen_seq[key] = s
        ts = np.array(ts_l, np.int64)
        seq = np.array(seq_l, np.uint64)
        if all(ok):
            out = np.full((k, len(self.kpis)), np.nan, np.float32)
            out[:, cols] = known
            return SampleBatch(keys, ts, seq, out), rej
        idx = np.flatnonzero(ok)
        out = np.full((len(idx), len(self.kpis)), np.nan, np.float32)
        out[:, cols] = known[idx]  # rejected rows may not fit float32
        return SampleBatch([keys[i] for i in idx.tolist()], ts[idx], seq[idx], out), rej

    def commit(self, batch: SampleBatch) -> None:
        """Record accepted samples as the series' newest (call once they are durable)."""
        self.last_ts.update(zip(batch.series, batch.timestamp_ms.tolist()))
        self.last_seq.update(zip(batch.series, batch.sequence.tolist()))

    def forget(self, series: list[str]) -> None:
        for key in series:
            self.last_ts.pop(key, None)
            self.last_seq.pop(key, None)
