"""Dataset loaders producing the trainer's data contract (models.training.series.SeriesSet).

    from models.training.data import load_dataset, ZScore, WindowSampler, split_by_time
    data = load_dataset("synthetic", n_cells=64, length=20_000)           # SeriesSet
    train, val, test = split_by_time(data, 0.15, 0.15)
    zs = ZScore.fit(train); train, val, test = (zs.transform(s) for s in (train, val, test))
    batch = WindowSampler(train, length=256, horizon=16, target_index="DRB.UEThpDl").sample(32)

    train, val, test, zs = load_dataset("etth1", lookback=96)             # ETT: split and normalized already

Real data lives outside the repository, in `data_dir()`: $MS3M_DATA_DIR if set, else ../shared/data next
to the repository (see its README.md). Loaders only read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.training.data.ett import ETT_CHANNELS, ett_windows, load_ett
from models.training.data.irish5g import load_irish5g, split_by_trace
from models.training.data.paths import DATA_ENV, data_dir, find_data
from models.training.data.synthetic import KPIS as SYNTHETIC_KPIS
from models.training.data.synthetic import synthetic_kpis
from models.training.data.table import DataError, load_kpi_table, merge_series_sets
from models.training.data.windows import (
    EvalWindows,
    WindowBatch,
    WindowSampler,
    eval_windows,
    forward_fill,
    split_by_series,
    split_by_time,
)
from models.training.series import Series, SeriesSet, ZScore

ETT_FILES = {"ett": "ETTh1.csv", "etth1": "ETTh1.csv", "etth2": "ETTh2.csv", "ettm1": "ETTm1.csv",
             "ettm2": "ETTm2.csv"}
DATASETS = ("synthetic", *ETT_FILES, "irish5g")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")


def load_dataset(name_or_path: str | Path, **kw: Any) -> Any:
    """Load a dataset by name or file; keyword arguments go to the loader.

    "synthetic" → synthetic_kpis(**kw): SeriesSet;
    "ett" / "etth1" (and "etth2", "ettm1", "ettm2") → load_ett(<data_dir>/ett/<file>, **kw):
        (train, val, test, zscore), split and normalized by the standard protocol (path=... overrides);
    "irish5g" → load_irish5g(<data_dir>/irish-5g, **kw): SeriesSet (root=... overrides);
    a .csv / .parquet path → load_kpi_table(path, **kw): SeriesSet (needs columns=, timestamp=, period_ms=).
    Raises FileNotFoundError naming where it looked, ValueError for an unknown name.
    """
    key = str(name_or_path).lower()
    if key == "synthetic":
        return synthetic_kpis(**kw)
    if key in ETT_FILES:
        path = kw.pop("path", None) or find_data(f"ett/{ETT_FILES[key]}")
        return load_ett(path, **kw)
    if key in ("irish5g", "irish-5g"):
        root = kw.pop("root", None) or find_data("irish-5g")
        return load_irish5g(root, **kw)
    path = Path(name_or_path)
    if key.endswith(TABLE_SUFFIXES):
        if not path.is_file():
            raise FileNotFoundError(f"load_dataset: no such file: {path.resolve()}")
        return load_kpi_table(path, **kw)
    raise ValueError(f"load_dataset: unknown dataset {str(name_or_path)!r}; use one of {DATASETS} or the path of a "
                     f"KPI table ({', '.join(TABLE_SUFFIXES)})")


__all__ = [
    "DATASETS",
    "DATA_ENV",
    "ETT_CHANNELS",
    "SYNTHETIC_KPIS",
    "DataError",
    "EvalWindows",
    "Series",
    "SeriesSet",
    "WindowBatch",
    "WindowSampler",
    "ZScore",
    "data_dir",
    "ett_windows",
    "eval_windows",
    "find_data",
    "forward_fill",
    "load_dataset",
    "load_ett",
    "load_irish5g",
    "load_kpi_table",
    "merge_series_sets",
    "split_by_series",
    "split_by_time",
    "split_by_trace",
    "synthetic_kpis",
]
