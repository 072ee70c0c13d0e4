"""Expert-level MS³M serving on onnxruntime, without torch.

Runs an MS³M bundle the way the router wants it: per expert, only the cells where the expert is active
and due for an update (every `scale` samples) go through that expert's step graph; pooling (acc += x)
and holding are done here in numpy; then the gate graph combines the held features. Where the bundle has a
fused graph (the scale-1 experts and the gate in one graph) and all of its experts are active in every cell of
the step, that one call replaces theirs and the gate's. The state layout
is the monolithic model's (gate.ema, then per expert: phase, acc, feature, network state), so one state
table and one snapshot format serve both paths, and results equal `MS3M.step_detailed` (tested).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract.objectives import objective_array
from service.runtime.backends import OnnxStepRuntime
from service.runtime.bundle import Bundle
from service.runtime.rows import LazyRows, RowUpdate


@dataclass
class StepDetails:
    gate: np.ndarray  # (B, E) weights
    contributions: np.ndarray  # (B, E, H, K)
    logits: np.ndarray  # (B, E) gate preferences before top-k and masking
    expert_runs: np.ndarray  # (E,) cells each expert's graph ran for in this step
    expert_seconds: np.ndarray  # (E,) wall time spent in each expert's graph in this step (a fused call's time,
    # gate included, split evenly among its experts)
    changed: np.ndarray | None = None  # (n_state,) bool: state tensors this step changed
    fused: bool = False  # the step ran the fused graph (scale-1 experts + gate in one call)


def _stack(features: list[np.ndarray]) -> np.ndarray:
    """E arrays (B, F) → (E, B, F), the graphs' expert-major layout (one concatenate: np.stack costs several
    times more in Python at small batches)."""
    B, F = features[0].shape
    return np.concatenate(features).reshape(len(features), B, F)


class MS3MStepper:
    kind = "onnxruntime-experts"

    def __init__(self, bundle: Bundle, threads: int | None = None, use_fused: bool = True):
        """use_fused: run the bundle's fused graph where it applies (False: per-expert graphs and the gate
        only, the comparison `ms3m bench step` prints)."""
        m = bundle.manifest
        if not m.experts or m.gate is None:
            raise ValueError(f"bundle {bundle.root} is not an MS³M bundle with expert graphs")
        self.names = [e.name for e in m.experts]
        self.scales = [e.scale for e in m.experts]
        self.experts = [OnnxStepRuntime(bundle.expert_path(e.name), threads) for e in m.experts]
        import onnxruntime as ort

        from service.runtime.backends import ort_session_options

        self._gate = ort.InferenceSession(str(bundle.path("gate")), ort_session_options(threads),
                                          providers=["CPUExecutionProvider"])
        self.n_net = [len(e.state) for e in m.experts]
        self._manifest_experts = m.experts
        self._feature_dim = int(m.gate["d_feature"])
        # positions in the flat state tuple: [ema] + per expert [phase, acc, feature, net…]
        self.slices, i = [], 1
        for n in self.n_net:
            self.slices.append(slice(i, i + 3 + n))
            i += 3 + n
        self.n_state = i
        fused = m.gate.get("fused")
        self._fused, self.fused_experts = None, []
        if fused:
            self._fused = ort.InferenceSession(str(bundle.path("fused")), ort_session_options(threads),
                                               providers=["CPUExecutionProvider"])
            self.fused_experts = [int(e) for e in fused["experts"]]
            taken = {i.name for i in self._fused.get_inputs()}
            names = iter(fused["inputs"][6:])  # state_e<i>_<name>, in expert then state order
            # (position in the flat state, input name) of the fused experts' network states the graph reads
            self._fused_feed = [(pos, name) for e in self.fused_experts
                                for pos in range(self.slices[e].start + 3, self.slices[e].stop)
                                if (name := next(names)) in taken]
        self._slow = [e for e in range(len(self.experts)) if e not in self.fused_experts]
        self.use_fused = use_fused

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    def run(self, x: np.ndarray, state: Sequence[np.ndarray], objective: np.ndarray | None = None,
            active: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray], StepDetails]:
        """x (B, D) float32, state (flat, see module docstring), objective (B, 5), active (B, E) bool.

        Takes ownership of `state`: its arrays may be updated in place. `details.changed` (n_state,) says which
        state tensors changed, so the caller writes back only those. Given a LazyRows view of a state table,
        tensors the step does not need are never gathered and come back as None (unchanged), and the network
        state of an expert that ran on some cells only comes back as a RowUpdate of those rows."""
        B = x.shape[0]
        if len(state) != self.n_state:
            raise ValueError(f"state has {len(state)} tensors, this MS³M bundle needs {self.n_state}")
        if objective is None:
            objective = objective_array("balanced", 1.0, B)
        if active is None:
            active = np.ones((B, self.n_experts), bool)
        col_all = active.all(0).tolist()  # per expert: active in every cell
        if not all(col_all):
            if not active.any(1).all():
                raise ValueError("every cell needs at least one active expert")
            col_any = active.any(0).tolist()
        else:
            col_any = col_all
        plain = not isinstance(state, LazyRows)  # a plain list: hand back a complete state
        new_state: list[np.ndarray | None] = list(state) if plain else [None] * self.n_state  # None: not read
        changed = np.zeros(self.n_state, bool)
        changed[0] = True  # the gate's EMA context
        feats, phases = [], []
        runs = np.zeros(self.n_experts, np.int64)
        seconds = np.zeros(self.n_experts)
        fused = self.use_fused and self._fused is not None and all(col_all[e] for e in self.fused_experts)
        for e in self._slow if fused else range(self.n_experts):
            rt, s, sl = self.experts[e], self.scales[e], self.slices[e]
            phase, feat = state[sl.start], state[sl.start + 2]
            if s == 1:  # no pooling: the expert runs on x whenever active; acc and phase stay 0
                inputs = x
                run = None if col_all[e] else active[:, e].nonzero()[0]  # None: every cell
            else:
                inputs = state[sl.start + 1] + x
                due = phase[:, 0] >= s - 1.5  # the s-th sample of the pooling window
                if not col_all[e]:
                    due &= active[:, e]
                n_due = np.count_nonzero(due)
                run = None if n_due == B else due.nonzero()[0] if n_due else ()
            n_run = B if run is None else len(run)
            if n_run:
                t0 = time.perf_counter()
                pooled = inputs if run is None else inputs[run]
                pooled = pooled / np.float32(s) if s > 1 else pooled
                net_pos = range(sl.start + 3, sl.stop)
                if run is None:
                    net = state[sl.start + 3 : sl.stop]  # read only when the expert runs
                elif plain:
                    net = [state[p][run] for p in net_pos]
                else:  # only the rows that run, straight from the table
                    net = [state.subset(p, run) for p in net_pos]
                f, new_net = rt.run(pooled, net)
                seconds[e] = time.perf_counter() - t0
                runs[e] = n_run
                if run is None:
                    feat = f
                    new_state[sl.start + 3 : sl.stop] = new_net
                else:
                    feat[run] = f  # the gathered rows are ours to update
                    for p, src in zip(net_pos, new_net):
                        if plain:
                            state[p][run] = src
                            new_state[p] = state[p]
                        else:
                            new_state[p] = RowUpdate(run, src)
                new_state[sl.start + 2] = feat
                changed[sl.start + 2 : sl.stop] = True
            if s > 1 and col_any[e]:
                if col_all[e]:
                    acc_out, phase_out = inputs, phase + np.float32(1)
                else:
                    act = active[:, e, None]
                    acc_out = np.where(act, inputs, state[sl.start + 1])
                    phase_out = np.where(act, phase + np.float32(1), phase)
                if n_run:
                    acc_out[run if run is not None else slice(None)] = 0
                    phase_out[run if run is not None else slice(None)] = 0
                new_state[sl.start], new_state[sl.start + 1] = phase_out, acc_out
                changed[sl.start : sl.start + 2] = True
                phases.append(phase_out)
            else:
                phases.append(phase)
            feats.append(feat)
        objective, act = objective.astype(np.float32, copy=False), active.astype(np.float32)
        if fused:
            t0 = time.perf_counter()
            for e in self.fused_experts:  # their phases stay 0
                phases.insert(e, state[self.slices[e].start])
            feeds = {"x": x, "ema": state[0], "slow_features": _stack(feats), "phases": np.concatenate(phases, 1),
                     "objective": objective, "active": act}
            for pos, name in self._fused_feed:
                feeds[name] = state[pos]
            y, w, contrib, ema, logits, fast_feats, *nets = self._fused.run(None, feeds)
            dt = (time.perf_counter() - t0) / len(self.fused_experts)
            it = iter(nets)
            for k, e in enumerate(self.fused_experts):
                sl = self.slices[e]
                new_state[sl.start + 2] = fast_feats[k]
                for pos in range(sl.start + 3, sl.stop):
                    new_state[pos] = next(it)
                changed[sl.start + 2 : sl.stop] = True
                runs[e], seconds[e] = B, dt
        else:
            y, w, contrib, ema, logits = self._gate.run(None, {
                "x": x, "ema": state[0], "features": _stack(feats), "phases": np.concatenate(phases, 1),
                "objective": objective, "active": act})
        new_state[0] = ema
        contrib = contrib.transpose(1, 0, 2, 3)  # (B, E, H, K), a view of the graph's expert-major output
        return y, new_state, StepDetails(w, contrib, logits, runs, seconds, changed, fused)

    def warm(self, expert: int, windows: list[np.ndarray], clock: np.ndarray) -> list[np.ndarray]:
        """State of `expert` for B cells from their recent normalized inputs windows[i] (W_i, D), oldest
        first, by running its step graph from a zero state over the pooled window. clock (B,): each
        cell's sample count (mod a multiple of the scale), which fixes the phase of the open pooling
        window so the warmed expert lines up with one stepped continuously. Returns [phase, acc,
        feature, network state…], each (B, …)."""
        s, rt = self.scales[expert], self.experts[expert]
        B, D = len(windows), windows[0].shape[1] if windows else 0
        phase = (np.asarray(clock, np.int64) % s).astype(np.float32)
        acc = np.zeros((B, D), np.float32)
        pooled = []
        for i, w in enumerate(windows):
            p = int(phase[i])
            if p:
                acc[i] = w[len(w) - p :].sum(0)
            body = w[: len(w) - p]
            n_full = len(body) // s
            pooled.append(body[len(body) - n_full * s :].reshape(n_full, s, D).mean(1) if n_full else
                          np.zeros((0, D), np.float32))
        net = [np.zeros((B, *shape), np.float32) for shape in self._net_shapes(expert)]
        feat = np.zeros((B, self._feature_dim), np.float32)
        T = max((len(p) for p in pooled), default=0)
        seq = np.zeros((T, B, D), np.float32)  # sequences aligned at their ends: cell i starts at T − len(pooled[i])
        start = np.array([T - len(p) for p in pooled], np.int64)
        for i, p in enumerate(pooled):
            seq[start[i]:, i] = p
        for t in range(T):
            idx = np.flatnonzero(start <= t)
            every = len(idx) == B
            f, new = rt.run(seq[t] if every else seq[t, idx], net if every else [n[idx] for n in net])
            if every:
                feat, net = f, list(new)
            else:
                feat[idx] = f
                for dst, src in zip(net, new):
                    dst[idx] = src
        return [phase[:, None], acc, feat, *net]

    def advance(self, expert: int, pieces: list[np.ndarray], rows: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Step `expert`'s state pieces [phase, acc, feature, network state…] (B, …) over each cell's later
        normalized inputs rows[i] (a list of (D,), oldest first), with the pooling of `run`. Returns new pieces."""
        s, rt = self.scales[expert], self.experts[expert]
        phase, acc, feat, *net = [p.copy() for p in pieces]
        for t in range(max((len(r) for r in rows), default=0)):
            idx = np.array([i for i, r in enumerate(rows) if t < len(r)], np.int64)
            acc[idx] += np.stack([rows[i][t] for i in idx])
            phase[idx] += 1
            run = idx[phase[idx, 0] >= s - 0.5]
            if run.size:
                f, new = rt.run(np.ascontiguousarray(acc[run] / s, dtype=np.float32), [n[run] for n in net])
                feat[run] = f
                for dst, src in zip(net, new):
                    dst[run] = src
                acc[run] = 0
                phase[run] = 0
        return [phase, acc, feat, *net]

    def _net_shapes(self, expert: int) -> list[tuple[int, ...]]:
        return [tuple(s.shape) for s in self._manifest_experts[expert].state]
