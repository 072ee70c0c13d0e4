"""Adapter for the Irish operator LTE/5G traces (uccmisl/5Gdataset; Raca et al., ACM MMSys 2020).

Client-side KPIs logged once a second by G-NetTrack Pro on a phone while streaming (Netflix) or
downloading (Download), static or driving. Layout: `<root>/<app>/<mobility>/[<show>/]B_<date>_<time>.csv`,
one trace per file. Each trace becomes one `Series` named by its path relative to the root; the columns
map onto E2SM-KPM / TS 28.552-style names (see `COLUMNS`). Timestamps ("%Y.%m.%d_%H.%M.%S", Irish local
time, which is UTC for these November-February traces) are put on a 1 s grid: rows sharing a second are
averaged, seconds without a row are NaN, "-" is missing. Some traces lack SNR / CQI / RSSI entirely; those
KPIs are all-NaN there (the masks say so) rather than an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.training.data.paths import find_data
from models.training.data.table import MISSING_MARKERS, load_kpi_table, merge_series_sets
from models.training.series import SeriesSet

COLUMNS = {
    "DL_bitrate": "DRB.UEThpDl",  # kbit/s: the main forecasting target
    "UL_bitrate": "DRB.UEThpUl",  # kbit/s
    "RSRP": "RF.serving.RSRP",  # dBm
    "RSRQ": "RF.serving.RSRQ",  # dB
    "SNR": "RF.serving.RSSINR",  # dB
    "CQI": "DRB.UECqiDl",  # 0..15
    # RSSI (dBm) has no KPM / TS 28.552 measurement; the name follows the RF.serving.* family above
    "RSSI": "RF.serving.RSSI",
    # context features, not KPM measurements: UE speed (km/h, from GPS) and whether the UE is on 5G NR
    # (NetworkMode "5G" → 1; LTE and the 3G modes → 0; the per-second mean is the 5G share of the rows)
    "Speed": "UE.Speed",
    "NetworkMode": "UE.NrMode",
}
TARGET = "DRB.UEThpDl"
TIMESTAMP = "Timestamp"
TIMESTAMP_FORMAT = "%Y.%m.%d_%H.%M.%S"
SOURCE = {
    "dataset": "irish-5g",
    "name": "Beyond Throughput, The Next Generation: A 5G Dataset with Channel and Context Metrics",
    "citation": "D. Raca, D. Leahy, C. J. Sreenan, J. J. Quinlan, ACM MMSys 2020",
    "url": "https://github.com/uccmisl/5Gdataset",
    "license": "GPL-3.0",
}


def _nr_mode(raw):
    """NetworkMode strings → 1.0 for 5G (NR), 0.0 for other modes, NaN where missing."""
    mode = raw.str.strip().str.upper()
    return mode.isin(["5G", "NR"]).astype(float).where(~raw.isin(MISSING_MARKERS), np.nan)


def trace_files(root: str | Path, apps=("Download", "Netflix"), mobility=("Driving", "Static")) -> list[Path]:
    """The trace CSVs under root/<app>/<mobility>/, sorted; FileNotFoundError naming a missing folder."""
    root = Path(root)
    files: list[Path] = []
    for app in apps:
        for mob in mobility:
            folder = root / app / mob
            if not folder.is_dir():
                raise FileNotFoundError(f"load_irish5g: no folder {folder} (see ../shared/data/README.md)")
            found = sorted(folder.rglob("*.csv"))
            if not found:
                raise FileNotFoundError(f"load_irish5g: no trace files (*.csv) under {folder}")
            files.extend(found)
    return files


def load_irish5g(root: str | Path | None = None, apps=("Download", "Netflix"), mobility=("Driving", "Static"), *,
                 max_gap_s: int | None = None) -> SeriesSet:
    """One Series per trace file of the chosen apps and mobility classes, KPIs as in `COLUMNS`, 1 s period.

    root None: irish-5g in the shared data folder (models.training.data.paths).
    max_gap_s: split a trace where more than this many seconds have no row (None: never; the traces have
    gaps of at most a few seconds). Raises FileNotFoundError if a folder is absent, DataError (naming the
    file and column) on malformed data.
    """
    root = find_data("irish-5g") if root is None else Path(root)
    if isinstance(apps, str) or isinstance(mobility, str):
        raise TypeError("load_irish5g: apps and mobility are sequences of folder names, e.g. ('Download',)")
    files = trace_files(root, apps, mobility)
    sets = [
        load_kpi_table(f, columns=COLUMNS, timestamp=TIMESTAMP, timestamp_format=TIMESTAMP_FORMAT, period_ms=1000,
                       agg="mean", max_gap_periods=max_gap_s, name=f.relative_to(root).as_posix(),
                       require_values=False, converters={"NetworkMode": _nr_mode})
        for f in files
    ]
    source = {**SOURCE, "root": str(root), "apps": list(apps), "mobility": list(mobility),
              "files": [f.relative_to(root).as_posix() for f in files], "target": TARGET}
    return merge_series_sets(sets, source)


def trace_group(name: str) -> str:
    """The stratum of a trace name: "<app>/<mobility>" (e.g. "Netflix/Driving"), or "" if not nested."""
    parts = name.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else ""


def split_by_trace(series_set: SeriesSet, val_fraction: float = 0.15, test_fraction: float = 0.15,
                   seed: int = 0) -> tuple[SeriesSet, SeriesSet, SeriesSet]:
    """(train, val, test) by whole traces, stratified by app/mobility; deterministic for a seed.

    A trace split at gaps ("<file>#0", "<file>#1") stays together: the unit is the file.
    """
    from models.training.data.windows import split_by_series

    return split_by_series(series_set, val_fraction, test_fraction, seed,
                           group=lambda name: name.split("#")[0], stratify=trace_group)


def split_by_app(series_set: SeriesSet, train_app: str, val_fraction: float = 0.15,
                 seed: int = 0) -> tuple[SeriesSet, SeriesSet, SeriesSet]:
    """Cross-application protocol: (train, val) by whole traces of `train_app` (e.g. "Download"), stratified by
    mobility; test = every trace of the other application(s). ValueError when either side has no trace."""
    apps = sorted({trace_group(s.name).split("/")[0] for s in series_set.series})
    if train_app not in apps:
        raise ValueError(f"split_by_app: no traces of application {train_app!r}; the data has {apps}")
    own = [s.name for s in series_set.series if trace_group(s.name).split("/")[0] == train_app]
    other = [s.name for s in series_set.series if s.name not in set(own)]
    if not other:
        raise ValueError(f"split_by_app: every trace is {train_app!r}; nothing left to test on")
    train, val, _ = split_by_trace(series_set.subset(own), val_fraction, 0.0, seed)
    test = series_set.subset(other)
    return train, val, test
