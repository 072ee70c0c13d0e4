"""Generic CSV / Parquet KPI table loader: rows of (timestamp, [entity], KPI columns) → a `SeriesSet`.

Each entity's rows are bucketed onto a fixed period grid aligned to the Unix epoch (bucket =
floor(t / period)); rows sharing a bucket (duplicates, or several rows per period) are aggregated with
`agg`, ignoring missing values; periods without any row become NaN, so `Series.mask` shows the gaps. A
series can be split where more than `max_gap_periods` consecutive periods have no row.

Timestamps without a time zone are taken as UTC. Values are parsed strictly: the missing markers in
`MISSING_MARKERS` (and empty cells) become NaN, anything else that is not a finite number is an error.
Every data problem raises `DataError` naming the file, the column and, where there is one, the first
offending row (0-based data row; for CSV also the 1-based line of the file).

pandas (and pyarrow for Parquet) are imported on first use: they are training-only dependencies.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.training.series import Series, SeriesSet

MISSING_MARKERS = ("", "-", "--", "NaN", "nan", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "none")
AGGREGATIONS = ("mean", "median", "min", "max", "sum", "first", "last")
EPOCH_FORMATS = {"epoch_s": 1000, "epoch_ms": 1}  # timestamp_format values for numeric Unix times
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


class DataError(ValueError):
    """A data file cannot be turned into KPI series; the message names the file and the column."""


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise DataError(f"{path}: unsupported file type; expected one of {CSV_SUFFIXES + PARQUET_SUFFIXES}")


def _where(kind: str, row: int) -> str:
    return f"row {row} (line {row + 2})" if kind == "csv" else f"row {row}"


def _read_table(path: Path, kind: str, needed: list[str], text: list[str], numeric: list[str],
                markers: frozenset[str], sep: str | None):
    """The needed columns of the file; DataError if some are missing.

    CSV: `text` columns stay strings; `numeric` ones are parsed by the C parser with only `markers` as
    missing values, so a column that comes back as strings holds something else (checked afterwards).
    """
    import pandas as pd

    sep = sep or ("\t" if path.name.lower().endswith(".tsv") else ",")
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            have = list(pq.read_schema(path).names)
            if all(c in have for c in needed):
                return pd.read_parquet(path, columns=needed)
        else:
            try:
                return pd.read_csv(path, usecols=needed, sep=sep, keep_default_na=False, low_memory=False,
                                   dtype={c: str for c in text}, na_values={c: list(markers) for c in numeric})
            except ValueError as e:
                if "usecols" not in str(e).lower():
                    raise
            have = list(pd.read_csv(path, nrows=0, sep=sep).columns)
    except (OSError, ValueError, UnicodeDecodeError) as e:  # unreadable, not a table, malformed rows
        raise DataError(f"{path}: cannot read the file as {kind}: {e}") from e
    missing = [c for c in needed if c not in have]
    raise DataError(f"{path}: missing column(s) {missing}; the file has columns {have}")


def _as_strings(col) -> Any:
    """A column as stripped strings with NaN/None as ''."""
    return col.astype(object).where(col.notna(), "").astype(str).str.strip()


def _parse_numeric(col, path: Path, kind: str, name: str, markers: frozenset[str]) -> np.ndarray:
    """float64 values of one KPI column; missing markers → NaN; DataError at the first other non-number."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        raw = None
    else:
        raw = _as_strings(col)
        missing = (raw.isin(markers) | col.isna()).to_numpy()
        values = pd.to_numeric(raw.where(~missing, None), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & ~missing
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{path}: column {name!r}: non-numeric value {raw.iloc[i]!r} at {_where(kind, i)} "
                            f"(missing values may be written as one of {sorted(markers)})")
    inf = np.isinf(values)
    if inf.any():
        i = int(np.argmax(inf))
        shown = str(values[i]) if raw is None else raw.iloc[i]
        raise DataError(f"{path}: column {name!r}: non-finite value {shown!r} at {_where(kind, i)}")
    return values


