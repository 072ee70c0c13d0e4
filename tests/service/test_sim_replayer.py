"""service/sim/replayer.py: the Irish 5G trace replayer on the real traces (skipped without them)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.sim_helpers import FakeIngest, check_stream, serving, strictly_increasing


def _replayer():
    pytest.importorskip("pandas", reason="the replayer reads CSVs with pandas")
    from service.sim import replayer

    return replayer


async def test_replay_real_traces_fast(shared_data):
    replayer = _replayer()
    root = shared_data / "irish-5g"
    traces = replayer.load_traces(root, max_traces=3)
    assert len({t.name.split("/")[1] for t in traces}) == 2  # mixed groups: Driving and Static
    fake = FakeIngest()
    async with serving(fake) as target:
        result = await replayer.replay(target, root, speed=0, max_traces=3, batch_size=500, start_ms=1_700_000_000_000)
    n = sum(len(t.timestamps_ms) for t in traces)
    assert result["samples"] == result["accepted"] == result["replayed"] == n
    per = check_stream(fake.messages, replayer.KPIS)
    assert set(per) == {(f"trace-{t.stem}", None, None) for t in traces}
    strictly_increasing(per)
    stamps = [r.timestamp_ms for m in fake.messages for r in m.reports]
    assert stamps[0] == 1_700_000_000_000 and np.all(np.diff(stamps) >= 0)  # merged in time order
    # values and absent positions are the trace's, second by second
    tr = traces[0]
    got = [r for m in fake.messages for r in m.reports if r.cell_id == f"trace-{tr.stem}"]
    vals = np.array([[np.nan if j in set(r.absent) else v for j, v in enumerate(r.values)] for r in got])
    np.testing.assert_allclose(vals, tr.values, equal_nan=True)
    np.testing.assert_array_equal(np.diff([r.timestamp_ms for r in got]), np.diff(tr.timestamps_ms))


async def test_replay_as_ues_on_serving_cells_and_paced(shared_data):
    replayer = _replayer()
    root = shared_data / "irish-5g"
    fake = FakeIngest()
    async with serving(fake) as target:
        result = await replayer.replay(target, root, speed=20, apps=("Download",), mobility=("Driving",),
                                       max_traces=1, entity="ue", duration_s=0.8)
    reports = [r for m in fake.messages for r in m.reports]
    assert reports and all(r.HasField("ue_id") and r.cell_id.startswith("eci-") for r in reports)
    assert result["config"]["series"] > 1  # the driving UE hands over: one series per (cell, UE)
    span_s = (reports[-1].timestamp_ms - reports[0].timestamp_ms) / 1000
    assert 0.75 * 16 <= span_s <= 16 + 1.5, span_s  # data time ≈ 20 × 0.8 s of wall time
    strictly_increasing(check_stream(fake.messages, replayer.KPIS))
    assert result["replayed"] == len(reports) < result["config"]["samples"]


def test_replayer_matches_the_offline_adapter(shared_data):
    """Same KPI names and per-second values as models/training/data/irish5g.py on a real trace."""
    replayer = _replayer()
    irish5g = pytest.importorskip("models.training.data.irish5g", reason="needs the train extra (torch)")
    assert irish5g.COLUMNS == replayer.COLUMNS
    root = shared_data / "irish-5g"
    path = sorted((root / "Netflix" / "Driving").rglob("*.csv"))[0]
    ours = replayer.load_trace(path, root)
    theirs = irish5g.load_kpi_table(path, columns=irish5g.COLUMNS, timestamp=irish5g.TIMESTAMP,
                                    timestamp_format=irish5g.TIMESTAMP_FORMAT, period_ms=1000, agg="mean",
                                    require_values=False, converters={"NetworkMode": irish5g._nr_mode}).series[0]
    pos = np.searchsorted(theirs.timestamps_ms, ours.timestamps_ms)
    np.testing.assert_array_equal(theirs.timestamps_ms[pos], ours.timestamps_ms)
    np.testing.assert_allclose(ours.values, theirs.values[pos], rtol=1e-5, equal_nan=True)
    assert np.isnan(np.delete(theirs.values, pos, axis=0)).all()  # the seconds we skip have no value at all


def test_replayer_errors_are_clear(tmp_path):
    replayer = _replayer()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        replayer.load_traces(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="Download/Driving"):
        replayer.load_traces(tmp_path)
    bad = tmp_path / "Download" / "Driving"
    bad.mkdir(parents=True)
    (bad / "B_x.csv").write_text("Timestamp,DL_bitrate,UL_bitrate,RSRP,RSRQ,Speed,NetworkMode\n"
                                 "2019.11.25_15.34.34,1,2,-80,-10,abc,LTE\n")
    with pytest.raises(ValueError, match="'Speed': non-numeric value 'abc' on data row 1"):
        replayer.load_traces(tmp_path, apps=("Download",), mobility=("Driving",))
