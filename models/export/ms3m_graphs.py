"""MS³M serving graphs: one step graph per expert plus the gate (docs/architecture.md, "Bundles").

- experts/<i>.onnx — the expert network's step on its pooled input:
  (x (B, D), state_<name>…) → (feature (B, F), state_<name>_out…). The pooling (acc += x, every s-th
  sample feed acc / s) and holding are bookkeeping the service does itself, so an expert's graph runs
  only for the cells where that expert is active and due for an update.
- gate.onnx — gate and heads, expert-major (MS3M.combine): (x, ema, features (E, B, F), phases (B, E),
  objective (B, 5), active (B, E)) → (y (B, H, K), gate (B, E), contributions (E, B, H, K), ema_out,
  logits (B, E)). `active` is float (1 = active); logits are the gate's objective-conditioned preferences
  before top-k and masking.
- fused.onnx — the experts that step on every sample (scale 1) and the gate in one graph, for the steps where
  all of them are active in every cell: (x, ema, slow_features (E_s, B, F) the other experts' held features,
  phases (B, E), objective, active, state_e<i>_<name>…) → (y, gate, contributions, ema_out, logits,
  features (E_f, B, F), state_e<i>_<name>_out…). The slower experts still run in their own graphs, only when
  due. One call instead of 1 + E_f saves the per-call overhead that dominates small batches (README,
  "Serving MS³M").
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.export.step_graph import ONNX_OPSET, onnx_has_complex, record_state_inputs
from models.ms3m import EMA_RATES, MS3M, OBJECTIVES

GATE_INPUTS = ["x", "ema", "features", "phases", "objective", "active"]
GATE_OUTPUTS = ["y", "gate", "contributions", "ema_out", "logits"]
EXPERT_MAJOR = {"features": 1, "slow_features": 1, "contributions": 1}  # the batch axis where it is not the first


class ExpertStepGraph(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        f, new = self.net.step(x, tuple(state))
        return (f[:, 0], *new)


class GateGraph(nn.Module):
    def __init__(self, model: MS3M):
        super().__init__()
        self.model = model

    def forward(self, x, ema, features, phases, objective, active) -> tuple[Tensor, ...]:
        y, w, logits, contrib, ema_out = self.model.combine(x, ema, features, phases, objective, active > 0.5)
        return y, w, contrib, ema_out, logits


class FusedGraph(nn.Module):
    """Scale-1 experts `fast` stepped on x, the others' held features passed in, then the gate."""

    def __init__(self, model: MS3M, fast: list[int]):
        super().__init__()
        self.model, self.fast = model, fast
        self.sizes = [len(model.experts[e].net.state_spec()) for e in fast]
        # the features in expert order as pieces: ("fast", k) or ("slow", j0, j1), a run of held features
        self.pieces: list[tuple[Any, ...]] = []
        j = 0
        for e in range(model.n_experts):
            if e in fast:
                self.pieces.append(("fast", fast.index(e)))
            elif self.pieces and self.pieces[-1][0] == "slow":
                self.pieces[-1] = ("slow", self.pieces[-1][1], j + 1)
                j += 1
            else:
                self.pieces.append(("slow", j, j + 1))
                j += 1

    def forward(self, x, ema, slow_features, phases, objective, active, *fast_state) -> tuple[Tensor, ...]:
        fast_feats: list[Tensor] = []
        new_states: list[Tensor] = []
        pos = 0
        for e, n in zip(self.fast, self.sizes):
            f, new = self.model.experts[e].net.step(x, tuple(fast_state[pos : pos + n]))  # f (B, 1, F)
            pos += n
            fast_feats.append(f.view(1, -1, self.model.config.d_feature))  # (1, B, F): the memory of (B, 1, F)
            new_states.extend(new)
        feats = torch.cat([fast_feats[p[1]] if p[0] == "fast" else slow_features[p[1] : p[2]]
                           for p in self.pieces])  # (E, B, F); slices and one concat, no per-expert gathers
        y, w, logits, contrib, ema_out = self.model.combine(x, ema, feats, phases, objective, active > 0.5)
        return (y, w, contrib, ema_out, logits, torch.cat(fast_feats), *new_states)