def _parse_timestamps(col, path: Path, kind: str, name: str, fmt: str | None) -> np.ndarray:
    """int64 Unix milliseconds; DataError naming the first empty or unparseable timestamp."""
    import pandas as pd

    if fmt in EPOCH_FORMATS:
        numbers = _parse_numeric(col, path, kind, name, frozenset(MISSING_MARKERS))
        ms = numbers * EPOCH_FORMATS[fmt]
        bad = np.isnan(ms)
    else:
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            parsed = col
        else:
            raw = _as_strings(col)
            try:
                parsed = pd.to_datetime(raw.where(raw != "", None), format=fmt or "ISO8601", errors="coerce",
                                        utc=True)
            except (ValueError, TypeError) as e:  # e.g. a bad format string
                raise DataError(f"{path}: column {name!r}: cannot parse timestamps with format {fmt!r}: {e}") from e
        parsed = pd.Series(parsed)
        if getattr(parsed.dt, "tz", None) is None:
            parsed = parsed.dt.tz_localize("UTC")
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        bad = parsed.isna().to_numpy()
        ms = np.where(bad, 0, parsed.to_numpy(dtype="datetime64[ms]", na_value=np.datetime64(0, "ms")).astype(np.int64))
    if bad.any():
        i = int(np.argmax(bad))
        value = col.iloc[i]
        if value is None or str(value).strip() in ("", "NaT", "nan", "None"):
            raise DataError(f"{path}: column {name!r}: missing timestamp at {_where(kind, i)}")
        hint = f"expected format {fmt!r}" if fmt else "ISO 8601 expected; pass timestamp_format=... for others"
        raise DataError(f"{path}: column {name!r}: unparseable timestamp {value!r} at {_where(kind, i)} ({hint})")
    return np.floor(ms).astype(np.int64)


def _aggregate(entity_codes: np.ndarray, buckets: np.ndarray, values: np.ndarray, agg: str):
    """Group rows by (entity code, bucket), sorted, aggregating each column NaN-aware.

    Returns (entity code per group, bucket per group, (G, D) float64)."""
    import pandas as pd

    grouped = pd.DataFrame(values).groupby([entity_codes, buckets], sort=True)
    out = grouped.sum(min_count=1) if agg == "sum" else getattr(grouped, agg)()  # all of them skip NaN
    return (out.index.get_level_values(0).to_numpy(dtype=np.int64),
            out.index.get_level_values(1).to_numpy(dtype=np.int64), out.to_numpy(dtype=np.float64))


def _dense(name: str, buckets: np.ndarray, rows: np.ndarray, period_ms: int, max_gap: int | None,
           min_length: int) -> list[Series]:
    """Regular series from sorted bucket indices and their aggregated rows; split at gaps > max_gap."""
    pieces = [(0, len(buckets))]
    if max_gap is not None:
        cut = np.nonzero(np.diff(buckets) - 1 > max_gap)[0] + 1
        edges = [0, *cut.tolist(), len(buckets)]
        pieces = list(itertools.pairwise(edges))
    out = []
    for k, (a, b) in enumerate(pieces):
        first, last = buckets[a], buckets[b - 1]
        n = int(last - first + 1)
        if n < min_length:
            continue
        values = np.full((n, rows.shape[1]), np.nan, dtype=np.float32)
        values[buckets[a:b] - first] = rows[a:b]
        stamps = (first + np.arange(n, dtype=np.int64)) * period_ms
        out.append(Series(f"{name}#{k}" if len(pieces) > 1 else name, values, stamps))
    return out


