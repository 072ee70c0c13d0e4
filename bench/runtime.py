"""`ms3m bench runtime`: one batched step on onnxruntime vs TorchScript vs torch eager, side by side.

For each model (default: S4D, Mamba, LRU, MS³M at their registry defaults, d_input 8, horizon 8, two
targets — the shape of a KPI bundle), a bundle is written and its step timed on every runtime at
batch 1, 64 and 1024, rounds interleaved, median kept. Also measured in the same run:

- `cells_1000`: one batched step for 1,000 cells of the default S4D bundle (target ≤ 1 ms);
- the onnxruntime session options for this workload: intra-op threads 1 / 2 × spinning on / off,
  at batch 1 and 1,000 (the service's defaults are the fastest combination for the engine's single
  inference thread that leaves a core for I/O; see service.runtime.backends.ort_session_options).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.registry import create_model

D_INPUT, HORIZON, TARGETS = 8, 8, 2
DEFAULT_MODELS = ("s4d", "mamba", "lru", "ms3m")


def _bundle(name: str, root: Path) -> Path:
    from models.export import write_bundle

    torch.manual_seed(0)
    model = create_model(name, d_input=D_INPUT, n_targets=TARGETS, horizon=HORIZON, target_index=(0, 1))
    return write_bundle(model, root / name, name=f"{name}-bench", inputs=[f"k{i}" for i in range(D_INPUT)],
                        targets=["k0", "k1"], period_ms=1000)


def _timer(run: Callable[[], Any], min_seconds: float) -> float:
    for _ in range(5):  # warm-up (TorchScript's profiling executor optimizes after a few calls)
        run()
    n, start = 0, time.perf_counter()
    while True:
        run()
        n += 1
        if (time.perf_counter() - start >= min_seconds and n >= 5) or n >= 20_000:
            return (time.perf_counter() - start) / n


def _stepper(bundle_dir: Path, kind: str, batch: int, threads: int = 1, spinning: bool = False):
    """A zero-argument callable running one step for `batch` cells, with its state carried."""
    from service.runtime import create_runtime, load_bundle
    from service.runtime.backends import OnnxStepRuntime

    b = load_bundle(bundle_dir)
    if kind == "onnxruntime":
        rt = OnnxStepRuntime(b.path("onnx"), threads, spinning)
    else:
        torch.set_num_threads(threads)
        rt = create_runtime(b, kind, threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, D_INPUT)).astype(np.float32)
    state = [np.zeros((batch, *s.shape), np.float32) for s in b.manifest.state]
    holder = [state]

    def one():
        _, holder[0] = rt.run(x, holder[0])

    return one


def run(models: Sequence[str] = DEFAULT_MODELS, batches: Sequence[int] = (1, 64, 1024),
        runtimes: Sequence[str] = ("onnxruntime", "torchscript", "torch"), rounds: int = 3,
        min_seconds: float = 0.2, threads: int = 1, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = progress or (lambda s: None)
    root = Path(tempfile.mkdtemp(prefix="ms3m-bench-runtime-"))
    bundles = {}
    for name in models:
        say(f"exporting {name}")
        bundles[name] = _bundle(name, root)
    times: dict[tuple, list[float]] = {}
    for r in range(rounds):
        for name in models:
            for kind in runtimes:
                for b in batches:
                    say(f"round {r + 1}/{rounds}: {name} {kind} batch {b}")
                    times.setdefault((name, kind, b), []).append(
                        _timer(_stepper(bundles[name], kind, b, threads), min_seconds))
    rows = []
    for name in models:
        for b in batches:
            eager = statistics.median(times[(name, "torch", b)]) if "torch" in runtimes else None
            for kind in runtimes:
                t = statistics.median(times[(name, kind, b)])
                rows.append({"model": name, "runtime": kind, "batch": b, "us_per_step": round(t * 1e6, 1),
                             "us_per_cell": round(t * 1e6 / b, 3),
                             "speedup_vs_eager": round(eager / t, 2) if eager else None})
    # one batched step for 1,000 cells of the default S4D bundle, and the session options behind the defaults
    s4d = bundles.get("s4d") or _bundle("s4d", root)
    options = []
    for th in (1, 2):
        for spin in (False, True):
            for b in (1, 1000):
                say(f"onnxruntime options: threads {th} spinning {spin} batch {b}")
                t = statistics.median(_timer(_stepper(s4d, "onnxruntime", b, th, spin), min_seconds)
                                      for _ in range(rounds))
                options.append({"threads": th, "spinning": spin, "batch": b, "us_per_step": round(t * 1e6, 1)})
    cells_1000 = min(o["us_per_step"] for o in options if o["batch"] == 1000 and o["threads"] == 1
                     and not o["spinning"])
    cells_1000_best = min(o["us_per_step"] for o in options if o["batch"] == 1000)
    summary: dict[str, Any] = {"s4d_cells_1000_us (1 thread, no spin: service default)": cells_1000,
                               "s4d_cells_1000_us (best option)": cells_1000_best}
    for name in models:
        if ("torch" in runtimes) and ("onnxruntime" in runtimes):
            e = statistics.median(times[(name, "torch", 1)])
            o = statistics.median(times[(name, "onnxruntime", 1)])
            summary[f"{name}: onnxruntime vs eager at batch 1"] = round(e / o, 2)
    from models.registry import model_class

    cfg = model_class("s4d").Config()
    return {"benchmark": "runtime", "columns": ["model", "runtime", "batch", "us_per_step", "us_per_cell",
                                                "speedup_vs_eager"],
            "rows": rows, "onnxruntime_options": options, "summary": summary,
            "settings": {"rounds": rounds, "threads": threads, "d_input": D_INPUT, "horizon": HORIZON,
                         "targets": TARGETS, "s4d_default": {"d_model": cfg.d_model, "n_layers": cfg.n_layers,
                                                             "d_state": cfg.d_state},
                         "torch": torch.__version__}}
