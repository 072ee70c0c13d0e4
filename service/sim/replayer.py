"""Replays the Irish operator LTE/5G traces (uccmisl/5Gdataset) to E2Ingest as a live KPM stream.

Each trace (one phone, one session, a row per second or so) becomes one series. Two mappings (`entity`):
- "cell" (default): one trace = one cell, cell id "trace-<file stem>": a continuous series per trace, as the
  offline trainer sees the dataset (models/training/data/irish5g.py), so a bundle trained with
  `--data irish5g` gets the series it was trained on.
- "ue": one trace = one UE (ue id = the file stem) reported by its serving cell (cell id "eci-<RAWCELLID>",
  the E-UTRAN/UTRAN cell identity of the row): KPM format 3 style. Driving traces hand over every ~30 s,
  so the service sees many short (cell, UE) series.
The KPI names and the per-second aggregation are those of the offline adapter (rows sharing a second are
averaged, "-" is missing); a KPI with no value in a second is sent as absent, a second without any row is
not sent. Timestamps keep the trace's spacing: align="start" shifts every trace to start now (the traces
play side by side, like concurrent users); align="absolute" shifts all by one offset (their original
order across days). All samples are merge-sorted by time and paced at `speed` × real time (0: as fast as
possible); at speed s the timestamps advance s times faster than the wall clock.

Needs pandas (the `train` extra) to read the CSVs; never imports the `models` package (torch).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.sim.publisher import Publisher, SeriesKey
from service.sim.simulator import _progress, make_publisher, until_stopped

COLUMNS = {  # source column → KPI name, as models/training/data/irish5g.py maps them (checked by a test)
    "DL_bitrate": "DRB.UEThpDl",
    "UL_bitrate": "DRB.UEThpUl",
    "RSRP": "RF.serving.RSRP",
    "RSRQ": "RF.serving.RSRQ",
    "SNR": "RF.serving.RSSINR",
    "CQI": "DRB.UECqiDl",
    "RSSI": "RF.serving.RSSI",
    "Speed": "UE.Speed",
    "NetworkMode": "UE.NrMode",
}
KPIS = list(COLUMNS.values())
APPS = ("Download", "Netflix")
MOBILITY = ("Driving", "Static")
MISSING = ("", "-", "--", "NaN", "nan", "NA", "N/A", "null", "None")
TIMESTAMP_FORMAT = "%Y.%m.%d_%H.%M.%S"


def default_root() -> Path:
    """$MS3M_DATA_DIR/irish-5g, else <repo>/../shared/data/irish-5g (the offline trainer's convention)."""
    env = os.environ.get("MS3M_DATA_DIR")
    base = Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return (base / "irish-5g").resolve()


@dataclass
class Trace:
    """One trace on a 1 s grid (seconds with at least one row): values NaN = absent, serving cell per second."""

    name: str  # path relative to the root
    stem: str  # file name without .csv: the UE id, and the cell id suffix in entity="cell"
    timestamps_ms: np.ndarray  # (n,) int64, strictly increasing
    values: np.ndarray  # (n, len(KPIS)) float64
    cells: np.ndarray  # (n,) object: "eci-<RAWCELLID>" of the last row in the second


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("the trace replayer reads CSVs with pandas, which is not installed; "
                          "install it (pip install pandas, or the project's `train` extra)") from None
    return pd


def trace_files(root: str | Path, apps: Sequence[str] = APPS, mobility: Sequence[str] = MOBILITY) -> list[Path]:
    """The CSVs of the chosen groups, interleaved group by group (so the first few mix app and mobility)."""
    root = Path(root)
    groups = []
    for app in apps:
        for mob in mobility:
            folder = root / app / mob
            if not folder.is_dir():
                raise FileNotFoundError(f"replay: no folder {folder}; expected <root>/<app>/<mobility>/ with apps "
                                        f"{list(APPS)} and mobility {list(MOBILITY)} (see ../shared/data/README.md)")
            files = sorted(folder.rglob("*.csv"))
            if not files:
                raise FileNotFoundError(f"replay: no trace files (*.csv) under {folder}")
            groups.append(files)
    out = []
    for i in range(max(len(g) for g in groups)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def load_trace(path: Path, root: Path) -> Trace:
    """Read one trace CSV and aggregate it per second; ValueError naming the file on malformed content."""
    pd = _pandas()
    needed = ["Timestamp", "RAWCELLID", *COLUMNS]
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=lambda c: c in needed)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read trace: {e}") from e
    missing = [c for c in needed if c not in df.columns and c not in ("RAWCELLID", "RSSI", "SNR", "CQI")]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    if df.empty:
        raise ValueError(f"{path}: the trace has no rows")
    stamps = pd.to_datetime(df["Timestamp"], format=TIMESTAMP_FORMAT, errors="coerce")
    if stamps.isna().any():
        i = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise ValueError(f"{path}: unparseable Timestamp {df['Timestamp'].iloc[i]!r} on data row {i + 1}")
    sec = (stamps.to_numpy().astype("datetime64[ms]").astype(np.int64) // 1000) * 1000
    vals = np.full((len(df), len(KPIS)), np.nan)
    for j, src in enumerate(COLUMNS):
        if src not in df.columns:
            continue
        raw = df[src].str.strip()
        present = ~raw.isin(MISSING)
        if src == "NetworkMode":  # 1 on 5G NR, 0 on LTE / 3G modes
            vals[:, j] = np.where(present, raw.str.upper().isin(["5G", "NR"]).astype(float), np.nan)
            continue
        num = pd.to_numeric(raw.where(present), errors="coerce")
        bad = present & num.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: column {src!r}: non-numeric value {raw.iloc[i]!r} on data row {i + 1}")
        vals[:, j] = num.to_numpy(dtype=float)
    cell = df["RAWCELLID"].str.strip() if "RAWCELLID" in df.columns else pd.Series([""] * len(df))
    cell = np.where(cell.isin(MISSING), "eci-unknown", "eci-" + cell)
    order = np.argsort(sec, kind="stable")  # rows are in time order; be safe
    sec, vals, cell = sec[order], vals[order], cell[order]
    starts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1]])
    counts = np.add.reduceat(~np.isnan(vals), starts, axis=0)
    sums = np.add.reduceat(np.nan_to_num(vals), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    last = np.r_[starts[1:], len(sec)] - 1
    keep = ~np.isnan(mean).all(1)  # a second without any value is not sent
    stem = path.name.removesuffix(".csv")
    if not keep.any():
        raise ValueError(f"{path}: the trace has no KPI values at all")
    return Trace(path.relative_to(root).as_posix(), stem, sec[starts][keep], mean[keep], cell[last][keep])


def load_traces(root: str | Path | None = None, apps: Sequence[str] = APPS, mobility: Sequence[str] = MOBILITY,
                max_traces: int | None = None) -> list[Trace]:
    """The traces under root (default `default_root()`), at most max_traces, mixed across the groups."""
    root = default_root() if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"replay: trace folder {root} does not exist (set --root or $MS3M_DATA_DIR)")
    if isinstance(apps, str) or isinstance(mobility, str):
        raise TypeError("apps and mobility are sequences of folder names, e.g. ('Download',)")
    if max_traces is not None and max_traces < 1:
        raise ValueError(f"max_traces must be >= 1, got {max_traces}")
    files = trace_files(root, apps, mobility)[:max_traces]
    return [load_trace(f, root) for f in files]


