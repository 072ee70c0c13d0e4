"""ETT (Electricity Transformer Temperature) with the standard long-horizon forecasting protocol.

The protocol of the Informer / Autoformer / DLinear / PatchTST / iTransformer code (Dataset_ETT_hour and
Dataset_ETT_minute): the first 20 months only, split by rows into 12 / 4 / 4 months, each of val and test
extended `lookback` rows into the previous split so their first window predicts the split's first row:

    ETTh (hourly):   train [0, 8640)   val [8640 − L, 11520)    test [11520 − L, 14400)
    ETTm (15 min):   the same borders × 4

Z-score statistics are fitted on the train rows only (population std, ddof = 0, as sklearn's
StandardScaler) and applied to every split; all 7 channels are inputs and targets (multivariate "M"
setting). Reported MSE / MAE are on this normalized scale. The CSV holds float32 values printed in full,
so the float32 series lose nothing and the statistics equal StandardScaler's on the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.training.data.paths import find_data
from models.training.data.table import DataError, load_kpi_table
from models.training.series import SeriesSet, ZScore

ETT_CHANNELS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
MONTH_ROWS_HOURLY = 30 * 24
SOURCE = {
    "url": "https://github.com/zhouhaoyi/ETDataset",
    "citation": "H. Zhou et al., Informer: Beyond Efficient Transformer for Long Sequence Time-Series "
                "Forecasting, AAAI 2021",
    "license": "CC BY-ND 4.0",
}


def ett_borders(n_train_rows: int, lookback: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, stop) of the standard splits given the train length (8640 hourly, 34560 at 15 min)."""
    month = n_train_rows // 12
    train_end, val_end, test_end = 12 * month, 16 * month, 20 * month
    return {"train": (0, train_end), "val": (train_end - lookback, val_end), "test": (val_end - lookback, test_end)}


def load_ett(path: str | Path | None = None, lookback: int = 96) -> tuple[SeriesSet, SeriesSet, SeriesSet, ZScore]:
    """(train, val, test, zscore) for ETTh1/ETTh2 (hourly) or ETTm1/ETTm2 (15 min, by the file name);
    path None: ETTh1 in the shared data folder (models.training.data.paths).

    Each split is a SeriesSet with one series ("ETTh1/train", …) of the 7 channels, already normalized
    with `zscore` (fitted on the train rows; `zscore.invert` gives back the original units). val and test
    start `lookback` rows early (see the module docstring). Raises FileNotFoundError if the file is
    absent, DataError if it lacks columns, has bad values, irregular timestamps or fewer than 20 months.
    """
    path = find_data("ett/ETTh1.csv") if path is None else Path(path)
    if lookback < 0:
        raise ValueError(f"load_ett: lookback must be >= 0, got {lookback}")
    minutely = path.name.lower().startswith("ettm")
    period_ms = 15 * 60_000 if minutely else 3_600_000
    month = MONTH_ROWS_HOURLY * (4 if minutely else 1)
    if lookback > 4 * month:
        raise ValueError(f"load_ett: lookback {lookback} is longer than the validation split ({4 * month} rows)")
    full = load_kpi_table(path, columns={c: c for c in ETT_CHANNELS}, timestamp="date", period_ms=period_ms)
    if len(full.series) != 1:
        raise DataError(f"{path}: expected one regular series, got {len(full.series)} pieces")
    series = full.series[0]
    if np.isnan(series.values).any():  # a gap or a missing value: row borders would no longer be months
        row = int(np.argmax(np.isnan(series.values).any(1)))
        raise DataError(f"{path}: missing value or timestamp gap at period {row}; the ETT protocol needs "
                        f"complete rows every {period_ms // 60_000} min")
    if len(series) != full.source["rows"]:
        raise DataError(f"{path}: {full.source['rows']} rows fall on {len(series)} periods (duplicate timestamps?)")
    borders = ett_borders(12 * month, lookback)
    if len(series) < borders["test"][1]:
        raise DataError(f"{path}: {len(series)} rows, the protocol needs {borders['test'][1]}")

    stem = path.name.split(".")[0]
    source = {"dataset": stem, "path": str(path), **SOURCE,
              "protocol": {"lookback": lookback, "borders": {k: list(v) for k, v in borders.items()},
                           "normalization": "z-score fitted on train rows (ddof=0)"}}

    def split(name: str) -> SeriesSet:
        a, b = borders[name]
        return SeriesSet(list(ETT_CHANNELS), period_ms, [series.slice(a, b, f"{stem}/{name}")],
                         {**source, "split": name, "rows": [a, b]})

    train, val, test = split("train"), split("val"), split("test")
    zscore = ZScore.fit(train)
    return zscore.transform(train), zscore.transform(val), zscore.transform(test), zscore


def ett_windows(series_set: SeriesSet, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of every series (stride 1, no drop_last): X (N, lookback, D), Y (N, horizon, D) float32.

    Window i of a series of length T takes rows [i, i + lookback) as inputs and [i + lookback,
    i + lookback + horizon) as targets, N = T − lookback − horizon + 1 per series (series too short give none).
    """
    if lookback < 1 or horizon < 1:
        raise ValueError(f"ett_windows: lookback and horizon must be >= 1, got {lookback}, {horizon}")
    D = len(series_set.kpis)
    xs, ys = [], []
    for s in series_set.series:
        n = len(s) - lookback - horizon + 1
        if n <= 0:
            continue
        view = np.lib.stride_tricks.sliding_window_view(s.values, lookback + horizon, axis=0)  # (n, D, L+H)
        windows = np.ascontiguousarray(view.transpose(0, 2, 1), dtype=np.float32)  # (n, L+H, D)
        xs.append(windows[:, :lookback])
        ys.append(windows[:, lookback:])
    if not xs:
        return np.zeros((0, lookback, D), np.float32), np.zeros((0, horizon, D), np.float32)
    return np.concatenate(xs), np.concatenate(ys)

