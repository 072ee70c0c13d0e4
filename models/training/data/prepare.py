"""From a TrainConfig to normalized train / val / test splits.

`prepare_data` loads the dataset, splits it (by whole series where a dataset has many — held-out
cells or traces, app/mobility-stratified for the Irish traces — else by time), fits the z-score on
the training split only, and resolves the input and target KPIs.
"""

from __future__ import annotations

from typing import Any

from contract.kpis import DL_THROUGHPUT
from models.training.config import PreparedData, TrainConfig
from models.training.data import load_dataset
from models.training.data.ett import load_ett
from models.training.data.irish5g import split_by_app, split_by_trace
from models.training.data.windows import split_by_series, split_by_time
from models.training.series import ZScore

# Main forecasting target of each known dataset (the rest of its KPIs are inputs by default).
DEFAULT_TARGETS = {"synthetic": [DL_THROUGHPUT], "irish5g": [DL_THROUGHPUT]}
# Loader options used unless the run sets them (--data-opt): synthetic = 32 cells × 4 (compressed) days.
DEFAULT_OPTIONS = {"synthetic": {"n_cells": 32, "length": 4 * 1440}}


def prepare_data(config: TrainConfig) -> PreparedData:
    name = config.data.lower()
    opts = {**DEFAULT_OPTIONS.get(name, {}), **config.data_options}
    if name in ("ett", "etth1"):
        train, val, test, scaler = load_ett(opts.pop("path", None), lookback=config.window, **opts)
        targets = config.targets or list(train.kpis)
        split = "ett-protocol"
    else:
        full = load_dataset(config.data, **opts)
        split = config.split
        if split == "auto":
            split = "series" if len(full.series) >= 10 else "time"
        if split == "app":
            if name not in ("irish5g", "irish-5g"):
                raise ValueError(f"split 'app' (train on one application, test on the other) needs the irish5g "
                                 f"data, not {config.data!r}")
            train, val, test = split_by_app(full, config.train_app, config.val_fraction, config.seed)
        elif split == "series" and name in ("irish5g", "irish-5g"):
            train, val, test = split_by_trace(full, config.val_fraction, config.test_fraction, config.seed)
        elif split == "series":
            train, val, test = split_by_series(full, config.val_fraction, config.test_fraction, config.seed)
        else:
            train, val, test = split_by_time(full, config.val_fraction, config.test_fraction)
        scaler = ZScore.fit(train)
        train, val, test = scaler.transform(train), scaler.transform(val), scaler.transform(test)
        targets = config.targets or DEFAULT_TARGETS.get(name) or [full.kpis[0]]
    inputs = config.inputs or list(train.kpis)
    input_index = [train.index(k) for k in inputs]
    target_cols = [train.index(k) for k in targets]
    missing = [k for k in targets if k not in inputs]
    if missing:
        raise ValueError(f"target KPI(s) {missing} must also be inputs (the model sees their past values)")
    target_index = [inputs.index(k) for k in targets]
    if not any(len(s) >= config.window for s in train.series):
        longest = max((len(s) for s in train.series), default=0)
        raise ValueError(f"no training series has window = {config.window} samples (the longest has {longest}); "
                         "use a smaller --window")
    description: dict[str, Any] = {
        "name": name if name in ("synthetic", "ett", "etth1", "irish5g") else str(config.data),
        "source": train.source, "split": split, "period_ms": train.period_ms,
        "series": {"train": len(train.series), "val": len(val.series), "test": len(test.series)},
        "samples": {"train": train.n_samples, "val": val.n_samples, "test": test.n_samples},
        "options": config.data_options,
    }
    return PreparedData(train, val, test, scaler, input_index, target_index, target_cols, description)