def merge_traces(traces: Sequence[Trace], *, entity: str = "cell", align: str = "start",
                 start_ms: int | None = None) -> tuple[list[SeriesKey], np.ndarray, np.ndarray, np.ndarray]:
    """All samples in time order: (series keys, series index (N,), timestamps (N,), values (N, D)).

    Timestamps are shifted so the earliest sample is at start_ms (default now); ties keep trace order.
    """
    if entity not in ("cell", "ue"):
        raise ValueError(f"entity must be 'cell' or 'ue', got {entity!r}")
    if align not in ("start", "absolute"):
        raise ValueError(f"align must be 'start' or 'absolute', got {align!r}")
    if not traces:
        raise ValueError("no traces to replay")
    start_ms = time.time_ns() // 1_000_000 if start_ms is None else int(start_ms)
    stems = [t.stem for t in traces]
    if len(set(stems)) != len(stems):  # keep ids unique if two groups hold the same file name
        stems = [f"{s}.{i}" for i, s in enumerate(stems)]
    first = min(int(t.timestamps_ms[0]) for t in traces)
    keys: list[SeriesKey] = []
    index: dict[SeriesKey, int] = {}
    parts_i, parts_t, parts_v, parts_o = [], [], [], []
    for k, (tr, stem) in enumerate(zip(traces, stems)):
        offset = start_ms - (int(tr.timestamps_ms[0]) if align == "start" else first)
        if entity == "cell":
            series_keys = [SeriesKey(f"trace-{stem}")]
            idx = np.zeros(len(tr.timestamps_ms), np.int64)
        else:
            series_keys, idx = np.unique(tr.cells, return_inverse=True)
            series_keys = [SeriesKey(str(c), stem) for c in series_keys]
        for key in series_keys:
            if key not in index:
                index[key] = len(keys)
                keys.append(key)
        local = np.array([index[key] for key in series_keys], np.int64)
        parts_i.append(local[idx])
        parts_t.append(tr.timestamps_ms + offset)
        parts_v.append(tr.values)
        parts_o.append(np.full(len(idx), k))
    ts = np.concatenate(parts_t)
    order = np.lexsort((np.concatenate(parts_o), ts))  # by time, then trace
    return keys, np.concatenate(parts_i)[order], ts[order], np.concatenate(parts_v)[order]


