"""A training run's bundle: `ms3m export RUN OUT` and the trainer's final export."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from models.base import StreamingModel
from models.export.bundle import write_bundle
from models.registry import create_model
from models.training.config import TrainConfig


def export_run(run_dir: str | Path, out: str | Path, model: StreamingModel | None = None) -> Path:
    """Write the bundle of a training run to `out`: `model` if given, else the run's best weights. Raises
    FileNotFoundError naming what is missing when `run_dir` is not a finished or checkpointed run."""
    run_dir = Path(run_dir)
    for need in ("train_config.json", "data.json"):
        if not (run_dir / need).is_file():
            raise FileNotFoundError(f"{run_dir} is not a training run: {need} is missing")
    cfg = TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text()))
    data = json.loads((run_dir / "data.json").read_text())
    if model is None:
        weights = run_dir / "best.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{run_dir}: best.safetensors is missing (the run has not validated yet)")
        model_cfg = dict(cfg.model_config)
        model_cfg.setdefault("target_index", [data["inputs"].index(t) for t in data["targets"]])
        model = create_model(cfg.model, d_input=len(data["inputs"]), n_targets=len(data["targets"]),
                             horizon=cfg.horizon, **model_cfg)
        model.load_state_dict(load_file(str(weights)))
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    name = f"{cfg.model}-{data['description'].get('name', cfg.data)}"
    return write_bundle(model, out, name=name, inputs=data["inputs"], targets=data["targets"],
                        period_ms=data["period_ms"], normalization=data["normalization"],
                        data=data["description"], metrics=result)