def fused_state_names(model: MS3M, fast: list[int]) -> list[str]:
    """Input names of the fused graph's expert states, in order: state_e<i>_<name>."""
    return [f"state_e{e}_{f.name}" for e in fast for f in model.experts[e].net.state_spec()]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> Path:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes={n: {EXPERT_MAJOR.get(n, 0): "batch"} for n in inputs + outputs},
                          opset_version=ONNX_OPSET,
                          do_constant_folding=True, dynamo=False)
    if onnx_has_complex(path):
        raise RuntimeError(f"{path}: exported graph contains complex tensors")
    record_state_inputs(path, inputs[1:])
    return path


def export_ms3m_graphs(model: MS3M, out_dir: Path, add_file) -> dict[str, Any]:
    """Write experts/<i>.onnx and gate.onnx under out_dir; `add_file(role, relpath)` registers each file.
    Returns the manifest entries {"experts": [...], "gate": {...}}."""
    model = model.float().eval()
    c = model.config
    B, D, F, E = 2, c.d_input, c.d_feature, model.n_experts
    (out_dir / "experts").mkdir(exist_ok=True)
    experts = []
    costs = model.expert_costs.tolist()
    for i, e in enumerate(model.experts):
        spec = e.net.state_spec()
        names = [f.name for f in spec]
        g_in = ["x"] + [f"state_{n}" for n in names]
        g_out = ["feature"] + [f"state_{n}_out" for n in names]
        rel = f"experts/{i}.onnx"
        _export(ExpertStepGraph(e.net), (torch.randn(B, D), *e.net.init_state(B, dtype=torch.float32)),
                out_dir / rel, g_in, g_out)
        entry_files: dict[str, Any] = {}
        add_file(f"expert{i}", rel, entry_files)
        experts.append({"name": e.name, "kind": e.kind, "scale": e.scale,
                        "state": [{"name": f.name, "shape": list(f.shape)} for f in spec],
                        "graph": {"inputs": g_in, "outputs": g_out, "opset": ONNX_OPSET},
                        "files": entry_files, "cost_us": costs[i] if c.costs is not None else None})
    args = (torch.randn(B, D), torch.zeros(B, len(EMA_RATES), D), torch.randn(E, B, F), torch.zeros(B, E),
            torch.zeros(B, len(OBJECTIVES) + 1).index_fill_(1, torch.tensor([3, len(OBJECTIVES)]), 1.0),
            torch.ones(B, E))
    _export(GateGraph(model), args, out_dir / "gate.onnx", GATE_INPUTS, GATE_OUTPUTS)
    add_file("gate", "gate.onnx")
    fast = [i for i, e in enumerate(model.experts) if e.scale == 1]
    fused = None
    if fast and len(fast) < E:  # with no slower expert the monolithic step graph is the fused graph
        names = fused_state_names(model, fast)
        f_in = ["x", "ema", "slow_features", "phases", "objective", "active", *names]
        f_out = ["y", "gate", "contributions", "ema_out", "logits", "features", *[f"{n}_out" for n in names]]
        states = [s for e in fast for s in model.experts[e].net.init_state(B, dtype=torch.float32)]
        slow = E - len(fast)
        _export(FusedGraph(model, fast), (*args[:2], torch.randn(slow, B, F), *args[3:], *states),
                out_dir / "fused.onnx", f_in, f_out)
        record_state_inputs(out_dir / "fused.onnx", names)
        add_file("fused", "fused.onnx")
        fused = {"experts": fast, "inputs": f_in, "outputs": f_out, "opset": ONNX_OPSET}
    gate = {"inputs": GATE_INPUTS, "outputs": GATE_OUTPUTS, "opset": ONNX_OPSET, "ema_rates": list(EMA_RATES),
            "d_feature": F, "objectives": list(OBJECTIVES), "min_weight": c.min_weight,
            "decay_time_samples": [model.decay_time_samples(i) for i in range(E)],
            "relative_costs": model.relative_costs().tolist(), "fused": fused}
    return {"experts": experts, "gate": gate}
