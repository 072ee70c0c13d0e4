"""The first per-expert MS³M serving path (every state tensor copied and written back each step), kept as the
reference the optimized `MS3MStepper.run` must reproduce."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract.objectives import objective_array
from service.runtime.ms3m_stepper import MS3MStepper


def reference_run(stepper: MS3MStepper, x: np.ndarray, state: Sequence[np.ndarray], objective: np.ndarray | None = None,
                  active: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """x (B, D), state (flat), objective (B, 5), active (B, E) → y (B, H, K), new state, gate (B, E). Never
    writes into `state`."""
    B = x.shape[0]
    if objective is None:
        objective = objective_array("balanced", 1.0, B)
    if active is None:
        active = np.ones((B, stepper.n_experts), bool)
    new_state: list[np.ndarray] = [state[0]]
    feats, phases = [], []
    for rt, s, sl in zip(stepper.experts, stepper.scales, stepper.slices):
        phase, acc, feat, *net = state[sl]
        act = active[:, len(feats)]
        acc_new = acc + x
        phase_new = phase + 1
        ready = (phase_new[:, 0] >= s - 0.5) if s > 1 else np.ones(B, bool)
        run = np.flatnonzero(act & ready)
        feat_out, net_out = feat.copy(), [n.copy() for n in net]
        if run.size:
            f, new_net = rt.run(np.ascontiguousarray(acc_new[run] / s, dtype=np.float32), [n[run] for n in net])
            feat_out[run] = f
            for dst, src in zip(net_out, new_net):
                dst[run] = src
        reset = (act & ready)[:, None]
        acc_out = np.where(act[:, None], np.where(reset, 0, acc_new), acc).astype(np.float32)
        phase_out = np.where(act[:, None], np.where(reset, 0, phase_new), phase).astype(np.float32)
        new_state += [phase_out, acc_out, feat_out, *net_out]
        feats.append(feat_out)
        phases.append(phase_out[:, 0])
    y, w, _, ema, _ = stepper._gate.run(None, {
        "x": x, "ema": state[0], "features": np.stack(feats), "phases": np.stack(phases, 1),
        "objective": objective.astype(np.float32), "active": active.astype(np.float32)})
    new_state[0] = ema
    return y, new_state, w
