"""`ms3m bench step`: per-sample cost of one recurrent step vs history length, for every model.

For each model, history length h and batch b, the state is first advanced over h real samples
(forward_with_state, so window models fill their caches), then `step` is timed on the chosen runtime:
onnxruntime (default: what the xApp serves; parameter-only work such as discretization is folded into
constants at export), TorchScript (frozen trace) or torch eager. Window models get
window = h (the Transformer's KV cache, DLinear's lookback): their step cost grows with h, the SSMs'
does not. The two Transformer references are measured in the same run:

- full window: recompute `forward` over the last h samples for every new sample (no cache);
- KV cache: the Transformer's own `step` with a window of h.

Full-window recomputation is compute-bound and linear in the batch, so at large h it is measured at
a smaller batch (reported as `full_window_batch`) and expressed per sample; so is the step of a model that
attends over patches of its window (PatchTST) when its attention scores would not fit in memory
(`measured_batch`).
Rounds interleave the histories so that machine noise affects them alike; the median round is kept.

MS³M on onnxruntime is timed on the xApp's own path (`ms3m_serving_seconds`): its bundle's fused graph
(scale-1 experts + gate) and slower experts' graphs through MS3MStepper, with the ExpertRouter on, the cells
under the default balanced objective; its rows also give the mean active experts per cell and the same steps
through per-expert graphs only (`per_expert_graphs_us_per_sample`), the comparison the fused graph must win.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from models.registry import create_model, list_models, model_class

D_INPUT, N_TARGETS, HORIZON = 8, 1, 8
WINDOW_FIELDS = ("window",)  # config fields that set a window model's history
FULL_WINDOW_TOKENS = 1 << 16  # cap on batch × history for one full-window forward
ATTENTION_SCORES_CAP = 1 << 26  # cap on the attention scores of one timed step (measured_batch)


def _time_call(fn: Callable[[], Any], min_seconds: float, min_calls: int = 3, max_calls: int = 2000) -> float:
    """Seconds per call of fn (after one warm-up call), timing at least min_calls and min_seconds."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if (calls >= min_calls and elapsed >= min_seconds) or calls >= max_calls:
            return elapsed / calls


def build(name: str, history: int, **overrides: Any):
    """The model `name` at its default size for d_input=8, horizon=8; window models get window=history."""
    fields = {f for f in model_class(name).Config.__dataclass_fields__}
    cfg = dict(overrides)
    for f in WINDOW_FIELDS:
        if f in fields:
            cfg[f] = history
    if "target_index" in fields:
        cfg.setdefault("target_index", (0,))
    torch.manual_seed(0)
    return create_model(name, d_input=D_INPUT, n_targets=N_TARGETS, horizon=HORIZON, **cfg).eval()


def warm_state(model, history: int, batch: int):
    """State after `history` samples of a random stream, for `batch` cells (one warmed cell, tiled)."""
    with torch.inference_mode():
        x = torch.randn(1, history, D_INPUT)
        _, state = model.forward_with_state(x)
        return tuple(s.expand(batch, *s.shape[1:]).contiguous() for s in state)


def step_fn(model, runtime: str, threads: int | None, workdir: Path) -> Callable:
    """A callable (x, state) → (y, state) running `model.step` on `runtime` (numpy for onnxruntime)."""
    if runtime == "torch":
        def run(x, state):
            with torch.inference_mode():
                return model.step(x, state)
        return run
    if runtime == "torchscript":
        from models.export import export_torchscript

        module = torch.jit.load(str(export_torchscript(model, workdir / f"{model.name}.ts")))

        def run_ts(x, state):
            with torch.inference_mode():
                out = module(x, *state)
            return out[0], tuple(out[1:])
        return run_ts
    if runtime == "onnxruntime":
        import onnxruntime as ort

        from models.export import export_onnx

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(export_onnx(model, workdir / f"{model.name}.onnx")), so,
                                    providers=["CPUExecutionProvider"])
        taken = {i.name for i in sess.get_inputs()}  # the exporter drops state inputs a graph never reads
        names = [(i, f"state_{f.name}") for i, f in enumerate(model.state_spec()) if f"state_{f.name}" in taken]

        def run_ort(x, state):
            out = sess.run(None, {"x": x, **{n: state[i] for i, n in names}})
            return out[0], out[1:]
        return run_ort
    raise ValueError(f"unknown runtime {runtime!r}")


