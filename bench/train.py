"""`ms3m bench train`: training throughput and peak memory vs sequence length, SSMs vs the Transformer.

Each (model, sequence length) runs in its own process: a few warm-up steps, then timed AdamW steps
(forward + backward + update) on random data of shape (batch, L, 8) with targets at every position.
Throughput is in samples (time steps) per second; peak memory is the process's peak resident set
above its resident set after building the model and the data (so it is what training itself needs).
The Transformer attends over the whole sequence (window = L), as a Transformer trained on L does.

Window models (models.baselines.window.WindowModel: PatchTST, iTransformer, Informer, FEDformer, TFT, ETSformer,
Crossformer) train as their papers do, on the forecast at the last position of
windows of L samples (`training_forward(last_only=True)`): one forecast per window, where a sequence model learns
from a forecast at every position of its L samples. `forecasts_per_s` counts the forecasts trained on per second
for every model, and the ratios to the Transformer are taken on it, so the comparison is per forecast learned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

MODELS = ("s4d", "s5", "lru", "mamba", "ms3m", "transformer", "patchtst", "itransformer", "informer", "fedformer",
          "tft", "etsformer", "crossformer")
D_INPUT, HORIZON = 8, 8


def measure(name: str, length: int, batch: int, steps: int, threads: int) -> dict[str, Any]:
    """In this process: samples/s and peak RSS increase (MB) of training `name` on sequences of `length`."""
    import resource
    import time

    import torch

    from models.baselines.window import WindowModel
    from models.registry import create_model, model_class
    from models.training.trainer import training_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg: dict[str, Any] = {"target_index": (0,)}
    if "window" in model_class(name).Config.__dataclass_fields__:
        cfg["window"] = length
    model = create_model(name, d_input=D_INPUT, n_targets=1, horizon=HORIZON, **cfg)
    last_only = isinstance(model, WindowModel)  # a window model: one forecast per window of L samples
    opt = torch.optim.AdamW(model.param_groups(1e-3, 0.01))
    x = torch.randn(batch, length, D_INPUT)
    y = torch.randn(batch, 1 if last_only else length, HORIZON, 1)

    def step():
        pred, aux, _ = model.training_forward(x, last_only=last_only)
        loss = training_loss(pred, aux, y, torch.ones_like(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up (and optimizer state)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": name, "seq_len": length, "batch": batch, "samples_per_s": round(batch * length / dt),
            "forecasts_per_s": round(batch * (1 if last_only else length) / dt),
            "trained_on": "last position of each window" if last_only else "every position",
            "step_ms": round(dt * 1e3, 1), "peak_mb": round((peak_kb - base_kb) / 1024, 1),
            "parameters": sum(p.numel() for p in model.parameters())}


def run(models: Sequence[str] = MODELS, lengths: Sequence[int] = (256, 1024, 4096), batch: int = 8,
        steps: int = 3, threads: int = 1, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = progress or (lambda s: None)
    rows = []
    for name in models:
        for L in lengths:
            say(f"{name}: L={L}")
            code = ("import json, sys; from bench.train import measure; "
                    f"print(json.dumps(measure({name!r}, {L}, {batch}, {steps}, {threads})))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800,
                                 env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
            if out.returncode != 0:
                rows.append({"model": name, "seq_len": L, "batch": batch, "error": out.stderr.strip()[-300:]})
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = {r["seq_len"]: r for r in rows if r["model"] == "transformer" and "error" not in r}
    for r in rows:
        t = ref.get(r["seq_len"])
        if t and "error" not in r:
            r["speed_vs_transformer"] = round(r["forecasts_per_s"] / t["forecasts_per_s"], 2)
            r["memory_vs_transformer"] = round(r["peak_mb"] / max(t["peak_mb"], 1e-3), 2)
    summary = {}
    lo, hi = min(lengths), max(lengths)
    for name in models:
        a = next((r for r in rows if r["model"] == name and r["seq_len"] == lo and "error" not in r), None)
        b = next((r for r in rows if r["model"] == name and r["seq_len"] == hi and "error" not in r), None)
        if a and b:
            summary[f"{name}: forecasts/s at {hi} over {lo}"] = round(b["forecasts_per_s"] / a["forecasts_per_s"], 2)
            summary[f"{name}: peak MB at {hi} over {lo}"] = round(b["peak_mb"] / max(a["peak_mb"], 1e-3), 1)
    columns = ["model", "seq_len", "batch", "samples_per_s", "forecasts_per_s", "step_ms", "peak_mb",
               "speed_vs_transformer", "memory_vs_transformer"]
    return {"benchmark": "train", "columns": columns,
            "rows": rows, "summary": summary,
            "settings": {"batch": batch, "steps": steps, "threads": threads, "d_input": D_INPUT,
                         "horizon": HORIZON, "model_sizes": "registry defaults"}}
