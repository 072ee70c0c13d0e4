"""`ms3m eval ablation`: one model trained once per value of one of its hyperparameters, same data, budget and seed.

Per value: validation and test error (the dataset's protocol: `ett` and `irish5g` use their presets' recipe, any
other dataset the TrainConfig defaults), parameters, state bytes per cell, and the cost of one exported step
(onnxruntime, one thread: what the xApp serves) at batch 1 and 1,000, in µs per step. Writes `ablation.json`, a
Markdown table and `ablation.png` (error and state size against the value) under the report folder.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.training import compare as cmp
from models.training.trainer import TrainConfig

STEP_BATCHES = (1, 1000)


def parse_values(text: str) -> list[Any]:
    """"0.1,0.25,1" → [0.1, 0.25, 1]; each value parsed as JSON when it can be ("gru" stays a string).
    Raises ValueError for an empty list."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(json.loads(part))
        except json.JSONDecodeError:
            values.append(part)
    if not values:
        raise ValueError(f"no values in {text!r}; give them as name=v1,v2,…")
    return values


def step_microseconds(model, batch: int, min_seconds: float = 0.3) -> float:
    """µs per exported step (onnxruntime, 1 thread) for `batch` cells, from the state after 64 random samples."""
    import torch

    from bench.step import _time_call, step_fn

    model = model.float().eval()
    d = model.config.d_input
    with torch.inference_mode():
        _, state = model.forward_with_state(torch.randn(1, 64, d))
    state = [s.expand(batch, *s.shape[1:]).contiguous().numpy() for s in state]
    x = torch.randn(batch, d).numpy()
    run = step_fn(model, "onnxruntime", 1, Path(tempfile.mkdtemp(prefix="ms3m-ablation-")))
    holder = [state]

    def one():
        _, holder[0] = run(x, holder[0])

    return _time_call(one, min_seconds) * 1e6


def base_config(data: str, horizon: int | None, steps: int | None,
                data_options: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, dict[str, Any]]]:
    """The protocol an ablation trains under: a preset's (ett, irish5g) or the defaults on any dataset."""
    if data in cmp.PRESETS:
        h = horizon or (96 if data == "ett" else 10)
        base, overrides = cmp.PRESETS[data](h, steps or (2640 if data == "ett" else 1500))
        return (dataclasses.replace(base, data_options=data_options) if data_options else base), overrides
    return TrainConfig(data=data, data_options=data_options or {}, horizon=horizon or 8, max_steps=steps or 1500), {}


def run_ablation(model: str, param: str, values: Sequence[Any], data: str, out: str | Path,
                 horizon: int | None = None, steps: int | None = None, seed: int = 0, time_steps: bool = True,
                 progress: bool = True, log: Callable[[str], None] = print, data_options: dict[str, Any] | None = None,
                 model_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `model` once per value of its config field `param` (other fields: the preset's, then `model_config`);
    returns {"rows": [...], ...} and writes the report. Raises KeyError for an unknown model and TypeError naming
    the valid fields for an unknown `param`."""
    from models.registry import config_fields

    fields = config_fields(model)
    if param not in fields:
        raise TypeError(f"{model} has no config field {param!r}; its fields: {sorted(fields)}")
    base, overrides = base_config(data, horizon, steps, data_options)
    base = dataclasses.replace(base, seed=seed)
    out = Path(out)
    rows = []
    for value in values:
        over = {k: dict(v) for k, v in overrides.items()}
        mine = over.setdefault(model, {})
        mine["model_config"] = {**mine.get("model_config", {}), **(model_config or {}), param: value}
        log(f"== {model} {param}={value}")
        summary = cmp.compare([model], base, over, out / f"{param}={value}", progress=progress, log=log, plots=False)
        res = summary["models"][model]
        row = {param: value, "val": res["val_mse"], "mse": res["test"]["mse"], "mae": res["test"]["mae"],
               "params": res["parameters"], "state_bytes_per_cell": res["state_bytes_per_cell"],
               "steps": res["steps"]}
        if res.get("model_info"):
            row["model_info"] = res["model_info"]
        if time_steps:  # the bundle's model: the trained weights in their export form (what the xApp serves)
            from models.export import load_bundle_model

            trained, _ = load_bundle_model(out / f"{param}={value}" / "runs" / model / "bundle")
            for b in STEP_BATCHES:
                row[f"us_per_step_b{b}"] = step_microseconds(trained, b)
        rows.append(row)
    result = {"model": model, "param": param, "data": data, "horizon": base.horizon, "val_metric": base.loss,
              "rows": rows}
    (out / "ablation.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "ablation.md").write_text(markdown(result))
    plot(result, out / "ablation.png")
    return result


def markdown(result: dict[str, Any]) -> str:
    p = result["param"]
    cols = [p, "val", "mse", "mae", "params", "state_bytes_per_cell",
            *(f"us_per_step_b{b}" for b in STEP_BATCHES if f"us_per_step_b{b}" in result["rows"][0])]
    lines = [f"# {result['model']}: ablation of {p} on {result['data']} (H = {result['horizon']})", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result["rows"]:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, rows = result["param"], result["rows"]
    numeric = all(isinstance(r[p], int | float) and not isinstance(r[p], bool) for r in rows)
    xs = [r[p] for r in rows] if numeric else list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [r["val"] for r in rows], "o-", label=f"validation {result['val_metric']}")
    ax.plot(xs, [r["mse"] for r in rows], "s-", label="test MSE")
    ax.set_xlabel(p)
    ax.set_ylabel("error (normalized)")
    if not numeric:
        ax.set_xticks(xs, [str(r[p]) for r in rows])
    ax2 = ax.twinx()
    ax2.plot(xs, np.array([r["state_bytes_per_cell"] for r in rows]) / 1024, "^--", color="gray",
             label="state KiB per cell")
    ax2.set_ylabel("state per cell (KiB)")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [*ax.get_legend_handles_labels()[1], *ax2.get_legend_handles_labels()[1]], fontsize=8)
    ax.set_title(f"{result['model']}: {p} on {result['data']} (H = {result['horizon']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
