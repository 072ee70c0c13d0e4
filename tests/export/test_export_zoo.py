"""Every registered model's exported step (ONNX via onnxruntime, TorchScript) matches torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import list_models
from models.export import export_onnx, export_torchscript, onnx_has_complex
from service.runtime.backends import OnnxStepRuntime, TorchScriptStepRuntime
from tests.models.zoo_helpers import D_IN, tiny_model, window_register

STEPS = 1000


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name → (model, onnx path, ts path), exported once per test module."""
    out = {}
    root = tmp_path_factory.mktemp("graphs")

    def get(name, **framing):
        key = f"{name}-{'-'.join(map(str, framing.values()))}"
        if key not in out:
            model = tiny_model(name, torch.float32, **framing)
            onnx_path = export_onnx(model, root / f"{key}.onnx")
            out[key] = (model, onnx_path, export_torchscript(model, root / f"{key}.ts"))
        return out[key]

    return get


# (batch, steps): the long run at batch 1 is where state drift would show; the wide batches check the batched
# kernels, which a few steps exercise as well as many (this keeps the default suite fast)
BATCHES = ((1, STEPS), (7, 100), (1024, 8))


@pytest.mark.parametrize("name", list_models())
def test_exported_steps_match_torch_over_1000_steps(name, exported):
    check_exported(name, *exported(name), batches=BATCHES)


@pytest.mark.parametrize("name", list_models())
def test_framed_exported_steps_match_torch_over_1000_steps(name, exported):
    """Causal normalization and channel independence live in the exported step graph (and its state)."""
    framing = {"normalization": "causal", "channels": "independent"}
    check_exported(name, *exported(name, **framing), batches=((3, STEPS),), offset=2.0)


def check_exported(name, model, onnx_path, ts_path, batches, offset=0.0):
    """batches: (batch, steps) pairs; a window model runs at most window + 8 steps (its register wraps once)."""
    assert not onnx_has_complex(onnx_path)
    runtimes = [OnnxStepRuntime(onnx_path), TorchScriptStepRuntime(ts_path)]
    for batch, steps in batches:
        rng = np.random.default_rng(batch)
        xs = offset + rng.standard_normal((steps, batch, D_IN), dtype=np.float32)
        ref_state = model.init_state(batch, dtype=torch.float32)
        rt_states = [[s.numpy() for s in ref_state] for _ in runtimes]
        worst = [0.0] * len(runtimes)
        window = window_register(model)
        if window:
            steps = min(steps, window + 8)
        with torch.inference_mode():
            for t in range(steps):
                y_ref, ref_state = model.step(torch.from_numpy(xs[t]), ref_state)
                y_ref = y_ref.numpy()
                scale = max(np.abs(y_ref).max(), 1e-6)
                for i, rt in enumerate(runtimes):
                    y, rt_states[i] = rt.run(xs[t], rt_states[i])
                    worst[i] = max(worst[i], float(np.abs(y - y_ref).max() / scale))
                    if window:  # the register holds copies of the inputs: bit for bit, in every runtime
                        assert np.array_equal(rt_states[i][0], ref_state[0].numpy())
        for rt, err in zip(runtimes, worst):
            assert err <= 1e-4, f"{name} {rt.kind} batch={batch}: relative error {err:.2e}"
