"""The window protocol's scoring (models.training.evaluate.evaluate_last): every window, plus the drop_last figure
of the published tables' test loaders."""

from __future__ import annotations

import numpy as np
import torch

from models import create_model
from models.training.evaluate import evaluate_last


def test_drop_last_scores_only_the_full_batches_and_the_plain_figure_every_window():
    torch.manual_seed(0)
    model = create_model("dlinear", d_input=2, n_targets=2, horizon=3, window=8).eval()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 8, 2)).astype(np.float32)
    Y = rng.standard_normal((70, 3, 2))
    with torch.no_grad():
        pred = model.forward_last(torch.from_numpy(X)).numpy()
    out = evaluate_last(model, X, Y, batch=16, drop_last=32)  # 70 windows: two loader batches of 32 kept
    assert out["count"] == 70 * 3 * 2
    assert np.isclose(out["mse"], ((pred - Y) ** 2).mean()) and np.isclose(out["mae"], np.abs(pred - Y).mean())
    kept = out["drop_last"]
    assert kept["batch"] == 32 and kept["windows"] == 64
    assert np.isclose(kept["mse"], ((pred[:64] - Y[:64]) ** 2).mean())
    assert np.isclose(kept["mae"], np.abs(pred[:64] - Y[:64]).mean())
    assert "drop_last" not in evaluate_last(model, X, Y)
    exact = evaluate_last(model, X[:64], Y[:64], drop_last=32)  # nothing to drop: the same figure
    assert np.isclose(exact["drop_last"]["mse"], exact["mse"])
