"""Evaluation: MSE / MAE per horizon, on the normalized scale and in KPI units.

Two protocols:
- streaming (`evaluate_stream`): the model runs over each whole series with its state carried across
  chunks, exactly as the xApp steps it; every position t ≥ burn_in with a known target t+h counts.
- window (`evaluate_last`): independent windows of fixed lookback, scored at their last position only
  (the ETT / LTSF protocol: every window counted, no drop_last).

Errors in KPI units come from the normalized errors and the training-split std (no re-fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.base import StreamingModel
from models.training.data.ett import ett_windows
from models.training.data.windows import forward_fill
from models.training.series import Series, SeriesSet, ZScore


def future_targets(targets: np.ndarray, horizon: int) -> np.ndarray:
    """(T, K) → (T, H, K) with [t, h] = targets[t + h + 1], NaN beyond the end."""
    T, K = targets.shape
    padded = np.concatenate([targets, np.full((horizon, K), np.nan, np.float32)])
    return np.stack([padded[h + 1 : h + 1 + T] for h in range(horizon)], axis=1)


class ErrorAccumulator:
    """Sums of squared and absolute errors per (horizon, target) over masked positions."""

    def __init__(self, horizon: int, n_targets: int):
        self.sq = np.zeros((horizon, n_targets))
        self.ab = np.zeros((horizon, n_targets))
        self.n = np.zeros((horizon, n_targets))

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """pred, truth (N, H, K); NaN in truth = not counted."""
        ok = ~np.isnan(truth)
        err = np.where(ok, pred - np.nan_to_num(truth), 0.0)
        self.sq += (err**2).sum(0)
        self.ab += np.abs(err).sum(0)
        self.n += ok.sum(0)

    def metrics(self, target_std: np.ndarray | None = None, names: list[str] | None = None) -> dict[str, Any]:
        n = np.maximum(self.n, 1)
        mse_hk, mae_hk = self.sq / n, self.ab / n
        tot = max(self.n.sum(), 1)
        out: dict[str, Any] = {
            "mse": float(self.sq.sum() / tot), "mae": float(self.ab.sum() / tot), "count": int(self.n.sum()),
            "mse_by_horizon": (self.sq.sum(1) / np.maximum(self.n.sum(1), 1)).tolist(),
            "mae_by_horizon": (self.ab.sum(1) / np.maximum(self.n.sum(1), 1)).tolist(),
        }
        if target_std is not None:
            std = np.asarray(target_std, dtype=np.float64)
            names = names or [f"target{k}" for k in range(len(std))]
            out["units"] = {
                name: {"mse": float((mse_hk[:, k] * self.n[:, k]).sum() / max(self.n[:, k].sum(), 1) * std[k] ** 2),
                       "mae": float((mae_hk[:, k] * self.n[:, k]).sum() / max(self.n[:, k].sum(), 1) * std[k]),
                       "mae_by_horizon": (mae_hk[:, k] * std[k]).tolist(),
                       "rmse_by_horizon": (np.sqrt(mse_hk[:, k]) * std[k]).tolist()}
                for k, name in enumerate(names)
            }
        return out


@torch.no_grad()
def stream_forecasts(model: StreamingModel, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Forecasts at every position of x (B, T, D), state carried across chunks → (B, T, H, K)."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    outs, state = [], None
    for s in range(0, xt.shape[1], chunk):
        y, state = model.forward_with_state(xt[:, s : s + chunk], state)
        outs.append(y)
    return torch.cat(outs, 1).numpy()


def evaluate_stream(
    model: StreamingModel,
    data: SeriesSet,
    input_index: list[int],
    target_cols: list[int],
    horizon: int,
    burn_in: int = 0,
    scaler: ZScore | None = None,
    chunk: int = 1024,
    baseline: bool = True,
) -> dict[str, Any]:
    """Streaming evaluation over every series of `data` (normalized). With `baseline`, also the
    last-value forecast's errors under the same mask (key "last_value")."""
    acc, base = ErrorAccumulator(horizon, len(target_cols)), ErrorAccumulator(horizon, len(target_cols))
    by_len: dict[int, list] = {}
    for s in data.series:
        by_len.setdefault(len(s), []).append(s)
    for group in by_len.values():
        for i in range(0, len(group), 64):
            batch = group[i : i + 64]
            x = np.stack([forward_fill(s.values)[0][:, input_index] for s in batch])
            truth = np.stack([future_targets(s.values[:, target_cols], horizon) for s in batch])
            truth[:, :burn_in] = np.nan
            pred = stream_forecasts(model, x, chunk)
            acc.add(pred.reshape(-1, horizon, len(target_cols)), truth.reshape(-1, horizon, len(target_cols)))
            if baseline:
                last = np.stack([forward_fill(s.values)[0][:, target_cols] for s in batch])
                last = np.repeat(last[:, :, None, :], horizon, axis=2)
                base.add(last.reshape(-1, horizon, len(target_cols)), truth.reshape(-1, horizon, len(target_cols)))
    std = scaler.std[target_cols] if scaler is not None else None
    names = [data.kpis[i] for i in target_cols]
    out = acc.metrics(std, names)
    if baseline:
        out["last_value"] = base.metrics(std, names)
    return out


