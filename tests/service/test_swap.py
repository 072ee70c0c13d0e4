"""Hot-swap of a served bundle (service/swap.py, REST PUT /v1/models/{name}): refused bundles change nothing,
the other bundle's cells are not touched, the new model starts as a cold start warmed from each cell's window
(checked against torch's parallel forward), and a swap under a running stream loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import shutil

import httpx
import numpy as np
import pytest
import torch

from models.export import load_bundle_model
from service.buffer.base import SampleBatch
from tests.service.helpers import KPIS, NORM, T0_MS, indication, make_bundle, publish, running_xapp, wait_for

CELLS = 6


def retrained(root, seed: int):
    """Another version of the test MS³M bundle: the same architecture, other weights, another name."""
    torch.manual_seed(seed)
    path = make_bundle(root / f"src{seed}", "ms3m")
    from models.export import write_bundle

    model, _ = load_bundle_model(path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return write_bundle(model, root / f"ms3m-v{seed}", name=f"ms3m-test-v{seed}", inputs=KPIS,
                        targets=["DRB.UEThpDl", "RRU.PrbUsedDl"], period_ms=1000, normalization=NORM)


def counters(xapp) -> dict[str, float]:
    get = xapp.registry.get_sample_value
    forecasts = {h.name: get("ms3m_forecasts_total", {"model": h.name}) or 0.0 for h in xapp.hosts}
    return {"accepted": get("ms3m_ingest_samples_total") or 0.0, **forecasts}


def torch_state_from_history(bundle_path, raw: np.ndarray) -> list[np.ndarray]:
    """The model's state after its parallel forward over raw samples (T, D) from zero (what a cold start
    warmed from a window holding all of them must reach)."""
    model = load_bundle_model(bundle_path)[0].double().eval()
    x = (raw - np.array(NORM["input_mean"])) / np.array(NORM["input_std"])
    with torch.no_grad():
        _, state = model.forward_with_state(torch.from_numpy(x)[None])
    return [s[0].numpy() for s in state]


@pytest.fixture
def bundles(tmp_path):
    return {"s4d": make_bundle(tmp_path / "s4d", "s4d"), "ms3m": make_bundle(tmp_path / "ms3m", "ms3m"),
            "v2": retrained(tmp_path, 2), "v3": retrained(tmp_path, 3)}


async def test_swap_refuses_bad_bundles_and_then_serves_a_warm_new_model(bundles, tmp_path):
    async with running_xapp([bundles["s4d"], bundles["ms3m"]], window_length=512) as xapp:
        url = f"http://127.0.0.1:{xapp.http_port}"
        await publish(xapp.grpc_port, [indication(CELLS, t, mid=t + 1) for t in range(40)])
        await wait_for(lambda: counters(xapp)["ms3m-test"] == 40 * CELLS)
        s4d = xapp.hosts[0]
        before = [a.copy() for a in s4d.table.arrays]
        broken = shutil.copytree(bundles["v2"], tmp_path / "broken")
        (broken / "step.onnx").write_bytes(b"not a graph")
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            r = await client.put("/v1/models/nope", json={"bundle": str(bundles["v2"])})
            assert r.status_code == 404 and "ms3m-test" in r.json()["detail"]
            for bad in (broken, tmp_path / "missing"):
                r = await client.put("/v1/models/ms3m-test", json={"bundle": str(bad)})
                assert r.status_code == 422 and "refused" in r.json()["detail"]
            assert [h.name for h in xapp.hosts] == ["s4d-test", "ms3m-test"]  # the old one keeps serving
            assert (await client.get("/v1/cells/cell-000/forecast")).status_code == 200
            r = await client.put("/v1/models/ms3m-test", json={"bundle": str(bundles["v2"])})
            assert r.status_code == 200, r.text
            done = r.json()
        assert done["replaced"] == "ms3m-test" and done["model"] == "ms3m-test-v2" and done["cells"] == CELLS
        assert done["window_samples"] == 40 * CELLS
        assert [h.name for h in xapp.hosts] == ["s4d-test", "ms3m-test-v2"] and "ms3m-test-v2" in xapp.routers
        for a, b in zip(s4d.table.arrays, before):  # the other bundle's cells: not touched, bit for bit
            assert np.array_equal(a, b, equal_nan=True)
        new = xapp.hosts[1]
        raw = np.stack([indication(CELLS, t).reports[0].values for t in range(40)]).astype(np.float64)
        want = torch_state_from_history(bundles["v2"], raw)
        got = [arr[new.table.slot("cell-000")] for arr in new.table.arrays[: new.n_model_state]]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3)
        await publish(xapp.grpc_port, [indication(CELLS, 40, mid=41)])
        await wait_for(lambda: counters(xapp)["ms3m-test-v2"] == CELLS)  # the new model answers


async def test_swap_under_a_running_stream_loses_and_duplicates_nothing(bundles, monkeypatch):
    import time

    import service.swap

    steps = 120
    warm = service.swap.replay_windows

    def slow_warm(host, series, windows):  # the stream goes on while the new model warms: a real catch-up
        out = warm(host, series, windows)
        deadline = time.monotonic() + 20
        while counters(xapp)["accepted"] < 70 * CELLS and time.monotonic() < deadline:
            time.sleep(0.01)
        return out

    monkeypatch.setattr(service.swap, "replay_windows", slow_warm)
    async with running_xapp([bundles["s4d"], bundles["ms3m"]], window_length=512) as xapp:
        url = f"http://127.0.0.1:{xapp.http_port}"

        async def stream():
            for t in range(0, steps, 4):
                await publish(xapp.grpc_port, [indication(CELLS, t, steps=4, mid=t + 1)])
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(stream())
        await wait_for(lambda: counters(xapp)["accepted"] >= 20 * CELLS)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            r = await client.put("/v1/models/ms3m-test", json={"bundle": str(bundles["v3"])})
        assert r.status_code == 200, r.text
        assert r.json()["caught_up_samples"] >= 40 * CELLS  # samples stepped while it warmed, replayed
        await feeder
        total = steps * CELLS
        await wait_for(lambda: counters(xapp)["accepted"] == total and counters(xapp)["s4d-test"] == total)
        c = counters(xapp)
        # every accepted sample stepped once by the MS³M slot: by the old model before the switch or the new after
        old = xapp.registry.get_sample_value("ms3m_forecasts_total", {"model": "ms3m-test"}) or 0.0
        await wait_for(lambda: old + (counters(xapp)["ms3m-test-v3"]) == total)
        assert xapp.registry.get_sample_value("ms3m_engine_dropped_total", {"reason": "step_error"}) in (None, 0.0)
        assert c["ms3m-test-v3"] > 0
        new = xapp.hosts[1]
        raw = np.stack([indication(CELLS, t).reports[3].values for t in range(steps)]).astype(np.float64)
        want = torch_state_from_history(bundles["v3"], raw)  # window ⊇ history: the uninterrupted run
        got = [arr[new.table.slot("cell-003")] for arr in new.table.arrays[: new.n_model_state]]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3)
        assert int(new.last_ts[new.table.slot("cell-003")]) == T0_MS + 1000 * (steps - 1)


def test_replay_batches_steps_recorded_sub_steps_in_order(bundles):
    from service.engine.host import ModelHost
    from service.runtime import load_bundle
    from service.swap import replay_batches

    host = ModelHost(load_bundle(bundles["s4d"]), KPIS)
    b = [SampleBatch(["a", "b"], np.array([T0_MS + 1000 * t] * 2), np.array([t + 1] * 2, np.uint64),
                     np.full((2, 3), 50.0, np.float32)) for t in range(3)]
    assert replay_batches(host, b) == 6
    assert host.last_ts[host.table.slot("a")] == T0_MS + 2000


async def test_a_changed_bundle_in_the_descriptor_is_swapped_in(bundles, tmp_path):
    import json

    descriptor = tmp_path / "config-file.json"
    descriptor.write_text(json.dumps({"controls": {"bundles": {}}}))
    async with running_xapp([bundles["s4d"], bundles["ms3m"]], config_file=str(descriptor)) as xapp:
        await publish(xapp.grpc_port, [indication(CELLS, t, mid=t + 1) for t in range(10)])
        await wait_for(lambda: counters(xapp)["ms3m-test"] == 10 * CELLS)
        descriptor.write_text(json.dumps({"controls": {"bundles": {"ms3m-test": str(bundles["v2"]),
                                                                   "s4d-test": str(bundles["s4d"])}}}))
        await wait_for(lambda: xapp.hosts[1].name == "ms3m-test-v2", timeout=20)
        assert xapp.hosts[0].name == "s4d-test"  # already serving that directory: left alone
        await publish(xapp.grpc_port, [indication(CELLS, 10, mid=11)])
        await wait_for(lambda: counters(xapp)["ms3m-test-v2"] == CELLS)


def test_snapshots_of_another_bundle_version_are_not_restored(bundles):
    from service.engine.host import ModelHost
    from service.runtime import load_bundle

    host = ModelHost(load_bundle(bundles["ms3m"]), KPIS)
    slots, _ = host.slots(["a", "b"], 0)
    host.step(slots, np.full((2, 3), 50.0, np.float32), np.full(2, T0_MS))
    records = host.snapshot_dirty()
    assert ModelHost(load_bundle(bundles["ms3m"]), KPIS).restore(records) == 2
    assert ModelHost(load_bundle(bundles["v2"]), KPIS).restore(records) == 0  # same layout, other weights
