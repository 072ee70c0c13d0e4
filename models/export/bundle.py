"""Writing model bundles (trainer side) and rebuilding a torch model from one.

The format and its validation live in service.runtime.bundle (the service reads bundles without
torch); this module produces exactly that layout. Weights go through safetensors, never pickle.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from contract.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST, sha256_file
from models.base import StreamingModel
from models.export.step_graph import ONNX_OPSET, export_onnx, export_torchscript, graph_io_names
from models.framing import is_framed
from models.registry import model_from_config


def identity_normalization(d_input: int, n_targets: int) -> dict[str, list[float]]:
    return {"kind": "zscore", "input_mean": [0.0] * d_input, "input_std": [1.0] * d_input,
            "target_mean": [0.0] * n_targets, "target_std": [1.0] * n_targets}


def write_bundle(
    model: StreamingModel,
    out_dir: str | Path,
    *,
    name: str,
    inputs: list[str],
    targets: list[str],
    period_ms: int,
    normalization: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    torchscript: bool = True,
) -> Path:
    """Write `model` as a bundle directory at `out_dir` (replaced atomically if it exists).

    inputs / targets: KPI names (len d_input / n_targets); normalization: z-score stats fitted on
    the training split (identity if None). Returns the bundle path.
    """
    cfg = model.config
    if len(inputs) != cfg.d_input or len(targets) != cfg.n_targets:
        raise ValueError(f"{len(inputs)} inputs / {len(targets)} targets named, model has "
                         f"d_input={cfg.d_input}, n_targets={cfg.n_targets}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model = model.export_form().float().eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        files: dict[str, dict[str, str]] = {}

        def add(role: str, rel: str, into: dict | None = None) -> None:
            target = files if into is None else into
            target[role if into is None else "onnx"] = {"path": rel, "sha256": sha256_file(tmp / rel)}

        state_dict = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state_dict, str(tmp / "weights.safetensors"), metadata={"model": model.name})
        add("weights", "weights.safetensors")
        export_onnx(model, tmp / "step.onnx")
        add("onnx", "step.onnx")
        if torchscript:
            export_torchscript(model, tmp / "step.ts")
            add("torchscript", "step.ts")
        g_in, g_out = graph_io_names(model)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "name": name,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": model.name,
            "config": cfg.to_dict(),
            "inputs": list(inputs),
            "targets": list(targets),
            "horizon": cfg.horizon,
            "period_ms": int(period_ms),
            "normalization": normalization or identity_normalization(cfg.d_input, cfg.n_targets),
            "state": [{"name": f.name, "shape": list(f.shape)} for f in model.state_spec()],
            "graph": {"inputs": g_in, "outputs": g_out, "opset": ONNX_OPSET},
            "files": files,
            "data": data or {},
            "metrics": metrics or {},
            "model_info": model.describe(),
        }
        if model.name == "ms3m" and not is_framed(cfg):  # one step graph per expert plus the gate (expert-level
            # serving); a framed MS³M is served through its whole step graph
            from models.export.ms3m_graphs import export_ms3m_graphs

            manifest.update(export_ms3m_graphs(model, tmp, add))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_bundle_model(root: str | Path) -> tuple[StreamingModel, dict[str, Any]]:
    """Rebuild the torch model of a bundle (eval mode, float32) and return it with its manifest."""
    root = Path(root)
    manifest = json.loads((root / MANIFEST).read_text())
    model = model_from_config(manifest["model"], manifest["config"])
    weights = load_file(str(root / manifest["files"]["weights"]["path"]))
    model.load_state_dict(weights, strict=True)
    return model.float().eval(), manifest


__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "identity_normalization", "load_bundle_model", "write_bundle"]
