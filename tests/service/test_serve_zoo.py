"""Every research baseline and seed architecture of the zoo serves in the xApp like any other model: its bundle
(the ONNX step graph of its export form) is published, KPI indications arrive over gRPC, and the forecast served
over REST is the torch model's own step output on the same normalized inputs, in physical units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.zoo_helpers import tiny_model
from tests.service.helpers import KPIS, NORM, T0_MS, TARGETS, indication, kpi_values, publish, running_xapp, wait_for

# The research baselines (README, "The model zoo"): window models whose step cost grows with the window.
RESEARCH_BASELINES = ["patchtst", "itransformer", "informer", "fedformer", "tft", "etsformer", "crossformer"]
SEED_ARCHITECTURES = ["ssma", "afssm", "nsm"]  # models/seeds
CELLS, STEPS = 3, 30


def write_tiny_bundle(root, name: str):
    """A tiny model of `name` (the zoo's TINY sizes) on the service tests' three KPIs, as a bundle."""
    from models.export import write_bundle

    model = tiny_model(name, torch.float32, d_input=len(KPIS), n_targets=len(TARGETS), target_index=(0, 1))
    return model, write_bundle(model, root / f"{name}-bundle", name=f"{name}-test", inputs=KPIS, targets=TARGETS,
                               period_ms=1000, normalization=NORM)


def expected_forecast(model, cell: int) -> np.ndarray:
    """The torch model stepped over the cell's normalized inputs from the zero state → its last forecast, (H, K)
    in physical units."""
    mean, std = np.asarray(NORM["input_mean"]), np.asarray(NORM["input_std"])
    state = model.init_state(1, dtype=torch.float32)
    with torch.inference_mode():
        for t in range(STEPS):
            x = (kpi_values(CELLS, t)[cell] - mean) / std
            y, state = model.step(torch.tensor(x, dtype=torch.float32)[None], state)
    return y[0].numpy() * np.asarray(NORM["target_std"]) + np.asarray(NORM["target_mean"])


@pytest.mark.parametrize("name", RESEARCH_BASELINES + SEED_ARCHITECTURES)
async def test_a_research_baseline_bundle_serves_forecasts_over_rest(name, tmp_path):
    import httpx

    model, bundle = write_tiny_bundle(tmp_path, name)
    async with running_xapp([bundle]) as xapp:
        acks = await publish(xapp.grpc_port, [indication(CELLS, t, mid=t) for t in range(STEPS)])
        assert [a.accepted for a in acks] == [CELLS] * STEPS and all(a.rejected == 0 for a in acks)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            for c in range(CELLS):
                body = {}

                async def last_sample_stepped(cell=f"cell-{c:03d}"):
                    nonlocal body
                    r = await http.get(f"/v1/cells/{cell}/forecast")
                    body = r.json() if r.status_code == 200 else {}
                    return int(body.get("timestampMs", 0)) == T0_MS + 1000 * (STEPS - 1)

                await wait_for(last_sample_stepped)
                got = np.stack([body["point"][t] for t in TARGETS], 1)  # (H, K)
                want = expected_forecast(model, c)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

