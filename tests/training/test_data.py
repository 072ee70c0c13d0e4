"""Dataset loaders: synthetic KPIs, the CSV/Parquet table loader, ETT protocol, Irish 5G traces, windows, splits."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from models.training.data import (
    DataError,
    data_dir,
    ett_windows,
    eval_windows,
    forward_fill,
    load_dataset,
    load_ett,
    load_irish5g,
    load_kpi_table,
    split_by_series,
    split_by_time,
    split_by_trace,
    synthetic_kpis,
)
from models.training.data.irish5g import trace_group
from models.training.data.windows import WindowSampler
from models.training.series import Series, SeriesSet


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    ra, rb = a[ok].argsort().argsort(), b[ok].argsort().argsort()
    return float(np.corrcoef(ra, rb)[0, 1])


@functools.cache
def _ett(path: str, lookback: int = 96):
    return load_ett(path, lookback)


@functools.cache
def _ett_raw(path: str):
    import pandas as pd

    return pd.read_csv(path)


@functools.cache
def _irish(root: str, apps=("Download", "Netflix")):
    return load_irish5g(root, apps=apps)


# ---------------------------------------------------------------------------------------------------- ETT


def test_ett_split_lengths_and_window_counts(shared_data: Path):
    train, val, test, _ = _ett(str(shared_data / "ett" / "ETTh1.csv"))
    assert [len(s.series[0]) for s in (train, val, test)] == [8640, 2880 + 96, 2880 + 96]
    assert train.kpis == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"] and train.period_ms == 3_600_000
    for H, n_eval in ((96, 2785), (192, 2689)):  # 2880 + 96 − 96 − H + 1
        for split in (val, test):
            X, Y = ett_windows(split, 96, H)
            assert X.shape == (n_eval, 96, 7) and Y.shape == (n_eval, H, 7)
            assert X.dtype == np.float32 and Y.dtype == np.float32
        X, Y = ett_windows(train, 96, H)
        assert len(X) == 8640 - 96 - H + 1
    X, Y = ett_windows(test, 96, 192)
    v = test.series[0].values
    np.testing.assert_array_equal(X[0], v[:96])
    np.testing.assert_array_equal(Y[0], v[96:288])
    np.testing.assert_array_equal(X[-1], v[-288:-192])
    np.testing.assert_array_equal(Y[-1], v[-192:])


def test_ett_no_leakage_across_splits(shared_data: Path):
    path = str(shared_data / "ett" / "ETTh1.csv")
    train, val, test, zscore = _ett(path)
    raw = _ett_raw(path)
    import pandas as pd

    stamps = pd.to_datetime(raw["date"]).to_numpy(dtype="datetime64[ms]").astype(np.int64)
    rows = {name: np.searchsorted(stamps, s.series[0].timestamps_ms) for name, s in
            (("train", train), ("val", val), ("test", test))}
    assert (rows["train"] == np.arange(0, 8640)).all()
    assert (rows["val"] == np.arange(8640 - 96, 11520)).all()
    assert (rows["test"] == np.arange(11520 - 96, 14400)).all()
    # targets (everything after the first lookback rows) of val / test never overlap train or each other
    val_targets, test_targets = set(rows["val"][96:]), set(rows["test"][96:])
    assert not val_targets & set(rows["train"]) and not test_targets & (val_targets | set(rows["train"]))
    assert min(val_targets) == 8640 and min(test_targets) == 11520 and max(test_targets) == 14399
    # the values are the file's rows, normalized
    np.testing.assert_allclose(zscore.invert(test.series[0].values), raw.iloc[11424:14400, 1:].to_numpy(),
                               rtol=1e-5, atol=1e-4)


def test_ett_scaler_fit_on_train_rows_only(shared_data: Path):
    path = str(shared_data / "ett" / "ETTh1.csv")
    train, _, _, zscore = _ett(path)
    raw = _ett_raw(path).iloc[:, 1:].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(zscore.mean, raw[:8640].mean(0), rtol=1e-6)
    np.testing.assert_allclose(zscore.std, raw[:8640].std(0, ddof=0), rtol=1e-6)  # StandardScaler: ddof = 0
    for other in (raw[:14400], raw):
        assert not np.allclose(zscore.mean, other.mean(0), rtol=1e-3)
        assert not np.allclose(zscore.std, other.std(0), rtol=1e-3)
    v = train.series[0].values.astype(np.float64)
    np.testing.assert_allclose(v.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(v.std(0), 1.0, atol=1e-5)


def test_ett_longer_lookback_moves_borders(shared_data: Path):
    train, val, test, zscore = _ett(str(shared_data / "ett" / "ETTh1.csv"), 336)
    assert [len(s.series[0]) for s in (train, val, test)] == [8640, 2880 + 336, 2880 + 336]
    assert len(ett_windows(test, 336, 96)[0]) == 2880 - 96 + 1
    assert np.allclose(zscore.mean, _ett(str(shared_data / "ett" / "ETTh1.csv"))[3].mean)


# ---------------------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_shaped():
    a = synthetic_kpis(4, 600, seed=3)
    b = synthetic_kpis(4, 600, seed=3)
    c = synthetic_kpis(4, 600, seed=4)
    assert len(a) == 4 and a.period_ms == 1000 and [s.name for s in a.series] == [f"cell{i:04d}" for i in range(4)]
    required = {"DRB.UEThpDl", "DRB.UEThpUl", "RRU.PrbUsedDl", "RRC.ConnMean", "DRB.RlcSduDelayDl",
                "RF.serving.RSRP", "RF.serving.RSRQ", "RF.serving.RSSINR", "DRB.UECqiDl", "PEE.AvgPower"}
    assert required <= set(a.kpis)
    for sa, sb, sc in zip(a.series, b.series, c.series):
        assert sa.values.shape == (600, len(a.kpis)) and sa.values.dtype == np.float32
        np.testing.assert_array_equal(sa.values, sb.values)
        for k in ("regime", "anomaly", "anomaly_kind"):
            np.testing.assert_array_equal(sa.labels[k], sb.labels[k])
        assert not np.array_equal(sa.values, sc.values)
        assert (np.diff(sa.timestamps_ms) == 1000).all()
        assert not np.isnan(sa.values).any()


def test_synthetic_physics_bounds_and_correlations():
    data = synthetic_kpis(24, 3000, seed=0)
    v = np.concatenate([s.values for s in data.series])
    col = {k: v[:, data.index(k)] for k in data.kpis}
    assert col["RRU.PrbUsedDl"].min() >= 0 and col["RRU.PrbUsedDl"].max() <= 100
    assert col["DRB.UECqiDl"].min() >= 0 and col["DRB.UECqiDl"].max() <= 15
    assert col["RF.serving.RSRQ"].min() >= -19.5 and col["RF.serving.RSRQ"].max() <= -3
    assert (col["DRB.RlcSduDelayDl"] > 0).all() and (col["PEE.AvgPower"] > 0).all()
    assert (col["DRB.UEThpDl"] >= 0).all() and (col["RRC.ConnMean"] >= 0).all()
    assert -120 < np.median(col["RF.serving.RSRP"]) < -70
    assert np.median(col["DRB.UEThpUl"]) < np.median(col["DRB.UEThpDl"])
    assert spearman(col["RRU.PrbUsedDl"], col["DRB.RlcSduDelayDl"]) > 0.5  # queueing delay rises with load
    assert spearman(col["DRB.UEThpDl"], col["RF.serving.RSSINR"]) > 0.3  # throughput rises with SINR
    assert spearman(col["DRB.UEThpDl"], col["RRU.PrbUsedDl"]) < -0.3  # and falls with load
    def per_cell(a: str, b: str) -> float:  # within a cell: the cells differ in size, users and bandwidth
        return float(np.median([spearman(s.values[:, data.index(a)], s.values[:, data.index(b)])
                                for s in data.series]))

    assert per_cell("RRC.ConnMean", "RRU.PrbUsedDl") > 0.5
    assert per_cell("PEE.AvgPower", "RRU.PrbUsedDl") > 0.5
    assert per_cell("RF.serving.RSRQ", "RRU.PrbUsedDl") < -0.5
    assert spearman(col["DRB.UECqiDl"], col["RF.serving.RSSINR"]) > 0.9
    # delay is convex in utilization: the busiest decile waits far longer than the median suggests
    prb, delay = col["RRU.PrbUsedDl"], col["DRB.RlcSduDelayDl"]
    lo, mid, hi = (np.median(delay[(prb >= a) & (prb < b)]) for a, b in ((10, 20), (40, 50), (80, 90)))
    assert hi - mid > 2 * (mid - lo) > 0


def test_synthetic_labels_and_anomaly_effects():
    data = synthetic_kpis(16, 4000, seed=1)
    regime = np.concatenate([s.labels["regime"] for s in data.series])
    kind = np.concatenate([s.labels["anomaly_kind"] for s in data.series])
    anomaly = np.concatenate([s.labels["anomaly"] for s in data.series])
    assert set(np.unique(regime)) == {0, 1, 2} and (regime == 0).mean() > 0.4
    assert set(np.unique(kind)) == {0, 1, 2, 3} and 0.005 < anomaly.mean() < 0.3
    assert np.array_equal(anomaly, kind > 0)
    v = np.concatenate([s.values for s in data.series])
    sinr, thp = v[:, data.index("RF.serving.RSSINR")], v[:, data.index("DRB.UEThpDl")]
    conn = v[:, data.index("RRC.ConnMean")]
    assert sinr[kind == 3].mean() < sinr[kind == 0].mean() - 4  # interference level shift
    assert np.median(conn[kind == 2]) < 0.2 * np.median(conn[kind == 0])  # outage
    assert np.median(thp[kind == 2]) < 0.2 * np.median(thp[kind == 0])
    busy = v[:, data.index("RRU.PrbUsedDl")]
    assert busy[regime == 1].mean() > busy[regime == 0].mean() > busy[regime == 2].mean()

    plain = synthetic_kpis(3, 2000, seed=1, anomalies=False, regimes=False)
    for s in plain.series:
        assert not s.labels["anomaly"].any() and not s.labels["regime"].any()


def test_synthetic_options_and_validation():
    gaps = synthetic_kpis(3, 1000, seed=0, missing_rate=0.1)
    missing = np.concatenate([np.isnan(s.values) for s in gaps.series])
    assert 0.05 < missing.mean() < 0.15 and (missing.all(1) == missing.any(1)).all()  # whole reports lost
    weekly = synthetic_kpis(2, 7 * 100, seed=0, cycle_steps=100, weekly=True)
    assert weekly.series[0].values.shape == (700, 10)
    short = synthetic_kpis(1, 1, seed=0)
    assert short.series[0].values.shape == (1, 10)
    with pytest.raises(ValueError, match="n_cells"):
        synthetic_kpis(0, 10)
    with pytest.raises(ValueError, match="missing_rate"):
        synthetic_kpis(1, 10, missing_rate=1.5)


# ---------------------------------------------------------------------------------------------------- tables


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


KPI_COLS = {"thp": "DRB.UEThpDl", "prb": "RRU.PrbUsedDl"}


def test_table_resamples_averages_duplicates_and_masks_gaps(tmp_path: Path):
    path = write(tmp_path, "cells.csv", "time,cell,thp,prb\n"
                 "2024-01-01 00:00:00,A,10,-\n"
                 "2024-01-01 00:00:00.400,A,20,5\n"      # same second: averaged
                 "2024-01-01 00:00:01,A,NaN,6\n"
                 "2024-01-01 00:00:04,A,,7\n"            # 2 and 3 missing → NaN rows
                 "2024-01-01 00:00:02,B,3,3\n"           # out of order is fine
                 "2024-01-01 00:00:00,B,1,1\n")
    data = load_kpi_table(path, columns=KPI_COLS, timestamp="time", entity="cell", period_ms=1000)
    assert data.kpis == ["DRB.UEThpDl", "RRU.PrbUsedDl"] and [s.name for s in data.series] == ["cells/A", "cells/B"]
    a, b = data.series
    expected = np.array([[15, 5], [np.nan, 6], [np.nan, np.nan], [np.nan, np.nan], [np.nan, 7]], dtype=np.float32)
    np.testing.assert_array_equal(a.values, expected)
    np.testing.assert_array_equal(a.mask, ~np.isnan(expected))
    assert (a.timestamps_ms == 1_704_067_200_000 + 1000 * np.arange(5)).all()
    np.testing.assert_array_equal(b.values, [[1, 1], [np.nan, np.nan], [3, 3]])
    assert data.source["path"] == str(path)

    split = load_kpi_table(path, columns=KPI_COLS, timestamp="time", entity="cell", period_ms=1000, max_gap_periods=1)
    assert [(s.name, len(s)) for s in split.series] == [("cells/A#0", 2), ("cells/A#1", 1), ("cells/B", 3)]
    coarse = load_kpi_table(path, columns={"prb": "P"}, timestamp="time", entity="cell", period_ms=2000, agg="max")
    np.testing.assert_array_equal(coarse.series[0].values[:, 0], [6, np.nan, 7])
    summed = load_kpi_table(path, columns={"thp": "T"}, timestamp="time", entity="cell", period_ms=1000, agg="sum")
    np.testing.assert_array_equal(summed.series[0].values[:, 0], [30, np.nan, np.nan, np.nan, np.nan])


def test_table_missing_markers_are_missing_not_errors(tmp_path: Path):
    path = write(tmp_path, "m.csv", "t,thp,prb\n1,-,1\n2,,2\n3,NaN,3\n4, - ,4\n5,5,n/a\n")
    data = load_kpi_table(path, columns=KPI_COLS, timestamp="t", timestamp_format="epoch_s", period_ms=1000)
    v = data.series[0].values
    assert np.isnan(v[:4, 0]).all() and v[4, 0] == 5 and np.isnan(v[4, 1]) and (v[:4, 1] == [1, 2, 3, 4]).all()
    assert data.series[0].timestamps_ms[0] == 1000


@pytest.mark.parametrize("text, kwargs, needles", [
    ("time,thp\n2024-01-01,1\n", {"columns": {"thp": "T", "prb": "P"}}, ["missing column", "'prb'"]),
    ("time,thp\n2024-01-01,1\n2024-01-02,1.5.2\n", {}, ["column 'thp'", "'1.5.2'", "row 1", "line 3"]),
    ("time,thp\n2024-01-01,-\n2024-01-02,\n", {}, ["'thp'", "no values"]),
    ("time,thp\n2024-01-01,1\nsoon,2\n", {}, ["column 'time'", "unparseable timestamp 'soon'", "line 3"]),
    ("time,thp\n2024-01-01,1\n,2\n", {}, ["column 'time'", "missing timestamp", "row 1"]),
    ("time,thp\n2024-01-01,1\n", {"timestamp_format": "%d/%m/%Y"}, ["column 'time'", "'%d/%m/%Y'"]),
    ("time,thp\n2024-01-01,inf\n", {}, ["column 'thp'", "non-finite"]),
    ("time,cell,thp\n2024-01-01,,1\n", {"entity": "cell"}, ["column 'cell'", "missing entity"]),
])
def test_table_bad_data_names_file_and_column(tmp_path: Path, text, kwargs, needles):
    path = write(tmp_path, "bad.csv", text)
    args = {"columns": {"thp": "T"}, "timestamp": "time", "period_ms": 1000, **kwargs}
    with pytest.raises(DataError) as err:
        load_kpi_table(path, **args)
    message = str(err.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_table_parquet_and_argument_errors(tmp_path: Path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    stamps = pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:00:02Z", "2024-01-01T00:00:00Z"])
    frame = pd.DataFrame({"ts": stamps, "v": [1.0, None, 4.0], "ue": ["x", "x", "y"]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = load_kpi_table(path, columns={"v": "K"}, timestamp="ts", entity="ue", period_ms=1000)
    assert [s.name for s in data.series] == ["t/x", "t/y"]
    np.testing.assert_array_equal(data.series[0].values[:, 0], [1, np.nan, np.nan])
    bad = pd.DataFrame({"ts": [0, 1], "v": ["1", "oops"]})
    bad.to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet.*column 'v'.*'oops'.*row 1"):
        load_kpi_table(tmp_path / "b.parquet", columns={"v": "K"}, timestamp="ts", timestamp_format="epoch_ms",
                       period_ms=1)
    with pytest.raises(FileNotFoundError):
        load_kpi_table(tmp_path / "nope.csv", columns={"v": "K"}, timestamp="ts", period_ms=1)
    with pytest.raises(DataError, match="unsupported file type"):
        load_kpi_table(write(tmp_path, "x.json", "{}"), columns={"v": "K"}, timestamp="ts", period_ms=1)
    with pytest.raises(ValueError, match="agg"):
        load_kpi_table(path, columns={"v": "K"}, timestamp="ts", period_ms=1000, agg="mode")


# ---------------------------------------------------------------------------------------------------- Irish 5G


def test_irish5g_traces_and_kpis(shared_data: Path):
    root = shared_data / "irish-5g"
    data = _irish(str(root))
    assert len(data) == 54 and data.period_ms == 1000
    assert data.kpis == ["DRB.UEThpDl", "DRB.UEThpUl", "RF.serving.RSRP", "RF.serving.RSRQ", "RF.serving.RSSINR",
                         "DRB.UECqiDl", "RF.serving.RSSI", "UE.Speed", "UE.NrMode"]
    names = [s.name for s in data.series]
    assert len(set(names)) == 54 and all((root / n).is_file() for n in names)
    assert {trace_group(n) for n in names} == {"Download/Driving", "Download/Static", "Netflix/Driving",
                                               "Netflix/Static"}
    assert data.source["license"] == "GPL-3.0" and len(data.source["files"]) == 54
    for s in data.series:
        assert (np.diff(s.timestamps_ms) == 1000).all()
        thp = s.values[:, 0]
        assert np.nanmin(thp) >= 0 and s.mask[:, 0].mean() > 0.7
        nr = s.values[:, data.index("UE.NrMode")]
        assert np.nanmin(nr) >= 0 and np.nanmax(nr) <= 1
    v = np.concatenate([s.values for s in data.series])
    assert -140 < np.nanmedian(v[:, data.index("RF.serving.RSRP")]) < -44
    assert len(_irish(str(root), ("Download",))) == 21


def test_irish5g_split_by_trace(shared_data: Path):
    data = _irish(str(shared_data / "irish-5g"))
    train, val, test = split_by_trace(data, 0.15, 0.15, seed=0)
    names = [{s.name for s in part.series} for part in (train, val, test)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert set.union(*names) == {s.name for s in data.series}
    assert [len(n) for n in names] == [38, 8, 8]
    for part in (train, val, test):
        assert {trace_group(n) for n in (s.name for s in part.series)} == {trace_group(s.name) for s in data.series}
    again = split_by_trace(data, 0.15, 0.15, seed=0)
    assert [{s.name for s in p.series} for p in again] == names
    assert [{s.name for s in p.series} for p in split_by_trace(data, 0.15, 0.15, seed=1)] != names


def test_irish5g_missing_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="Download"):
        load_irish5g(tmp_path)


# ---------------------------------------------------------------------------------------------------- windows


def test_forward_fill():
    v = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan], [4.0, 5.0]], dtype=np.float32)
    filled, mask = forward_fill(v)
    np.testing.assert_array_equal(filled, [[0, 1], [2, 1], [2, 1], [4, 5]])
    np.testing.assert_array_equal(mask, ~np.isnan(v))
    batched, _ = forward_fill(np.stack([v, v[::-1]]))
    np.testing.assert_array_equal(batched[0], filled)


def toy_set() -> SeriesSet:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 3)).astype(np.float32)
    a[7, 1] = np.nan
    a[20, 0] = np.nan
    b = rng.standard_normal((12, 3)).astype(np.float32)
    c = rng.standard_normal((5, 3)).astype(np.float32)  # shorter than the windows: no window
    stamps = lambda n: np.arange(n) * 1000  # noqa: E731
    return SeriesSet(["a", "b", "c"], 1000, [Series("A", a, stamps(50)), Series("B", b, stamps(12)),
                                             Series("C", c, stamps(5))])


def manual_window(series: Series, start: int, L: int, H: int, targets: list[int]):
    v = series.values
    y = np.full((L, H, len(targets)), np.nan, dtype=np.float32)
    for t in range(L):
        for h in range(1, H + 1):
            if start + t + h < len(v):
                y[t, h - 1] = v[start + t + h, targets]
    return forward_fill(v)[0][start:start + L], y


def test_window_sampler_shapes_targets_and_masks():
    data = toy_set()
    sampler = WindowSampler(data, length=10, horizon=4, target_index=["a", 2], seed=1)
    assert sampler.targets == (0, 2) and sampler.n_windows == 41 + 3
    batch = sampler.sample(64)
    assert batch.x.shape == (64, 10, 3) and batch.x_mask.shape == (64, 10, 3)
    assert batch.y.shape == (64, 10, 4, 2) and batch.y_mask.shape == (64, 10, 4, 2)
    assert batch.x.dtype == np.float32 and batch.y_mask.dtype == bool
    assert set(batch.origin[:, 0]) <= {0, 1}
    for b in range(64):
        s, start = batch.origin[b]
        x, y = manual_window(data.series[s], start, 10, 4, [0, 2])
        np.testing.assert_array_equal(batch.x[b], x)
        np.testing.assert_array_equal(batch.y_mask[b], ~np.isnan(y))
        np.testing.assert_array_equal(batch.y[b], np.nan_to_num(y, nan=0.0))
    again = WindowSampler(data, length=10, horizon=4, target_index=["a", 2], seed=1).sample(64)
    np.testing.assert_array_equal(again.origin, batch.origin)
    with pytest.raises(ValueError, match="no series"):
        WindowSampler(data, length=100, horizon=1, target_index=0)


def test_eval_windows_counts_and_order():
    data = toy_set()
    windows = eval_windows(data, length=10, horizon=3, target_index="b", batch_size=7)
    assert len(windows) == (50 - 10 + 1) + (12 - 10 + 1)
    whole = windows.all()
    parts = list(windows)
    assert len(parts) == -(-len(windows) // 7)
    np.testing.assert_array_equal(np.concatenate([p.y for p in parts]), whole.y)
    np.testing.assert_array_equal(whole.origin[:3], [[0, 0], [0, 1], [0, 2]])
    x, y = manual_window(data.series[1], 2, 10, 3, [1])
    np.testing.assert_array_equal(whole.x[-1], x)
    np.testing.assert_array_equal(whole.y_mask[-1], ~np.isnan(y))
    assert not whole.y_mask[-1, -1].any()  # the last step's targets lie past the series end
    assert len(eval_windows(data, 10, 3, 0, stride=5)) == len(range(0, 41, 5)) + len(range(0, 3, 5))


def test_split_by_time_and_by_series():
    data = toy_set()
    train, val, test = split_by_time(data, 0.2, 0.2)
    for s, tr, va, te in zip(data.series, train.series, val.series, test.series):
        joined = np.concatenate([tr.timestamps_ms, va.timestamps_ms, te.timestamps_ms])
        np.testing.assert_array_equal(joined, s.timestamps_ms)
        assert len(te) == round(0.2 * len(s)) and tr.name == va.name == te.name == s.name
    assert test.source["split"] == "test"

    cells = synthetic_kpis(20, 10, seed=0)
    parts = split_by_series(cells, 0.2, 0.1, seed=5)
    names = [[s.name for s in p.series] for p in parts]
    assert [len(n) for n in names] == [14, 4, 2] and len({n for p in names for n in p}) == 20
    shuffled = SeriesSet(cells.kpis, cells.period_ms, cells.series[::-1])
    assert [sorted(s.name for s in p.series) for p in split_by_series(shuffled, 0.2, 0.1, seed=5)] == \
        [sorted(n) for n in names]
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_series(cells, 0.6, 0.5)


# ---------------------------------------------------------------------------------------------------- dispatcher


def test_load_dataset_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert len(load_dataset("synthetic", n_cells=2, length=30)) == 2
    path = write(tmp_path, "k.csv", "time,thp\n2024-01-01 00:00:00,1\n2024-01-01 00:00:01,2\n")
    table = load_dataset(str(path), columns={"thp": "DRB.UEThpDl"}, timestamp="time", period_ms=1000)
    assert table.kpis == ["DRB.UEThpDl"] and len(table.series[0]) == 2
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")
    monkeypatch.setenv("MS3M_DATA_DIR", str(tmp_path / "nowhere"))
    assert data_dir() == (tmp_path / "nowhere").resolve()
    with pytest.raises(FileNotFoundError, match=r"nowhere.*ETTh1\.csv.*MS3M_DATA_DIR"):
        load_dataset("etth1")
    with pytest.raises(FileNotFoundError, match="irish-5g"):
        load_dataset("irish5g")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*ETTh1\.csv"):
        load_ett()


def test_load_dataset_default_data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MS3M_DATA_DIR", raising=False)
    assert data_dir() == shared_data.resolve()
    test = load_dataset("etth1")[2]
    assert len(test.series[0]) == 2976
    assert len(load_irish5g(apps=("Download",), mobility=("Static",))) == 5  # root defaults to the data folder
