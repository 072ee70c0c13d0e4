"""Bundles: write from a trained model, load in a torch-free process, same forecasts; clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from models.export import load_bundle_model, write_bundle
from service.runtime import BundleError, create_runtime, load_bundle
from tests.models.zoo_helpers import horizon_targets, synthetic_kpis

KPIS = ["DRB.UEThpDl", "RF.serving.RSRP", "RRU.PrbUsedDl"]


def _tiny_trained_s4d():
    from models import create_model

    torch.manual_seed(0)
    m = create_model("s4d", d_input=3, n_targets=1, horizon=4, target_index=(0,), d_model=16, n_layers=2, d_state=8)
    data = synthetic_kpis(8, 96)
    opt = torch.optim.AdamW(m.param_groups(lr=3e-3, weight_decay=0.01))
    for _ in range(20):
        loss = torch.nn.functional.mse_loss(m(data)[:, :-4], horizon_targets(data, 4, (0,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    model = _tiny_trained_s4d()
    norm = {"kind": "zscore", "input_mean": [1.0, -90.0, 50.0], "input_std": [2.0, 5.0, 10.0],
            "target_mean": [1.0], "target_std": [2.0]}
    return write_bundle(model, tmp_path_factory.mktemp("b") / "s4d-tiny", name="s4d-tiny", inputs=KPIS,
                        targets=KPIS[:1], period_ms=1000, normalization=norm, data={"source": "synthetic"},
                        metrics={"val_mse": 0.5})


def test_bundle_layout_and_manifest(bundle_dir: Path):
    names = {p.name for p in bundle_dir.iterdir()}
    assert {"config.json", "weights.safetensors", "step.onnx", "step.ts"} <= names
    b = load_bundle(bundle_dir)
    assert b.manifest.model == "s4d" and b.manifest.inputs == KPIS and b.manifest.horizon == 4
    assert b.manifest.graph.inputs[0] == "x" and b.manifest.state[0].name == "layer0.ssm"


def test_fresh_torch_free_process_serves_same_forecasts(bundle_dir: Path, tmp_path: Path):
    xs = np.random.default_rng(0).standard_normal((50, 5, 3)).astype(np.float32)
    np.save(tmp_path / "xs.npy", xs)
    code = textwrap.dedent(f"""
        import sys, json, numpy as np
        from service.runtime import load_bundle, create_runtime
        b = load_bundle({str(bundle_dir)!r})
        rt = create_runtime(b, "onnxruntime")
        xs = np.load({str(tmp_path / "xs.npy")!r})
        state = [np.zeros((xs.shape[1], *s.shape), np.float32) for s in b.manifest.state]
        for x in xs:
            y, state = rt.run(x, state)
        np.save({str(tmp_path / "y.npy")!r}, y)
        assert "torch" not in sys.modules, "the onnxruntime path imported torch"
        print(json.dumps({{"torch_loaded": "torch" in sys.modules}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["torch_loaded"] is False
    model, _ = load_bundle_model(bundle_dir)
    state = model.init_state(5)
    with torch.inference_mode():
        for x in xs:
            y_ref, state = model.step(torch.from_numpy(x), state)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), y_ref.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["onnxruntime", "torchscript", "torch"])
def test_all_runtimes_load_the_bundle(bundle_dir: Path, kind: str):
    b = load_bundle(bundle_dir)
    rt = create_runtime(b, kind)
    state = [np.zeros((2, *s.shape), np.float32) for s in b.manifest.state]
    y, new = rt.run(np.ones((2, 3), np.float32), state)
    assert y.shape == (2, 4, 1) and len(new) == len(state)


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_missing_file_is_named(bundle_dir: Path, tmp_path: Path):
    b = _copy(bundle_dir, tmp_path)
    (b / "step.onnx").unlink()
    with pytest.raises(BundleError, match=r"missing file step\.onnx"):
        load_bundle(b)


def test_corrupt_file_is_named(bundle_dir: Path, tmp_path: Path):
    b = _copy(bundle_dir, tmp_path)
    with open(b / "weights.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match=r"weights.safetensors is corrupt"):
        load_bundle(b)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(horizon=9), "horizon"),
    (lambda d: d["normalization"].update(input_std=[1.0, 0.0, 1.0]), "input_std"),
    (lambda d: d.update(format_version=99), "format_version"),
    (lambda d: d["files"]["onnx"].update(path="../../etc/passwd"), "relative"),
    (lambda d: d.pop("targets"), "targets"),
])
def test_invalid_manifest_is_explained(bundle_dir: Path, tmp_path: Path, edit, message):
    b = _copy(bundle_dir, tmp_path)
    doc = json.loads((b / "config.json").read_text())
    edit(doc)
    (b / "config.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        load_bundle(b)


def test_garbage_manifest(tmp_path: Path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nope")


def test_export_leaves_the_model_in_eval_mode(tmp_path):
    """torch.onnx.export restores its module's training flag afterwards; the exported model must stay in eval mode
    (a model with dropout would otherwise forecast at random after its export)."""
    from models import create_model
    from models.export import export_onnx

    model = create_model("s4d", d_input=2, n_targets=1, horizon=2, d_model=8, n_layers=1, d_state=4, dropout=0.5)
    export_onnx(model, tmp_path / "step.onnx")
    assert not any(m.training for m in model.modules())