async def replay(
    target: str = "localhost:50051",
    root: str | Path | None = None,
    *,
    speed: float = 1.0,
    apps: Sequence[str] = APPS,
    mobility: Sequence[str] = MOBILITY,
    max_traces: int | None = None,
    duration_s: float | None = None,
    entity: str = "cell",
    align: str = "start",
    batch_size: int = 1000,
    acked: bool = True,
    max_in_flight: int = 8,
    e2_node_id: str = "irish5g-replay",
    start_ms: int | None = None,
    on_progress: Callable[[dict], None] | None = None,
    progress_interval_s: float = 1.0,
    stop: asyncio.Event | None = None,
    publisher: Publisher | None = None,
    clock: Callable[[], float] = time.monotonic,
    encoding: str = "protobuf",
    kpm_version: int = 3,
) -> dict:
    """Replay the traces to target at `speed` × real time (0: as fast as possible); return final stats.

    Stops at the end of the traces, after duration_s of wall-clock time (counted once loaded), or on `stop`.
    See the module docstring for entity and align. publisher replaces the default Publisher (it is
    closed at the end). encoding "e2sm-kpm" sends E2SM-KPM RIC indications of kpm_version instead of
    KpiIndications (entity "ue": format 3, the UEs numbered, see service/sim/e2sm_publisher.py). Raises
    FileNotFoundError / ValueError on missing or malformed traces, ImportError
    without pandas, PublishError when delivery fails for good.
    """
    if speed < 0:
        raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    traces = load_traces(root, apps, mobility, max_traces)
    keys, series, ts, values = merge_traces(traces, entity=entity, align=align, start_ms=start_ms)
    pub = publisher or make_publisher(target, encoding, kpm_version, e2_node_id=e2_node_id, batch_size=batch_size,
                                      acked=acked, max_in_flight=max_in_flight, granularity_period_ms=1000)
    idx = pub.register(keys)[series]
    n = len(ts)
    config = {"target": target, "root": str(default_root() if root is None else root), "traces": len(traces),
              "series": len(keys), "samples": n, "entity": entity, "align": align, "speed": speed,
              "kpis": KPIS, "batch_size": batch_size, "acked": acked,
              "duration_s": duration_s, "encoding": encoding, "span_s": round((int(ts[-1]) - int(ts[0])) / 1000, 1),
              "files": [t.name for t in traces]}
    t0 = clock()
    deadline = float("inf") if duration_s is None else t0 + duration_s
    ticker = None
    if on_progress is not None:
        ticker = asyncio.get_running_loop().create_task(
            _progress(pub.stats, on_progress, progress_interval_s, clock, t0, None))
    pos = 0
    try:
        await pub.start()
        while pos < n and (stop is None or not stop.is_set()) and clock() < deadline:
            if speed > 0:  # everything due by now (data time = first + elapsed·speed), at most a batch
                due_ms = int(ts[0]) + (clock() - t0) * speed * 1000.0
                hi = min(int(np.searchsorted(ts, due_ms, side="right")), pos + batch_size)
                if hi <= pos:
                    wait = (int(ts[pos]) - due_ms) / (speed * 1000.0)
                    await asyncio.sleep(min(max(wait, 0.001), 0.5, max(deadline - clock(), 0.0)))
                    continue
            else:
                hi = min(n, pos + batch_size)
            if not await until_stopped(pub.send(idx[pos:hi], ts[pos:hi], None, values[pos:hi], KPIS), stop):
                break
            pos = hi
        await pub.close()
    except BaseException:
        await pub.close(flush=False)
        raise
    finally:
        if ticker is not None:
            ticker.cancel()
    return {"command": "replay", "config": config, "wall_s": round(clock() - t0, 3), "replayed": pos, **pub.stats()}
