"""Fixtures for service tests: tiny bundles, a running xApp on ephemeral ports, KPI messages."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

import grpc
import numpy as np

from ms3m.v1 import kpm_pb2, kpm_pb2_grpc

KPIS = ["DRB.UEThpDl", "RRU.PrbUsedDl", "RF.serving.RSRP"]
T0_MS = 1_700_000_000_000  # timestamps of the test messages (2023): xApps under test accept any age
TARGETS = ["DRB.UEThpDl", "RRU.PrbUsedDl"]
NORM = {"kind": "zscore", "input_mean": [20000.0, 50.0, -95.0], "input_std": [8000.0, 20.0, 6.0],
        "target_mean": [20000.0, 50.0], "target_std": [8000.0, 20.0]}


def make_bundle(root: Path, model: str = "s4d", **cfg) -> Path:
    import torch

    from models import create_model
    from models.export import write_bundle

    torch.manual_seed(0)
    base = {"s4d": {"d_model": 16, "n_layers": 2, "d_state": 8},
            "ms3m": {"d_feature": 8, "d_gate": 8, "experts": [
                {"kind": "s4d", "scale": 1, "d_model": 8, "n_layers": 1, "options": {"d_state": 4}},
                {"kind": "lru", "scale": 4, "d_model": 8, "n_layers": 1, "options": {"d_state": 4}},
                {"kind": "s4d", "scale": 16, "d_model": 8, "n_layers": 1, "options": {"d_state": 4}}]}}[model]
    base.update(cfg)
    m = create_model(model, d_input=3, n_targets=2, horizon=4, target_index=(0, 1), **base)
    return write_bundle(m, root / f"{model}-bundle", name=f"{model}-test", inputs=KPIS, targets=TARGETS,
                        period_ms=1000, normalization=NORM)


def kpi_values(cells: int, t: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed * 100003 + t)
    load = 50 + 30 * np.sin(t / 20 + np.arange(cells)) + rng.normal(0, 3, cells)
    return np.stack([400 * (100 - load) + rng.normal(0, 500, cells), load, -95 + rng.normal(0, 2, cells)], 1)


def indication(cells: int, t0: int, steps: int = 1, mid: int = 1, seed: int = 0, prefix: str = "cell") -> \
        kpm_pb2.KpiIndication:
    msg = kpm_pb2.KpiIndication(e2_node_id="gnb-1", granularity_period_ms=1000, meas_names=KPIS, message_id=mid)
    for t in range(t0, t0 + steps):
        vals = kpi_values(cells, t, seed)
        for c in range(cells):
            msg.reports.add(cell_id=f"{prefix}-{c:03d}", timestamp_ms=T0_MS + 1000 * t,
                            sequence=t + 1, values=vals[c].tolist())
    return msg


@contextlib.asynccontextmanager
async def running_xapp(bundles: list[Path], **settings):
    from service.app import XApp
    from service.config import Settings

    with tempfile.TemporaryDirectory(prefix="ms3m-journal-") as journal_dir:
        s = Settings(http_port=0, grpc_port=0, http_host="127.0.0.1", grpc_host="127.0.0.1", bundles=bundles,
                     **{"buffer": "memory", "flush_ms": 1.0, "max_sample_age_ms": 0, "journal_dir": journal_dir,
                        **settings})
        xapp = XApp(s)
        await xapp.start()
        try:
            yield xapp
        finally:
            await xapp.stop()


def ar1_stream(n_cells: int, steps: int, K: int = 2, phi: float = 0.8, noise: float = 1.0, seed: int = 0):
    """AR(1) + Gaussian observation noise, (steps, n_cells, K) float32."""
    rng = np.random.default_rng(seed)
    z = np.zeros((n_cells, K))
    out = np.empty((steps, n_cells, K), np.float32)
    for t in range(steps):
        z = phi * z + rng.normal(size=(n_cells, K))
        out[t] = 10.0 + z + noise * rng.normal(size=(n_cells, K))
    return out


async def publish(port: int, messages) -> list[kpm_pb2.IngestAck]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = kpm_pb2_grpc.E2IngestStub(ch)
        return [ack async for ack in stub.PublishAcked(iter(messages))]


async def wait_for(cond, timeout=10.0):
    """Until cond() is true (a coroutine function's result is awaited); AssertionError after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not ((await r) if asyncio.iscoroutine(r := cond()) else r):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)