@torch.no_grad()
def evaluate_last(model: StreamingModel, X: np.ndarray, Y: np.ndarray, batch: int = 256,
                  target_std: np.ndarray | None = None, names: list[str] | None = None,
                  drop_last: int | None = None) -> dict[str, Any]:
    """Window protocol: X (N, L, D) lookbacks, Y (N, H, K) futures; the forecast is model(X)[:, -1]. With
    `drop_last` = b, "drop_last" also gives the MSE/MAE over the first ⌊N/b⌋·b windows only: what a test loader of
    batch b with drop_last=True scores (the loader of the published Informer / FEDformer tables)."""
    model.eval()
    acc = ErrorAccumulator(Y.shape[1], Y.shape[2])
    kept = len(X) - len(X) % drop_last if drop_last else 0
    acc_kept = ErrorAccumulator(Y.shape[1], Y.shape[2])
    for i in range(0, len(X), batch):
        pred = model.forward_last(torch.from_numpy(np.ascontiguousarray(X[i : i + batch], dtype=np.float32))).numpy()
        acc.add(pred, Y[i : i + batch])
        if i < kept:
            acc_kept.add(pred[: kept - i], Y[i : min(i + batch, kept)])
    out = acc.metrics(target_std, names)
    if drop_last:
        m = acc_kept.metrics()
        out["drop_last"] = {"batch": drop_last, "windows": kept, "mse": m["mse"], "mae": m["mae"]}
    return out


def evaluate_windows(model: StreamingModel, data: SeriesSet, input_index: list[int], target_cols: list[int],
                     window: int, horizon: int, burn_in: int = 0, positions: str = "all",
                     max_windows: int | None = None, scaler: ZScore | None = None,
                     baseline: bool = False, drop_last: int | None = None) -> dict[str, Any]:
    """The trainer's evaluation: streaming over whole series ("all"), or the window protocol at the last
    position of every window of length `window` ("last"), optionally subsampled to max_windows. With
    `baseline`, the last-value forecast's metrics under the same protocol go under "last_value"; `drop_last`: see
    evaluate_last (window protocol only)."""
    if positions == "all":
        return evaluate_stream(model, data, input_index, target_cols, horizon, burn_in, scaler, baseline=baseline)
    X, Y = last_position_windows(data, input_index, target_cols, window, horizon)
    last = last_position_windows(data, target_cols, target_cols, window, horizon)[0][:, -1] if baseline else None
    if max_windows and len(X) > max_windows:
        pick = np.linspace(0, len(X) - 1, max_windows).round().astype(int)
        X, Y = X[pick], Y[pick]
        last = last[pick] if last is not None else None
    std = scaler.std[target_cols] if scaler is not None else None
    names = [data.kpis[i] for i in target_cols]
    out = evaluate_last(model, X, Y, target_std=std, names=names, drop_last=drop_last)
    if last is not None:
        acc = ErrorAccumulator(horizon, len(target_cols))
        acc.add(np.repeat(last[:, None, :], horizon, axis=1), Y)
        out["last_value"] = acc.metrics(std, names)
    return out


def last_position_windows(data: SeriesSet, input_index: list[int], target_cols: list[int], window: int,
                          horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of `window` inputs (forward-filled) and the `horizon` targets after it (NaN = missing):
    len − window − horizon + 1 per series, stride 1, no drop_last. X (N, window, D_in), Y (N, H, K)."""
    filled = SeriesSet(data.kpis, data.period_ms,
                       [Series(s.name, forward_fill(s.values)[0], s.timestamps_ms) for s in data.series])
    X, _ = ett_windows(filled, window, horizon)
    _, Y = ett_windows(data, window, horizon)
    if len(X) == 0:
        raise ValueError(f"no series is longer than window + horizon = {window + horizon}")
    return X[..., input_index], Y[..., target_cols]
