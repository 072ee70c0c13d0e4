"""service/sim/encoding.py: the KpiIndication wire format, byte for byte against protobuf."""

from __future__ import annotations

import numpy as np
import pytest

from ms3m.v1 import kpm_pb2
from service.sim.encoding import IndicationEncoder, SeriesKey, build_indication


def test_encoder_matches_protobuf_byte_for_byte():
    rng = np.random.default_rng(1)
    enc = IndicationEncoder()
    keys = [SeriesKey(f"gnb-001-cell-{i:03d}") for i in range(20)] + [
        SeriesKey("c-1", "ue-7"), SeriesKey("c-2", None, 1), SeriesKey("c-3", "u", 0, 5),
        SeriesKey("c" * 64, None, 255, (1 << 24) - 1)]
    enc.register(keys)
    for d in (1, 10, 130):  # 130: absent indices need two-byte varints
        n = 200
        names = [f"K{i}" for i in range(d)]
        s = rng.integers(0, len(keys), n)
        ts = rng.integers(1, 1 << 62, n)
        ts[:4] = [1, 127, 128, 1_700_000_000_000]
        seq = rng.integers(0, 1 << 63, n).astype(np.uint64)
        seq[:3] = [0, 1, 1 << 63]
        v = rng.normal(size=(n, d)) * 1e3
        v[rng.random((n, d)) < 0.2] = np.nan
        v[7] = np.nan
        v[8, 0] = np.inf
        data = enc.encode(enc.header("gnb-001", 1000, names), 12345, s, ts, seq, v)
        ref = kpm_pb2.KpiIndication(e2_node_id="gnb-001", granularity_period_ms=1000, meas_names=names,
                                    message_id=12345)
        for i in range(n):
            k = keys[s[i]]
            r = ref.reports.add(cell_id=k.cell_id, timestamp_ms=int(ts[i]), sequence=int(seq[i]),
                                values=np.where(np.isnan(v[i]), 0, v[i]).tolist(),
                                absent=np.flatnonzero(np.isnan(v[i])).tolist())
            if k.ue_id is not None:
                r.ue_id = k.ue_id
            if k.sst is not None:
                r.slice.sst = k.sst
                if k.sd is not None:
                    r.slice.sd = k.sd
        assert data == ref.SerializeToString()


def test_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match="cell_id"):
        IndicationEncoder().register(["bad cell id"])
    with pytest.raises(ValueError, match="cell_id"):
        IndicationEncoder().register(["x" * 65])
    with pytest.raises(ValueError, match="sst"):
        IndicationEncoder().register([SeriesKey("c", None, 300)])
    with pytest.raises(ValueError, match=r"values must be \(n, D\)"):
        build_indication(["c"], [1], np.zeros((1, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="positive"):
        build_indication(["c"], [0], np.zeros((1, 1)), ["a"])
    with pytest.raises(ValueError, match="unique"):
        build_indication(["c"], [1], np.zeros((1, 2)), ["a", "a"])
    msg = build_indication(["c", SeriesKey("c", "ue1")], [5, 6], [[1.0, np.nan], [np.nan, np.nan]], ["a", "b"])
    assert list(msg.reports[0].absent) == [1] and list(msg.reports[1].absent) == [0, 1]
    assert msg.reports[1].ue_id == "ue1" and not msg.reports[0].HasField("ue_id")