def ms3m_serving_seconds(model, history: int, batch: int, min_seconds: float, threads: int | None,
                         workdir: Path, decision_period: int = 60) -> tuple[float, float, float]:
    """MS³M on the xApp's path: its bundle's graphs (MS3MStepper: the fused graph of the scale-1 experts and
    the gate, the slower experts' graphs when due), with the experts the ExpertRouter keeps active under the
    cells' default objective (balanced, budget 1) after it has settled on a stream (3 decision periods through
    ModelHost.step, not timed). Returns (seconds per step, the same with per-expert graphs only, mean active
    experts per cell); like the other models' rows, the host's bookkeeping (intervals, forecasts) is not timed."""
    import numpy as np

    from models.export import write_bundle
    from service.engine.host import ModelHost
    from service.router.router import ExpertRouter
    from service.runtime import load_bundle

    kpis = [f"k{i}" for i in range(D_INPUT)]
    path = workdir / f"ms3m-h{history}"
    if not (path / "config.json").is_file():
        write_bundle(model, path, name="ms3m-bench", inputs=kpis, targets=kpis[:N_TARGETS], period_ms=1000)
    host = ModelHost(load_bundle(path), kpis, threads=threads)
    router = ExpertRouter(host, decision_period)
    slots, _ = host.slots([f"c{i}" for i in range(batch)], 0)
    state = [s.numpy() for s in warm_state(model, history, batch)]
    for i, st in enumerate(state):
        host.table.arrays[i][slots] = st
    rng = np.random.default_rng(0)
    window = rng.standard_normal((256, batch, D_INPUT)).astype(np.float32)
    for i in range(3 * decision_period):  # the router settles: decisions and warm-ups on a stream
        res = host.step(slots, window[i % len(window)], np.full(batch, 1 + i))
        for slot, e in router.decide(due) if len(due := router.observe(res)) else []:
            host.warm(np.array([slot]), e, [window[:, int(np.searchsorted(slots, slot))]])
    active, objective = host.active[slots].copy(), host.objective[slots].copy()
    x, holder = window[0], [state]
    stepper = host.stepper

    def one():
        _, holder[0], _ = stepper.run(x, holder[0], objective, active)

    fused = _time_call(one, min_seconds)
    stepper.use_fused = False  # the same steps through the per-expert graphs and the gate only
    per_expert = _time_call(one, min_seconds)
    stepper.use_fused = True
    return fused, per_expert, float(active.sum(1).mean())


