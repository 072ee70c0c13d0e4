"""`ms3m bench controllability`: does one MS³M serve every objective, and does the objective steer compute?

1. Trains MS³M (default experts: kinds × scales 1/4/16) on the synthetic multi-cell KPIs with regime
   changes, objectives sampled per sequence; and, under the same budget, each of its experts alone
   (an MS³M with that single expert: same pooling, held features and head).
2. Serves the held-out cells through the real serving path — ModelHost with the expert-level ONNX
   stepper and the ExpertRouter, experts warmed from each cell's recent window when activated — once
   per objective (contract.objectives.OBJECTIVES, budget 1), and each single expert once.
3. Reports, per run: MSE (normalized, all horizons, positions after burn-in), the measured compute per
   step (µs per cell spent in expert graphs) and the mean relative cost of the active expert sets.
   Targets: energy vs accuracy cuts measured compute ≥ 2× with MSE up ≤ 15 %; MS³M at the accuracy
   objective beats every single expert on MSE.
4. Writes gate_weights.png: the gate weights of one test cell over time under the accuracy, balanced and
   energy objectives, with its regime changes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contract.objectives import OBJECTIVES


def _train(config, out: Path, log) -> Path:
    from models.training.trainer import Trainer

    trainer = Trainer(config, out, progress=False, log=log)
    trainer.fit(resume=True)
    return trainer.write_bundle(out / "bundle")


def serve_stream(bundle: Path, X: np.ndarray, objective: str | None, budget: float = 1.0,
                 decision_period: int = 60, window: int = 2048, burn_in: int = 64) -> dict[str, Any]:
    """Serve raw KPI streams X (C, T, D in the bundle's input order) through ModelHost (+ ExpertRouter for
    MS³M); returns errors, measured expert compute and the gate weights over time."""
    from contract.objectives import objective_array
    from service.engine.host import ModelHost
    from service.router.router import ExpertRouter
    from service.runtime import load_bundle

    b = load_bundle(bundle)
    m = b.manifest
    host = ModelHost(b, list(m.inputs))
    C, T, _ = X.shape
    cells = [f"cell{i}" for i in range(C)]
    slots, _ = host.slots(cells, 0)
    router = None
    if host.is_ms3m and objective is not None:
        host.objective[slots] = objective_array(objective, budget, C)
        router = ExpertRouter(host, decision_period)
    H, K = m.horizon, len(m.targets)
    tcols = [m.inputs.index(t) for t in m.targets]
    preds = np.full((C, T, H, K), np.nan, np.float32)
    gates = np.full((C, T, len(host.expert_names)), np.nan, np.float32) if host.is_ms3m else None
    expert_s, step_s, active_cost = 0.0, 0.0, []
    for t in range(T):
        t0 = time.perf_counter()
        res = host.step(slots, X[:, t], np.full(C, t + 1, np.int64))
        step_s += time.perf_counter() - t0
        preds[:, t] = res.point
        if res.expert_seconds is not None:
            expert_s += float(res.expert_seconds.sum())
            gates[:, t] = res.gate
        if router is not None:
            active_cost.append(float((host.active[slots] * router.costs).sum(1).mean()))
            due = router.observe(res)
            warm: dict[int, list[int]] = {}
            for slot, e in router.decide(due):
                warm.setdefault(e, []).append(slot)
            for e, ss in warm.items():  # warm from each cell's recent window (what the service reads from its buffer)
                idx = [int(np.flatnonzero(slots == s)[0]) for s in ss]
                host.warm(np.array(ss), e, [X[i, max(0, t + 1 - window): t + 1] for i in idx])
    # errors on the normalized scale: forecast at t for t+h vs the realized value
    std = host.t_std
    truth = X[:, :, tcols]  # (C, T, K)
    err = []
    for h in range(H):
        p = preds[:, burn_in : T - h - 1, h]
        y = truth[:, burn_in + h + 1 : T]
        err.append(((p - y) / std) ** 2)
    mse = float(np.nanmean(np.concatenate([e.reshape(-1) for e in err])))
    out = {"mse": mse, "expert_us_per_cell_step": expert_s / (C * T) * 1e6 if host.is_ms3m else None,
           "step_us_per_cell": step_s / (C * T) * 1e6,
           "relative_cost": float(np.mean(active_cost)) if active_cost else (1.0 if host.is_ms3m else None),
           "gates": gates}
    return out


def plot_gates(path: Path, gates: dict[str, np.ndarray], names: list[str], kpi: np.ndarray,
               regimes: np.ndarray | None, title: str) -> None:
    """The KPI, then one stacked gate-weight panel per objective ({objective: (T, E)}), regime changes in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(kpi)
    fig, axes = plt.subplots(1 + len(gates), 1, figsize=(11, 2.2 + 1.9 * len(gates)), sharex=True,
                             gridspec_kw={"height_ratios": [1] + [1.1] * len(gates)})
    axes[0].plot(np.arange(T), kpi, "k", lw=0.7)
    axes[0].set_ylabel("DL throughput\n(kbit/s)")
    for ax, (objective, g) in zip(axes[1:], gates.items()):
        ax.stackplot(np.arange(T), np.nan_to_num(g.T), labels=names, alpha=0.85)
        ax.set_ylabel(f"gate weight\n{objective}")
        ax.set_ylim(0, 1)
    axes[-1].set_xlabel("sample")
    if regimes is not None:
        for t in np.flatnonzero(np.diff(regimes) != 0) + 1:
            for ax in axes:
                ax.axvline(t, color="r", ls="--", lw=0.8)
    axes[1].legend(loc="upper right", fontsize=7, ncol=3)
    axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(steps: int = 600, cells: int = 32, days: int = 4, out: str | Path = "reports/controllability",
        seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from models.ms3m import DEFAULT_EXPERTS
    from models.training.data.prepare import prepare_data
    from models.training.trainer import TrainConfig

    say = progress or (lambda s: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = TrainConfig(model="ms3m", data="synthetic", targets=["DRB.UEThpDl"], horizon=8, window=128,
                       batch_size=16, max_steps=steps, eval_every=max(50, steps // 8), warmup_steps=50,
                       patience=100, seed=seed, threads=1,
                       data_options={"n_cells": cells, "length": days * 1440, "seed": seed})
    say(f"training MS³M ({len(DEFAULT_EXPERTS)} experts, {steps} steps)")
    bundles = {"ms3m": _train(base, out / "runs" / "ms3m", say)}
    for spec in DEFAULT_EXPERTS:
        name = f"{spec['kind']}@{spec['scale']}"
        say(f"training single expert {name} ({steps} steps)")
        cfg = dataclasses.replace(base, model_config={"experts": [spec]})
        bundles[name] = _train(cfg, out / "runs" / name.replace("@", "_"), say)
    data = prepare_data(base)
    test = data.test
    kpis = data.input_names
    raw = [data.scaler.invert(s.values) for s in test.series]
    T = min(len(r) for r in raw)
    X = np.stack([r[:T, [test.kpis.index(k) for k in kpis]] for r in raw]).astype(np.float32)
    rows, served = [], {}
    for obj in OBJECTIVES:
        say(f"serving MS³M, objective {obj}")
        r = serve_stream(bundles["ms3m"], X, obj)
        served[obj] = r
        rows.append({"model": "ms3m", "objective": obj, "mse": round(r["mse"], 5),
                     "expert_us_per_cell_step": round(r["expert_us_per_cell_step"], 2),
                     "relative_cost": round(r["relative_cost"], 3)})
    for spec in DEFAULT_EXPERTS:
        name = f"{spec['kind']}@{spec['scale']}"
        say(f"serving single expert {name}")
        r = serve_stream(bundles[name], X, None)
        rows.append({"model": name, "objective": "-", "mse": round(r["mse"], 5),
                     "expert_us_per_cell_step": round(r["expert_us_per_cell_step"], 2), "relative_cost": None})
    acc, energy = served["accuracy"], served["energy"]
    singles = [r for r in rows if r["model"] != "ms3m"]
    best_single = min(singles, key=lambda r: r["mse"])
    summary = {
        "compute_cut_energy_vs_accuracy": round(acc["expert_us_per_cell_step"] /
                                                max(energy["expert_us_per_cell_step"], 1e-9), 2),
        "mse_rise_energy_vs_accuracy": round(energy["mse"] / acc["mse"] - 1, 4),
        "ms3m_accuracy_mse": round(acc["mse"], 5),
        "best_single_expert": best_single["model"], "best_single_expert_mse": best_single["mse"],
        "ms3m_beats_every_single_expert": bool(acc["mse"] < best_single["mse"]),
    }
    # the gate weights of one test cell over time, with its regime changes
    cell = int(np.argmax([len(np.unique(s.labels.get("regime", [0]))) for s in test.series]))
    regimes = test.series[cell].labels.get("regime")
    m_names = [f"{e['kind']}@{e['scale']}" for e in DEFAULT_EXPERTS]
    plot_gates(out / "gate_weights.png", {o: served[o]["gates"][cell] for o in ("accuracy", "balanced", "energy")},
               m_names, X[cell, :, kpis.index("DRB.UEThpDl")], regimes[:T] if regimes is not None else None,
               f"MS³M gate weights per objective, test series {test.series[cell].name}; red: regime changes")
    result = {"benchmark": "controllability", "columns": ["model", "objective", "mse", "expert_us_per_cell_step",
                                                          "relative_cost"],
              "rows": rows, "summary": summary,
              "settings": {"steps": steps, "cells": cells, "days": days, "seed": seed, "test_series": len(test),
                           "test_steps": T, "png": str(out / "gate_weights.png")}}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result
