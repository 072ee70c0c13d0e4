"""Ingest validation: every rejection reason, counted and described; accepted samples keep order."""

from __future__ import annotations

import math

import numpy as np

from ms3m.v1 import kpm_pb2
from service.ingest.validate import IngestValidator

R = kpm_pb2.RejectReason
KPIS = ["DRB.UEThpDl", "RRU.PrbUsedDl", "RF.serving.RSRP"]


def msg(reports, names=("DRB.UEThpDl", "RRU.PrbUsedDl"), mid=1):
    m = kpm_pb2.KpiIndication(e2_node_id="gnb-1", granularity_period_ms=1000, meas_names=list(names), message_id=mid)
    for r in reports:
        m.reports.add(**r)
    return m


def rep(cell="c1", t=1000, seq=1, values=(1.0, 2.0), **kw):
    return {"cell_id": cell, "timestamp_ms": t, "sequence": seq, "values": list(values), **kw}


def test_accepts_and_maps_columns_with_absent_values():
    v = IngestValidator(KPIS)
    batch, rej = v.validate(msg([rep(), rep("c2", values=(5.0, 6.0), absent=[1])]))
    assert rej.total == 0 and batch.series == ["c1", "c2"]
    np.testing.assert_array_equal(batch.values[0, :2], [1.0, 2.0])
    assert math.isnan(batch.values[0, 2]) and math.isnan(batch.values[1, 1])


def test_every_rejection_reason_is_counted_and_described():
    v = IngestValidator(KPIS, max_reports=5)
    v.commit(v.validate(msg([rep(t=1000, seq=5)]))[0])
    cases = [
        (msg([rep(values=(1.0,))]), R.REJECT_REASON_MALFORMED, "values"),
        (msg([rep(cell="bad id!")]), R.REJECT_REASON_MALFORMED, "cell_id"),
        (msg([rep(t=0)]), R.REJECT_REASON_MALFORMED, "timestamp"),
        (msg([rep(absent=[7])]), R.REJECT_REASON_MALFORMED, "absent"),
        (msg([rep()], names=("DRB.UEThpDl", "DRB.UEThpDl")), R.REJECT_REASON_MALFORMED, "duplicates"),
        (msg([rep()], names=("DRB.UEThpDl", "Nope.Kpi")), R.REJECT_REASON_UNKNOWN_KPI, "Nope.Kpi"),
        (msg([rep(t=2000, seq=6, values=(float("nan"), 1.0))]), R.REJECT_REASON_NON_FINITE, "NaN"),
        (msg([rep(t=2000, seq=6, values=(float("inf"), 1.0))]), R.REJECT_REASON_NON_FINITE, "Inf"),
        (msg([rep(t=2000, seq=5)]), R.REJECT_REASON_DUPLICATE, "sequence"),
        (msg([rep(t=900, seq=6)]), R.REJECT_REASON_OUT_OF_ORDER, "timestamp"),
        (msg([rep(seq=i + 10, t=3000 + i) for i in range(6)]), R.REJECT_REASON_OVERSIZED, "at most"),
    ]
    for m, reason, word in cases:
        batch, rej = v.validate(m)
        assert len(batch) == 0 and rej.counts == {reason: len(m.reports)}, (reason, rej.counts)
        assert word in rej.details[0].detail


def test_validate_does_not_change_state_until_commit():
    v = IngestValidator(KPIS)
    m = msg([rep(t=1000, seq=1), rep(t=2000, seq=2), rep(t=1500, seq=3)])
    batch, rej = v.validate(m)
    assert batch.timestamp_ms.tolist() == [1000, 2000] and rej.counts == {R.REJECT_REASON_OUT_OF_ORDER: 1}
    assert len(v.validate(m)[0]) == 2  # nothing committed: same answer
    v.commit(batch)
    again, rej = v.validate(m)
    assert len(again) == 0 and rej.counts == {R.REJECT_REASON_DUPLICATE: 2, R.REJECT_REASON_OUT_OF_ORDER: 1}


def test_series_keys_for_ue_and_slice_reports():
    v = IngestValidator(KPIS)
    r = rep(ue_id="ue7")
    r2 = rep()
    m = msg([r, r2])
    m.reports[1].slice.sst = 1
    m.reports[1].slice.sd = 42
    batch, _rej = v.validate(m)
    assert batch.series == ["c1|ue=ue7", "c1|s=1.42"]


def test_ignore_unknown_kpis_option():
    v = IngestValidator(KPIS, ignore_unknown_kpis=True)
    batch, rej = v.validate(msg([rep()], names=("DRB.UEThpDl", "Nope.Kpi")))
    assert rej.total == 0 and batch.values[0, 0] == 1.0 and math.isnan(batch.values[0, 1])

