"""The data contract between dataset loaders and the trainer.

A dataset is a `SeriesSet`: KPI names, a fixed sampling period, and a list of `Series`, one per entity
(a cell, a UE, a trace). Values are float32 (T, D) with NaN where a value is missing (gaps after
resampling, absent measurements); timestamps are regular. `ZScore` holds per-KPI statistics fitted on a
training split only and travels into the model bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Series:
    """One entity's KPI series: values (T, D) float32 with NaN = missing, timestamps (T,) int64 ms."""

    name: str
    values: np.ndarray
    timestamps_ms: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # optional (T,) arrays: "anomaly", "regime"

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.timestamps_ms = np.asarray(self.timestamps_ms, dtype=np.int64)
        if self.values.ndim != 2 or self.timestamps_ms.shape != (self.values.shape[0],):
            raise ValueError(f"series {self.name}: values must be (T, D) and timestamps (T,), got "
                             f"{self.values.shape} and {self.timestamps_ms.shape}")
        for k, v in self.labels.items():
            if len(v) != len(self):
                raise ValueError(f"series {self.name}: label {k!r} has {len(v)} entries for {len(self)} steps")

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def mask(self) -> np.ndarray:
        """(T, D) bool, True where a value is present."""
        return ~np.isnan(self.values)

    def slice(self, start: int, stop: int, name: str | None = None) -> Series:
        return Series(name or self.name, self.values[start:stop], self.timestamps_ms[start:stop],
                      {k: v[start:stop] for k, v in self.labels.items()})


@dataclass
class SeriesSet:
    """A dataset: KPI names (D), sampling period, series, and a description of where it came from."""

    kpis: list[str]
    period_ms: int
    series: list[Series]
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.series:
            if s.values.shape[1] != len(self.kpis):
                raise ValueError(f"series {s.name} has {s.values.shape[1]} columns, {len(self.kpis)} KPIs named")

    def __len__(self) -> int:
        return len(self.series)

    def index(self, kpi: str) -> int:
        try:
            return self.kpis.index(kpi)
        except ValueError:
            raise KeyError(f"KPI {kpi!r} not in dataset; it has {self.kpis}") from None

    def subset(self, names: list[str] | set[str]) -> SeriesSet:
        names = set(names)
        return SeriesSet(self.kpis, self.period_ms, [s for s in self.series if s.name in names], dict(self.source))

    @property
    def n_samples(self) -> int:
        return sum(len(s) for s in self.series)


@dataclass
class ZScore:
    """Per-KPI z-score statistics (NaN-aware). Fit on the training split only, then apply everywhere."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: SeriesSet, min_std: float = 1e-6) -> ZScore:
        stacked = np.concatenate([s.values for s in data.series], axis=0).astype(np.float64)
        if stacked.size == 0:
            raise ValueError("cannot fit normalization on an empty dataset")
        present = ~np.isnan(stacked)
        empty = [k for k, ok in zip(data.kpis, present.any(0)) if not ok]
        if empty:
            raise ValueError(f"KPI(s) {empty} have no values at all in the training split")
        mean = np.nanmean(stacked, axis=0)
        std = np.nanstd(stacked, axis=0)
        return cls(mean.astype(np.float32), np.maximum(std, min_std).astype(np.float32))

    def apply(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def invert(self, values: np.ndarray, index: list[int] | None = None) -> np.ndarray:
        """Back to KPI units; `index` selects which KPIs the last axis of `values` holds."""
        m = self.mean if index is None else self.mean[index]
        s = self.std if index is None else self.std[index]
        return values * s + m

    def transform(self, data: SeriesSet) -> SeriesSet:
        return SeriesSet(data.kpis, data.period_ms,
                         [Series(s.name, self.apply(s.values), s.timestamps_ms, s.labels) for s in data.series],
                         dict(data.source))
