"""The naive baseline of `ms3m bench service`: FastAPI + torch, recomputing each cell's forecast with a full
forward over its whole window on every request (what a straightforward model server does).

    python -m bench.naive_service BUNDLE PORT [WINDOW]

POST /forecast {"cells": [...], "values": [[...], ...]} appends one sample per cell to its window and
returns the forecasts of those cells, computed by model(windows)[:, -1] in one batched forward.
"""

from __future__ import annotations

import collections
import sys

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from models.export import load_bundle_model


class Batch(BaseModel):
    cells: list[str]
    values: list[list[float]]


def create_app(bundle: str, window: int = 256) -> FastAPI:
    torch.set_num_threads(1)
    model, manifest = load_bundle_model(bundle)
    mean = np.array(manifest["normalization"]["input_mean"], np.float32)
    std = np.array(manifest["normalization"]["input_std"], np.float32)
    windows: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=window))
    app = FastAPI()

    @app.post("/forecast")
    def forecast(batch: Batch) -> dict:
        for cell, v in zip(batch.cells, batch.values):
            windows[cell].append((np.asarray(v, np.float32) - mean) / std)
        x = np.zeros((len(batch.cells), window, len(mean)), np.float32)
        for i, cell in enumerate(batch.cells):
            w = windows[cell]
            x[i, window - len(w):] = np.stack(w)
        with torch.inference_mode():
            y = model(torch.from_numpy(x))[:, -1]
        return {"n": len(batch.cells), "first": y[0].flatten().tolist()}

    return app


if __name__ == "__main__":
    bundle, port = sys.argv[1], int(sys.argv[2])
    window = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    uvicorn.run(create_app(bundle, window), host="127.0.0.1", port=port, log_level="warning", access_log=False)
