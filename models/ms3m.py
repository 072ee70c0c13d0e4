"""MS³M: multi-scale structured state-space mixture with objective-conditioned routing.

E experts, each a small model of the zoo (S4D, LRU, Mamba, S5, …) running at its own time scale s:
a scale-s expert updates every s-th sample on the mean of the last s inputs and holds its output in
between (the symbol / slot / subframe idea). A gate conditioned on the KPI context and an objective
vector (accuracy / latency / energy / balanced, compute budget) weighs the experts' forecasts.

Per step t, for expert e with scale s:

    acc ← acc + x_t,  phase ← phase + 1
    if phase = s:  f_e ← expert_e.step(acc / s),  acc ← 0,  phase ← 0     (otherwise f_e is held)
    y_e,t = W_e [f_e ; x_t ; phase/s] + b_e + x_t[targets]                  (per-expert head)
    g_t = top-k softmax(gate([x_t ; ema(x) ; |x_t − ema| ; objective]))   (k from the budget)
    y_t = Σ_e g_e,t · y_e,t

The parallel mode pools each expert's input stream causally (windows aligned to the cell's phase,
any initial phase per batch element), runs the expert's own parallel forward over the pooled
sequence and holds its outputs, so `step` and `forward` agree exactly (models.ms3m_expert).

Objective vector: one-hot(accuracy, latency, energy, balanced) ⊕ budget ∈ (0, 1]; k = ⌈budget·E⌉.
Training samples an objective per sequence (`sample_objectives`, models.ms3m_objectives) and adds a
load-balancing loss and a compute-cost penalty weighted by the objective (`aux_losses`), so one model
serves every objective.

For serving, experts can be masked (inactive experts' state is left untouched and the gate
renormalizes over the active ones) and a newly activated expert is warmed from a window of past
inputs with one parallel pass (`warm_expert`). Gate weights and per-expert contributions come out of
both `forward_detailed` and `step_detailed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from contract.objectives import OBJECTIVES
from models.base import ModelConfig, State, StateField, StreamingModel
from models.ms3m_expert import Expert, select_rows
from models.ms3m_objectives import objective_vector, sample_objectives
from models.registry import model_class, register
from models.scan import linear_scan

EMA_RATES = (0.5, 0.1, 0.02)  # gate context: exponential moving averages of the inputs

# Default experts: three kinds at scales 1 / 4 / 16. Their Δt / |λ| ranges bound each expert's memory
# (decay_time_samples ≲ 1500 base samples) so that a newly activated expert can be warmed from the
# cell's window in the buffer.
DEFAULT_EXPERTS: list[dict[str, Any]] = [
    {"kind": "s4d", "scale": 1, "d_model": 32, "n_layers": 2, "options": {"d_state": 8, "dt_min": 0.01}},
    {"kind": "mamba", "scale": 1, "d_model": 32, "n_layers": 2, "options": {"d_state": 8, "dt_min": 0.01}},
    {"kind": "s4d", "scale": 4, "d_model": 32, "n_layers": 2, "options": {"d_state": 8, "dt_min": 0.02}},
    {"kind": "lru", "scale": 4, "d_model": 32, "n_layers": 2, "options": {"d_state": 32, "r_max": 0.98}},
    {"kind": "s4d", "scale": 16, "d_model": 32, "n_layers": 2, "options": {"d_state": 8, "dt_min": 0.05}},
    {"kind": "lru", "scale": 16, "d_model": 32, "n_layers": 2, "options": {"d_state": 32, "r_max": 0.95}},
]

# Weight of the expected-compute penalty per objective (fraction of the forecast loss scale).
DEFAULT_COST_WEIGHTS = {"accuracy": 0.0, "latency": 0.05, "energy": 0.3, "balanced": 0.05}


@dataclass
class MS3MConfig(ModelConfig):
    experts: list[dict[str, Any]] = field(default_factory=lambda: [dict(e) for e in DEFAULT_EXPERTS])
    d_feature: int = 32  # width of each expert's output feature
    d_gate: int = 32
    min_weight: float = 0.0  # gate weights below this are dropped (and renormalized) at inference
    lb_weight: float = 0.01  # load-balancing loss weight
    # deep supervision: every expert's own forecast is fitted too, each with this weight, so each expert
    # forecasts as well as if trained alone, the mixture is an ensemble of good forecasters, and the cheap
    # subsets that low budgets / the energy objective leave active stay accurate
    member_weight: float = 1.0
    # False: the mixture's loss trains the gate only (expert forecasts enter it detached), so each expert
    # learns exactly as if trained alone and the gate learns to weigh them (stacking); True: end to end
    mixture_trains_experts: bool = False
    gate_lr_scale: float = 5.0  # the gate's learning rate relative to the experts' (it has far fewer steps' worth
    # of signal: one weight vector per position, learned while the experts are still moving)
    cost_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_COST_WEIGHTS))
    costs: list[float] | None = None  # per-expert cost per base sample (µs, measured); None = estimate

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.experts:
            raise ValueError("experts must list at least one expert")
        for i, e in enumerate(self.experts):
            unknown = set(e) - {"kind", "scale", "d_model", "n_layers", "options"}
            if unknown:
                raise ValueError(f"experts[{i}] has unknown key(s) {sorted(unknown)}")
            if "kind" not in e:
                raise ValueError(f"experts[{i}] needs a 'kind' (a model of the zoo)")
            model_class(e["kind"])  # KeyError names the known models
            if int(e.get("scale", 1)) < 1:
                raise ValueError(f"experts[{i}].scale must be ≥ 1")
        if self.costs is not None and len(self.costs) != len(self.experts):
            raise ValueError(f"costs has {len(self.costs)} entries for {len(self.experts)} experts")
        if not self.mixture_trains_experts and self.member_weight <= 0:
            raise ValueError("member_weight must be > 0 unless mixture_trains_experts (the experts need a loss)")
        if set(self.cost_weights) != set(OBJECTIVES):
            raise ValueError(f"cost_weights must have exactly the keys {OBJECTIVES}")

    def expert_names(self) -> list[str]:
        return [f"{e['kind']}@{int(e.get('scale', 1))}" for e in self.experts]


class MS3MOutput(NamedTuple):
    y: Tensor  # (B, L, H, K) or (B, H, K)
    gate: Tensor  # (B, L, E) or (B, E): weights after top-k and masking (sum to 1)
    logits: Tensor  # gate logits before top-k
    contributions: Tensor  # (B, L, E, H, K) or (B, E, H, K): g_e · y_e
    state: State | None


@register("ms3m")
class MS3M(StreamingModel):
    """The MS³M forecaster (see module docstring). forward/step take an optional objective (B, 5) and
    active-expert mask (B, E); without them: balanced objective, full budget, all experts active."""

    Config = MS3MConfig

    def __init__(self, config: MS3MConfig):
        super().__init__()
        self.config = c = config
        self.experts = nn.ModuleList(Expert(e, c.d_input, c.d_feature) for e in c.experts)
        E, D, K, H = len(self.experts), c.d_input, c.n_targets, c.horizon
        self.heads = nn.ModuleList(nn.Linear(c.d_feature + D + 1, H * K) for _ in range(E))
        self.gate = nn.Sequential(
            nn.Linear(D * (2 + len(EMA_RATES)) + len(OBJECTIVES) + 1, c.d_gate), nn.GELU(), nn.Linear(c.d_gate, E)
        )
        self.register_buffer("ema_rates", torch.tensor(EMA_RATES), persistent=False)
        self.register_buffer("expert_costs", torch.tensor(c.costs or self.estimate_costs(), dtype=torch.float32),
                             persistent=False)
        self.target_index = list(c.target_index) if c.target_index is not None else None
        # head output (h, k) reads input column target_index[k]: each expert forecasts the change from the last value
        last_value = torch.zeros(H * K, c.d_feature + D + 1)
        for k, col in enumerate(self.target_index or []):
            last_value[k::K, c.d_feature + col] = 1.0
        self.register_buffer("last_value_map", last_value, persistent=False)
        self.register_buffer("scales", torch.tensor([float(e.scale) for e in self.experts]), persistent=False)

    # -- description ---------------------------------------------------------------------------
    @property
    def n_experts(self) -> int:
        return len(self.experts)

    def expert_names(self) -> list[str]:
        return [e.name for e in self.experts]

    def estimate_costs(self) -> list[float]:
        """Cost per base sample before measurement: parameters + state size, divided by the scale."""
        out = []
        for e in self.experts:
            params = sum(p.numel() for p in e.net.parameters())
            out.append((params + sum(f.numel for f in e.net.state_spec())) / e.scale)
        return out

    def relative_costs(self) -> Tensor:
        """(E,) costs normalized so that all experts together cost 1."""
        return self.expert_costs / self.expert_costs.sum()

    def _expert_state_sizes(self) -> list[int]:
        return [len(e.state_spec(self.config.d_input, self.config.d_feature)) for e in self.experts]

    def state_spec(self) -> list[StateField]:
        D = self.config.d_input
        spec = [StateField("gate.ema", (len(EMA_RATES), D))]
        for i, e in enumerate(self.experts):
            spec += [StateField(f"expert{i}.{f.name}", f.shape) for f in e.state_spec(D, self.config.d_feature)]
        return spec

    def expert_state_slices(self) -> list[slice]:
        """Positions of each expert's tensors in the flat state tuple."""
        out, i = [], 1
        for n in self._expert_state_sizes():
            out.append(slice(i, i + n))
            i += n
        return out

    # -- gate ------------------------------------------------------------------------------------
    def _gate(self, x: Tensor, ema: Tensor, objective: Tensor, active: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (..., D), ema (..., R, D), objective (..., 5), active (..., E) bool → (weights, logits) (..., E)."""
        E = self.n_experts
        flat = ema.view(-1, len(EMA_RATES) * self.config.d_input) if ema.dim() == 3 else ema.flatten(-2)  # a step:
        # a constant reshape (the exported step graph's cost at batch 1 is its node count)
        z = torch.cat([x, flat, (x - ema[..., -1, :]).abs(), objective], -1)
        logits = self.gate(z)
        k = torch.ceil(objective[..., -1:] * E - 1e-6).clamp(1, E)  # (..., 1)
        masked = logits if active is None else logits.masked_fill(~active, float("-inf"))
        # rank 0 = best: the number of experts preferred over this one (tied experts share a rank, so ties at
        # the k-th place are all kept, the same in torch and onnxruntime). Expert-major pairwise comparisons
        # broadcast along outer axes only: a third of two sorts' cost in the exported graph.
        last = masked.dim() - 1  # a non-negative axis: onnx's Transpose takes no negative permutation
        m = masked.movedim(last, 0)  # (E, ...)
        rank = (m.unsqueeze(1) > m.unsqueeze(0)).sum(0).movedim(0, last)  # [j, i]: m_j > m_i, summed over j
        keep = rank < k
        if active is not None:
            keep = keep & active
        w = torch.softmax(masked.masked_fill(~keep, float("-inf")), dim=-1)
        if self.config.min_weight > 0 and not self.training:
            w = w * (w >= self.config.min_weight)
            w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        return w, logits

    def _head_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The E heads as (W_feature (E, H·K, F), W_input (E, H·K, D), w_phase (E, H·K), bias (E, H·K)), the
        last-value offset x[targets] folded into W_input (the same function as adding it)."""
        F_, D = self.config.d_feature, self.config.d_input
        W = torch.stack([h.weight for h in self.heads]) + self.last_value_map  # (E, H·K, F + D + 1)
        return W[..., :F_], W[..., F_ : F_ + D], W[..., F_ + D], torch.stack([h.bias for h in self.heads])

    def _heads(self, feats: Tensor, x: Tensor, phases: Tensor) -> Tensor:
        """feats (..., E, F) held features, x (..., D), phases (..., E) samples since each expert's update →
        per-expert forecasts (..., E, H, K)."""
        c = self.config
        Wf, Wx, wp, b = self._head_weights()
        y = (torch.einsum("...ef,eof->...eo", feats, Wf) + torch.einsum("...d,eod->...eo", x, Wx)
             + (phases / self.scales).unsqueeze(-1) * wp + b)  # (..., E, H·K)
        return y.unflatten(-1, (c.horizon, c.n_targets))

    # -- parallel --------------------------------------------------------------------------------
    def forward_detailed(self, x: Tensor, state: State | None = None, objective: Tensor | None = None,
                         active: Tensor | None = None) -> MS3MOutput:
        """x (B, L, D) → MS3MOutput with per-position gate weights and contributions and the final state.
        objective (B, 5) (default balanced, budget 1); active (B, E) bool (default all)."""
        y_e, w, logits, new_state = self._parallel(x, state, objective, active)
        contrib = w.unsqueeze(-1).unsqueeze(-1) * y_e  # (B, L, E, H, K)
        return MS3MOutput(contrib.sum(2), w, logits, contrib, new_state)

    def _parallel(self, x: Tensor, state: State | None, objective: Tensor | None,
                  active: Tensor | None, last_only: bool = False) -> tuple[Tensor, Tensor, Tensor, State]:
        """Every expert's own forecast y_e (B, L, E, H, K), gate weights and logits (B, L, E), final state.
        last_only: gate and heads at the last position only (L = 1 in the outputs)."""
        B, L, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        if objective is None:
            objective = objective_vector("balanced", 1.0, B, x.dtype).to(x.device)
        ema0 = state[0]
        ema = self._ema_parallel(x, ema0)  # (B, L, R, D)
        feats, phases, new_states = [], [], [None]
        for i, (e, sl) in enumerate(zip(self.experts, self.expert_state_slices())):
            es = tuple(state[sl])
            f, ph, es_new = e(x, es)  # (B, L, F), (B, L, 1), final expert state
            if active is not None:  # inactive experts keep their state
                es_new = select_rows(active[:, i], es_new, es)
            feats.append(f)
            phases.append(ph)
            new_states.extend(es_new)
        new_states[0] = ema[:, -1]
        feats, phases = torch.stack(feats, -2), torch.cat(phases, -1)  # (B, L, E, F), (B, L, E)
        if last_only:
            x, ema, feats, phases, L = x[:, -1:], ema[:, -1:], feats[:, -1:], phases[:, -1:], 1
        obj = objective.unsqueeze(1).expand(B, L, objective.shape[-1])
        act = None if active is None else active.unsqueeze(1).expand(B, L, self.n_experts)
        w, logits = self._gate(x, ema, obj, act)  # (B, L, E)
        y_e = self._heads(feats, x, phases)  # (B, L, E, H, K)
        return y_e, w, logits, tuple(new_states)

    def _ema_parallel(self, x: Tensor, ema0: Tensor) -> Tensor:
        """ema_t = (1 − α) ema_{t−1} + α x_t for each rate: (B, L, R, D)."""
        a = (1 - self.ema_rates).to(x.dtype).view(1, 1, -1, 1)  # (1, 1, R, 1)
        b = self.ema_rates.to(x.dtype).view(1, 1, -1, 1) * x.unsqueeze(2)  # (B, L, R, D)
        return linear_scan(a, b, ema0, dim=1)

    def forward_with_state(self, x: Tensor, state: State | None = None, objective: Tensor | None = None,
                           active: Tensor | None = None) -> tuple[Tensor, State]:
        out = self.forward_detailed(x, state, objective, active)
        return out.y, out.state

    def forward(self, x: Tensor, state: State | None = None, objective: Tensor | None = None,
                active: Tensor | None = None) -> Tensor:
        return self.forward_detailed(x, state, objective, active).y

    def forward_last(self, x: Tensor, state: State | None = None, objective: Tensor | None = None,
                     active: Tensor | None = None) -> Tensor:
        y_e, w, _, _ = self._parallel(x, state, objective, active, last_only=True)
        return (w.unsqueeze(-1).unsqueeze(-1) * y_e).sum(2)[:, 0]  # (B, H, K)

    # -- recurrent -------------------------------------------------------------------------------
    def step_detailed(self, x_t: Tensor, state: State, objective: Tensor | None = None,
                      active: Tensor | None = None) -> MS3MOutput:
        B = x_t.shape[0]
        if objective is None:
            objective = objective_vector("balanced", 1.0, B, x_t.dtype).to(x_t.device)
        feats, phases, new_states = [], [], [None]
        for i, (e, sl) in enumerate(zip(self.experts, self.expert_state_slices())):
            es = tuple(state[sl])
            f, ph, es_new = e.step(x_t, es)  # (B, F), (B, 1), new expert state
            if active is not None:  # inactive experts keep their state
                es_new = select_rows(active[:, i], es_new, es)
            feats.append(f)
            phases.append(ph)
            new_states.extend(es_new)
        y, w, logits, contrib, ema = self.combine(x_t, state[0], torch.stack(feats), torch.cat(phases, 1),
                                                  objective, active)
        new_states[0] = ema
        return MS3MOutput(y, w, logits, contrib.transpose(0, 1), tuple(new_states))

    def combine(self, x_t: Tensor, ema_prev: Tensor, feats: Tensor, phases: Tensor, objective: Tensor,
                active: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The gate-and-heads part of a step (exported as the gate graph for serving), expert-major:

        x_t (B, D), ema_prev (B, R, D), feats (E, B, F) held expert features, phases (B, E) samples since
        each expert's last update, objective (B, 5), active (B, E) bool or None
        → y (B, H, K), gate weights (B, E), logits (B, E), contributions (E, B, H, K), ema (B, R, D).

        Expert-major, every product is a matmul batched over experts: the layout onnxruntime runs fastest
        (README, "Serving MS³M")."""
        c, E = self.config, self.n_experts
        R, D = len(EMA_RATES), c.d_input
        rates = self.ema_rates.to(x_t.dtype).repeat_interleave(D)  # (R·D,)
        ema = ((1 - rates) * ema_prev.view(-1, R * D) + rates * x_t.repeat(1, R)).view(-1, R, D)  # (B, R, D)
        w, logits = self._gate(x_t, ema, objective, active)
        Wf, Wx, wp, b = self._head_weights()
        ph = (phases / self.scales).t().unsqueeze(-1)  # (E, B, 1)
        x1 = torch.cat([x_t, torch.ones_like(x_t[:, :1])], 1)  # (B, D + 1): the bias rides on the input product
        Wxb = torch.cat([Wx, b.unsqueeze(-1)], 2).transpose(1, 2)  # (E, D + 1, O)
        y_e = feats @ Wf.transpose(1, 2) + x1 @ Wxb + ph @ wp.unsqueeze(1)  # (E, B, O)
        contrib = w.t().unsqueeze(-1) * y_e  # (E, B, O)
        return contrib.sum(0).view(-1, c.horizon, c.n_targets), w, logits, contrib.view(E, -1, c.horizon,
                                                                                         c.n_targets), ema

    def step(self, x_t: Tensor, state: State, objective: Tensor | None = None,
             active: Tensor | None = None) -> tuple[Tensor, State]:
        out = self.step_detailed(x_t, state, objective, active)
        return out.y, out.state

    # -- training --------------------------------------------------------------------------------
    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float = 1e-3) -> list[dict[str, Any]]:
        """The zoo's groups for the experts and heads, plus the gate's own group at gate_lr_scale × lr."""
        gate = {id(p) for p in self.gate.parameters()}
        groups = super().param_groups(lr, weight_decay, ssm_lr)
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in gate]
        groups.append({"params": list(self.gate.parameters()), "weight_decay": 0.0,
                       "lr": lr * self.config.gate_lr_scale, "group": "gate"})
        return [g for g in groups if g["params"]]

    def training_forward(self, x: Tensor, state: State | None = None,
                         last_only: bool = False) -> tuple[Tensor, dict[str, Any], State]:
        """One objective per sequence (uniform objective, budget from a grid); auxiliary terms: load balancing,
        the objective-weighted compute cost and (member_weight > 0) every expert's own forecast."""
        objective = sample_objectives(x.shape[0]).to(dtype=x.dtype, device=x.device)
        y_e, w, logits, new_state = self._parallel(x, state, objective, None, last_only)
        mixed = y_e if self.config.mixture_trains_experts else y_e.detach()
        contrib = w.unsqueeze(-1).unsqueeze(-1) * mixed
        out = MS3MOutput(contrib.sum(2), w, logits, contrib, new_state)
        aux = self.aux_losses(out, objective)
        terms: dict[str, Any] = {"load_balance": aux["load_balance"], "cost": aux["cost"]}
        if self.config.member_weight > 0:
            terms["experts"] = (self.config.member_weight, y_e)  # each expert's own forecast, fitted too
        return out.y, terms, out.state

    def aux_losses(self, out: MS3MOutput, objective: Tensor) -> dict[str, Tensor]:
        """Load-balancing loss (Switch-style, over top-k selections) and the expected compute cost
        weighted per sequence by its objective. objective (B, 5); out from forward_detailed."""
        E = self.n_experts
        probs = torch.softmax(out.logits, -1)  # (B, L, E)
        selected = (out.gate > 0).to(probs.dtype)
        lb = E * (selected.mean((0, 1)) * probs.mean((0, 1))).sum()
        cost = (out.gate * self.relative_costs().to(out.gate.dtype)).sum(-1).mean(-1)  # (B,)
        weights = torch.tensor([self.config.cost_weights[o] for o in OBJECTIVES], dtype=cost.dtype,
                               device=cost.device)
        per_seq = objective[:, : len(OBJECTIVES)] @ weights  # (B,)
        return {"load_balance": self.config.lb_weight * lb, "cost": (per_seq * cost).mean(),
                "expected_cost": cost.mean().detach()}

    # -- serving helpers -------------------------------------------------------------------------
    def warm_expert(self, index: int, window: Tensor, phase: Tensor | None = None) -> State:
        """The state of expert `index` after a window (B, W, D) of past inputs, by one parallel pass from
        a zero state. `phase` (B, 1): the cell's current phase for that expert; the window's start is
        aligned so that its final phase equals it (default: W mod scale)."""
        e = self.experts[index]
        B, W, _ = window.shape
        D, F = self.config.d_input, self.config.d_feature
        zero = tuple(torch.zeros(B, *f.shape, dtype=window.dtype, device=window.device)
                     for f in e.state_spec(D, F))
        if phase is not None and e.scale > 1:
            start = torch.remainder(phase - W, e.scale)
            zero = (start.to(window.dtype), *zero[1:])
        _, _, state = e(window, zero)
        return state

    @torch.no_grad()
    def decay_time_samples(self, index: int, factor: float = 10.0) -> float:
        """Memory of expert `index` in base samples: the time its slowest pole takes to decay by `factor`
        (default 10×), i.e. max over poles of scale · ln(factor) / −ln|Ā|. (The e-folding time is this
        with factor = e.) Mamba's poles are taken at its Δ bias. Warm-up windows of 4× this time
        reproduce the continuously stepped state to ~1e-4 (tests/models/test_ms3m.py)."""
        net = self.experts[index].net
        window = getattr(net.config, "window", None)
        if window is not None:  # a window model (the linear expert): it remembers exactly its window
            return float(window * self.experts[index].scale)
        poles = net.ssm_poles()
        if poles is None:
            return math.inf
        mag = poles.abs().clamp(max=1 - 1e-12).double()
        return float((math.log(factor) / -torch.log(mag)).max() * self.experts[index].scale)


def expert_summary(model: MS3M) -> list[dict[str, Any]]:
    """Per expert: name, kind, scale, parameters, state bytes per cell, relative cost."""
    rel = model.relative_costs().tolist()
    return [{"name": e.name, "kind": e.kind, "scale": e.scale,
             "parameters": sum(p.numel() for p in e.net.parameters()) + sum(p.numel() for p in h.parameters()),
             "state_bytes": 4 * sum(f.numel for f in e.state_spec(model.config.d_input, model.config.d_feature)),
             "relative_cost": r}
            for e, h, r in zip(model.experts, model.heads, rel)]


__all__ = ["DEFAULT_EXPERTS", "EMA_RATES", "MS3M", "OBJECTIVES", "Expert", "MS3MConfig", "MS3MOutput",
           "expert_summary", "objective_vector", "sample_objectives"]