def measured_batch(model, batch: int) -> int:
    """The batch a step is timed at: `batch`, except for models attending over patches of their window
    (PatchTST), whose attention scores (cells × heads × patches²) would not fit in memory at large windows
    and batches; their step is linear in the batch, so it is timed on fewer cells and reported per sample
    (the row's measured_batch)."""
    c = model.config
    if not hasattr(c, "patch_len"):
        return batch
    patches = c.window // c.stride + 1
    per_cell = patches * patches * getattr(c, "n_heads", 1) * c.n_targets
    return max(1, min(batch, ATTENTION_SCORES_CAP // per_cell))


def step_seconds(model, history: int, batch: int, min_seconds: float, runtime: str = "torch",
                 threads: int | None = 1, workdir: Path | None = None) -> float:
    state = warm_state(model, history, batch)
    x = torch.randn(batch, D_INPUT)
    if runtime == "onnxruntime":
        state, x = [s.numpy() for s in state], x.numpy()
    run = step_fn(model, runtime, threads, workdir or Path(tempfile.mkdtemp()))
    holder = [state]

    def one():
        _, holder[0] = run(x, holder[0])

    return _time_call(one, min_seconds)


def full_window_seconds_per_sample(model, history: int, batch: int, min_seconds: float) -> tuple[float, int]:
    b = max(1, min(batch, FULL_WINDOW_TOKENS // history))
    x = torch.randn(b, history, D_INPUT)

    def one():
        with torch.inference_mode():
            model(x)

    return _time_call(one, min_seconds, min_calls=2) / b, b


def run(
    models: Sequence[str] | None = None,
    histories: Sequence[int] = (256, 1024, 4096),
    batches: Sequence[int] = (1, 1024),
    rounds: int = 3,
    min_seconds: float = 0.2,
    threads: int | None = 1,
    runtime: str = "onnxruntime",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure and return {"rows": [...], "summary": {...}, "settings": {...}} (see module docstring)."""
    if threads:
        torch.set_num_threads(threads)
    names = list(models) if models else list_models()
    unknown = set(names) - set(list_models())
    if unknown:
        raise KeyError(f"unknown model(s) {sorted(unknown)}; known: {list_models()}")
    say = progress or (lambda s: None)
    workdir = Path(tempfile.mkdtemp(prefix="ms3m-bench-step-"))
    # per (name, history, batch): list of per-round us/sample
    samples: dict[tuple[str, int, int], list[float]] = {}
    full: dict[tuple[int, int], list[float]] = {}
    full_batch: dict[tuple[int, int], int] = {}
    state_bytes: dict[tuple[str, int], int] = {}
    measured: dict[tuple[str, int, int], int] = {}  # batch a step was timed at (measured_batch)
    serving: dict[tuple[int, int], list[float]] = {}  # MS³M: mean active experts per cell, per round
    per_expert: dict[tuple[int, int], list[float]] = {}  # MS³M: us/sample without the fused graph, per round
    for r in range(rounds):
        for name in [*names, "transformer:full_window"]:
            for h in histories:
                for b in batches:
                    if name == "transformer:full_window":
                        say(f"round {r + 1}/{rounds}: transformer full window h={h} b={b}")
                        sec, fb = full_window_seconds_per_sample(build("transformer", h), h, b, min_seconds)
                        full.setdefault((h, b), []).append(sec * 1e6)
                        full_batch[(h, b)] = fb
                        continue
                    say(f"round {r + 1}/{rounds}: {name} h={h} b={b}")
                    model = build(name, h)
                    state_bytes[(name, h)] = model.state_bytes_per_cell()
                    if name == "ms3m" and runtime == "onnxruntime":  # what the xApp runs: experts + gate + router
                        sec, unfused, act = ms3m_serving_seconds(model, h, b, min_seconds, threads, workdir)
                        serving.setdefault((h, b), []).append(act)
                        per_expert.setdefault((h, b), []).append(unfused / b * 1e6)
                    else:
                        mb = measured_batch(model, b)
                        measured[(name, h, b)] = mb
                        sec = step_seconds(model, h, mb, min_seconds, runtime, threads, workdir) * b / mb
                    samples.setdefault((name, h, b), []).append(sec / b * 1e6)
    rows = []
    kv = {(h, b): statistics.median(samples[("transformer", h, b)]) for h in histories for b in batches
          if ("transformer", h, b) in samples}
    if not kv:  # transformer not among the models: measure its KV-cache step as the reference anyway
        for h in histories:
            for b in batches:
                kv[(h, b)] = statistics.median(
                    step_seconds(build("transformer", h), h, b, min_seconds, runtime, threads, workdir) / b * 1e6
                    for _ in range(rounds))
    for name in names:
        for h in histories:
            for b in batches:
                us = statistics.median(samples[(name, h, b)])
                fw = statistics.median(full[(h, b)])
                rows.append({
                    "model": name, "history": h, "batch": b, "us_per_sample": round(us, 3),
                    "ratio_vs_full_window": round(fw / us, 1), "ratio_vs_kv_cache": round(kv[(h, b)] / us, 2),
                    "state_bytes_per_cell": state_bytes[(name, h)],
                    "full_window_us_per_sample": round(fw, 2), "full_window_batch": full_batch[(h, b)],
                    "kv_cache_us_per_sample": round(kv[(h, b)], 3),
                })
                if measured.get((name, h, b), b) != b:
                    rows[-1]["measured_batch"] = measured[(name, h, b)]
                if name == "ms3m" and (h, b) in serving:
                    rows[-1]["path"] = "serving: fused graph + slower experts when due, router on (balanced)"
                    rows[-1]["active_experts"] = round(statistics.median(serving[(h, b)]), 2)
                    rows[-1]["per_expert_graphs_us_per_sample"] = round(statistics.median(per_expert[(h, b)]), 3)
    summary = {}
    h_lo, h_hi = min(histories), max(histories)
    for name in names:
        for b in batches:
            lo = next(r["us_per_sample"] for r in rows if (r["model"], r["history"], r["batch"]) == (name, h_lo, b))
            hi = next(r["us_per_sample"] for r in rows if (r["model"], r["history"], r["batch"]) == (name, h_hi, b))
            summary[f"{name}@b{b}:cost_{h_hi}_over_{h_lo}"] = round(hi / lo, 3)
    return {
        "benchmark": "step",
        "settings": {"histories": list(histories), "batches": list(batches), "rounds": rounds,
                     "threads": torch.get_num_threads(), "runtime": runtime, "full_window_runtime": "torch",
                     "d_input": D_INPUT, "horizon": HORIZON,
                     "torch": torch.__version__},
        "columns": ["model", "history", "batch", "us_per_sample", "ratio_vs_full_window", "ratio_vs_kv_cache",
                    "state_bytes_per_cell", "active_experts", "per_expert_graphs_us_per_sample"],
        "rows": rows,
        "summary": summary,
    }