def load_kpi_table(
    path: str | Path,
    *,
    columns: Mapping[str, str],
    timestamp: str,
    timestamp_format: str | None = None,
    entity: str | None = None,
    period_ms: int,
    agg: str = "mean",
    max_gap_periods: int | None = None,
    min_length: int = 1,
    name: str | None = None,
    require_values: bool = True,
    missing_markers: tuple[str, ...] = MISSING_MARKERS,
    converters: Mapping[str, Callable[[Any], Any]] | None = None,
    sep: str | None = None,
) -> SeriesSet:
    """Load one CSV (.csv, .csv.gz, …) or Parquet file of KPI rows as regular series.

    columns: source column → KPI name (the KPI order of the result); timestamp: the time column;
    timestamp_format: a strptime format, None for ISO 8601, or "epoch_s" / "epoch_ms" for numeric Unix
    times; entity: the column whose values identify the series (cells, UEs), None for one series per file;
    period_ms: the sampling grid; agg: how rows sharing a period combine ("mean", "median", "min", "max",
    "sum", "first", "last"; missing values are skipped); max_gap_periods: split a series where more than
    this many consecutive periods have no row (the pieces are named "<name>#0", "<name>#1", …);
    min_length: drop (pieces of) series shorter than this; name: the series name (entity=None) or name
    prefix ("<name>/<entity>"; default the file name without suffix); require_values: a KPI column without
    any value in the whole file is an error (pass False where a KPI is legitimately absent from some files);
    converters: source column → function applied to the raw column (a pandas Series of strings for CSV)
    before numeric parsing, e.g. to map category labels to numbers.

    Raises DataError (a ValueError) naming the file and column for missing columns, non-numeric values,
    an all-missing KPI column, missing or unparseable timestamps, missing entity values; ValueError for bad
    arguments; FileNotFoundError if the file does not exist.
    """
    path = Path(path)
    if not columns:
        raise ValueError("load_kpi_table: columns must map at least one source column to a KPI name")
    kpis = list(columns.values())
    if len(set(kpis)) != len(kpis):
        raise ValueError(f"load_kpi_table: columns maps two source columns to the same KPI: {kpis}")
    if agg not in AGGREGATIONS:
        raise ValueError(f"load_kpi_table: agg must be one of {AGGREGATIONS}, got {agg!r}")
    if int(period_ms) != period_ms or period_ms < 1:
        raise ValueError(f"load_kpi_table: period_ms must be a positive integer, got {period_ms!r}")
    if max_gap_periods is not None and max_gap_periods < 0:
        raise ValueError(f"load_kpi_table: max_gap_periods must be >= 0 or None, got {max_gap_periods!r}")
    if not path.is_file():
        raise FileNotFoundError(f"load_kpi_table: no such file: {path}")
    kind = _file_kind(path)
    needed = list(dict.fromkeys([timestamp, *([entity] if entity else []), *columns]))
    markers = frozenset(missing_markers)
    text = [c for c in needed if c not in columns or (converters and c in converters)]
    table = _read_table(path, kind, needed, text, [c for c in columns if c not in text], markers, sep)
    if len(table) == 0:
        raise DataError(f"{path}: the file has no data rows")

    stamps = _parse_timestamps(table[timestamp], path, kind, timestamp, timestamp_format)
    values = np.empty((len(table), len(kpis)), dtype=np.float64)
    for j, src in enumerate(columns):
        col = table[src]
        if converters and src in converters:
            try:
                col = converters[src](col if kind == "parquet" else _as_strings(col))
            except Exception as e:
                raise DataError(f"{path}: column {src!r}: converter failed: {e}") from e
        values[:, j] = _parse_numeric(col, path, kind, src, markers)
    if require_values:
        empty = [src for j, src in enumerate(columns) if np.isnan(values[:, j]).all()]
        if empty:
            raise DataError(f"{path}: column(s) {empty} have no values at all (every row is missing)")

    base = name if name is not None else path.name.split(".")[0]
    if entity is None:
        codes, names = np.zeros(len(table), dtype=np.int64), [base]
    else:
        ids = _as_strings(table[entity])
        blank = ids.isin(markers).to_numpy()
        if blank.any():
            i = int(np.argmax(blank))
            raise DataError(f"{path}: column {entity!r}: missing entity value at {_where(kind, i)}")
        codes, uniques = ids.factorize(sort=True)
        names = [f"{base}/{u}" for u in uniques]

    group_codes, buckets, rows = _aggregate(np.asarray(codes, dtype=np.int64), stamps // period_ms, values, agg)
    bounds = np.searchsorted(group_codes, np.arange(len(names) + 1))
    series: list[Series] = []
    for g, series_name in enumerate(names):
        a, b = bounds[g], bounds[g + 1]
        series.extend(_dense(series_name, buckets[a:b], rows[a:b], int(period_ms), max_gap_periods, min_length))
    source = {"path": str(path), "format": kind, "columns": dict(columns), "timestamp": timestamp,
              "timestamp_format": timestamp_format, "entity": entity, "agg": agg,
              "max_gap_periods": max_gap_periods, "rows": len(table)}
    return SeriesSet(kpis, int(period_ms), series, source)


def merge_series_sets(sets: list[SeriesSet], source: dict[str, Any] | None = None) -> SeriesSet:
    """One SeriesSet holding the series of several with the same KPIs and period (names must be unique)."""
    if not sets:
        raise ValueError("merge_series_sets: nothing to merge")
    first = sets[0]
    for s in sets[1:]:
        if s.kpis != first.kpis or s.period_ms != first.period_ms:
            raise ValueError(f"merge_series_sets: KPIs/period differ: {first.kpis} @ {first.period_ms} ms vs "
                             f"{s.kpis} @ {s.period_ms} ms")
    series = [x for s in sets for x in s.series]
    names = [x.name for x in series]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"merge_series_sets: duplicate series names {dup[:5]}")
    return SeriesSet(list(first.kpis), first.period_ms, series, dict(source if source is not None else first.source))
