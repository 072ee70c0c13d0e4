"""Comparison recipes and their aggregation (models.training.compare), the cross-application split."""

from __future__ import annotations

import numpy as np
import pytest

from models.training import compare as cmp
from models.training.data.irish5g import split_by_app
from models.training.series import Series, SeriesSet
from models.training.trainer import masked_error


def test_run_config_layers_size_recipe_and_caller_settings():
    base, overrides = cmp.ett_preset(96, 100)
    ms3m = cmp.run_config("ms3m", base, overrides)
    assert ms3m.loss_positions == "last" and ms3m.model_config["channels"] == "independent"
    assert any(e["kind"] == "linear" for e in ms3m.model_config["experts"])
    s4d = cmp.run_config("s4d", base, overrides)
    assert s4d.model_config == {**cmp.SIZES["s4d"], "channels": "independent"} and s4d.loss_positions == "last"
    lru = cmp.run_config("lru", base, overrides)
    assert lru.model_config == cmp.SIZES["lru"] and lru.loss_positions == "all"
    import dataclasses

    mine = cmp.run_config("ms3m", dataclasses.replace(base, model_config={"channels": "mixed"}), overrides)
    assert mine.model_config["channels"] == "mixed"  # the caller's model config wins over the recipe
    assert set(cmp.ETT_PUBLISHED) == set(cmp.ETT_HORIZONS)


def test_aggregate_seeds_gives_mean_and_std_per_model():
    rows = [[{"model": "a", "mse": 1.0, "mae": 2.0, "params": 10}, {"model": "b", "mse": 3.0, "mae": 1.0}],
            [{"model": "a", "mse": 3.0, "mae": 2.0, "params": 10}, {"model": "b", "mse": 5.0, "mae": 3.0}]]
    out = {r["model"]: r for r in cmp.aggregate_seeds(rows)}
    assert out["a"]["mse"] == 2.0 and out["a"]["mse_std"] == 1.0 and out["a"]["mae_std"] == 0.0
    assert out["a"]["seeds"] == 2 and out["a"]["params"] == 10 and "params_std" not in out["a"]
    assert out["b"]["mae"] == 2.0


def _traces(names):
    return SeriesSet(["x"], 1000, [Series(n, np.zeros((20, 1), np.float32), np.arange(20) * 1000) for n in names])


def test_split_by_app_trains_on_one_application_and_tests_on_the_other():
    names = [f"{app}/{mob}/t{i}.csv" for app in ("Download", "Netflix") for mob in ("Driving", "Static")
             for i in range(4)]
    train, val, test = split_by_app(_traces(names), "Netflix", 0.25, seed=0)
    assert {s.name.split("/")[0] for s in train.series + val.series} == {"Netflix"}
    assert {s.name.split("/")[0] for s in test.series} == {"Download"} and len(test.series) == 8
    assert len(val.series) == 2 and len(train.series) == 6
    with pytest.raises(ValueError, match="Upload"):
        split_by_app(_traces(names), "Upload")


def test_masked_error_is_the_mean_squared_or_absolute_error_over_the_mask():
    import torch

    pred, target = torch.tensor([[1.0, 5.0, 0.0]]), torch.tensor([[0.0, 2.0, 9.0]])
    mask = torch.tensor([[True, True, False]])
    assert masked_error(pred, target, mask, "mae").item() == 2.0
    assert masked_error(pred, target, mask).item() == 5.0
