"""SSMA: the Structured State Matrix Architecture seed (sparse top-k state transitions, low-rank interactions,
an LRU-style memory, ternary quantization-aware training and a dense → lottery-ticket → dynamic-sparsity schedule),
under the streaming contract.

Per layer, on the pre-normed residual stream u_t = LN(h_t) ∈ R^d:

    A_t = S_{t−1} W_state + diag(u_t) W_in + b_in                  (d × m; W_state m × m block-diagonal)
    S_t = TopK_k(ReLU(A_t))                                         (per row: k of the m activations survive)
    M_t = γ ⊙ M_{t−1} + (1 − γ) ⊙ S_t                               (γ = sigmoid(·) ∈ (0, 1)^m, one per column)
    Z_t = λ ⊙ Z_{t−1} + (1 − λ) ⊙ V(u_t)ᵀ u_t                        (r × d; U, V: d → r, λ ∈ (0, 1)^r)
    ℓ_t = U(u_t) Z_t                                                (the low-rank interaction U(X)·V(X)ᵀ·X, causal)
    z_t = Σ_j (S_t ⊙ C_S + M_t ⊙ C_M)[:, j]                         (state and memory readouts, d)
    h_{t+1} = h_t + FFN(z_t + ℓ_t)

then a final LayerNorm and the multi-horizon ForecastHead. The state per cell is (S, M, Z) per layer:
n_layers · (2·d·m + r·d) numbers whatever the sequence length; a step costs O(d·m·block_size + d·r + d·d_ff).

Where it differs from the seed (README and reference code):
- Every part reaches the forecast: the reference computes U·Vᵀ and the state and drops both. Here S and M are read
  out (C_S, C_M) and the low-rank product feeds the FFN. U(X)·V(X)ᵀ over a whole window is non-causal; its
  streaming form is a decayed running sum Z (linear attention with per-rank decay λ), O(r·d) per step.
- Top-k: per row of S (each of the d rows keeps k of its m units). topk_mode "hard" is the seed's TopK (the k
  largest values, exact ties to the lower index, so the choice is deterministic); the default "shift" keeps the
  same k entries but subtracts the (k+1)-th largest value: S_t = ReLU(A_t − max(A_(k+1), 0)). Hard top-k is
  discontinuous: when two activations are within rounding of each other at the k-th place, an ONNX runtime and
  torch (different GEMM summation orders) can keep different entries and the forecast jumps by O(1). The
  shifted form is continuous (2-Lipschitz), keeps ≤ k non-zeros (exactly k unless the k-th and (k+1)-th tie)
  and needs no tie-breaking at all.
- Stability: each W_state block is rescaled so that its largest column absolute sum is ≤ rho < 1. Rows of S are
  ≥ 0, so ‖S W‖_∞ ≤ rho ‖S‖_∞, and ReLU and top-k never increase ‖·‖_∞: the state stays bounded for any input.
- Ternary QAT (quantize = "ternary"): W_state is replaced by Q(W) ∈ {−α, 0, +α} per block, TWN-style (Li et al.
  2016): Δ = 0.7·mean|W| over the block's unpruned entries, α = mean|W| over those above Δ; straight-through
  gradient. The seed's penalty ‖W − sign W‖² pulls towards a binary code; it is adapted to the ternary target,
  ‖W − Q(W)‖² (Q detached), weighted by ternary_weight and returned by training_forward as an auxiliary term.
  Training and eval use the same quantized weights, so step ≡ forward in both modes. The rho rescale multiplies
  a block by one scalar: the served block is still {−α', 0, +α'}.
- Schedule (training_event, phases = "dense,lth,dynamic"): dense training; then lottery-ticket magnitude pruning
  of W_state (per block, the same count in each) and W_in (per row) to sparsity / sparsity_in, the whole network
  rewound to its copy saved at rewind_step (Frankle et al.'s rewinding; lth_mode "finetune" keeps the trained
  weights, "random" draws a random mask of the same size: the two comparisons of the lottery-ticket table); then
  dynamic sparsity: W_state's mask becomes the hard top-k of learned gate logits per block, sampled with Gumbel
  noise and a straight-through softmax gradient in training (connections can regrow), deterministic in eval.
  W_in keeps its lottery-ticket mask. The phase, masks and rewind copy are buffers (a checkpoint restores them).
- Serving: export_form() is a frozen copy holding the effective weights (gates, quantizer and rescale applied
  once), so the bundle's step graph carries the ternary W_state as a constant (m × m float32, not bit-packed).
- Parallel mode: the recurrence is non-linear, so forward is a loop over time for S (the step's own `cell`, bit
  for bit); the input injection, the linear recurrences M and Z (parallel scans, models.scan), the readouts and
  the FFN are computed for the whole window at once. The loop costs ~8 small tensor ops per step and layer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel, split_state
from models.registry import create_model, register
from models.scan import linear_scan
from models.seeds.ssma_ops import block_diagonal, ternary_quantize, topk_mask

PHASES = ("dense", "lth", "dynamic")
TOPK_MODES = ("shift", "hard")
LTH_MODES = ("rewind", "finetune", "random")
QUANTIZE = ("none", "ternary")
GATE_MARGIN = 4.0  # dynamic phase: initial logit gap of kept over pruned connections (Gumbel noise rarely flips it)


@dataclass
class SSMAConfig(ModelConfig):
    d_model: int = 32  # width of the residual stream = rows of each layer's state matrix S
    n_layers: int = 2  # (the seed's num_layers)
    m: int = 16  # columns of S (d_model × m) per layer
    top_k: int = 4  # activations kept per row of S
    topk_mode: str = "shift"  # "shift": kept values minus the (k+1)-th (continuous) | "hard": the seed's plain top-k
    block_size: int = 4  # W_state (m × m) is block-diagonal with m / block_size blocks of this size
    r: int = 4  # rank of the low-rank interaction U(x)·V(x)ᵀ
    d_ff: int = 64  # hidden width of the FFN
    rho: float = 0.95  # bound on every column's absolute sum in W_state (a contraction of the state)
    quantize: str = "none"  # "none" | "ternary" (QAT of W_state, TWN thresholds per block)
    ternary_weight: float = 1e-3  # weight of the penalty ‖W_state − Q(W_state)‖²
    phases: str = "dense"  # the schedule: "dense", "dense,lth", "dense,dynamic" or "dense,lth,dynamic"
    dense_steps: int = 0  # optimizer steps of the dense phase before the next one (0: until a plateau)
    lth_steps: int = 0  # steps of the lottery-ticket phase before the dynamic one (0: until a plateau)
    rewind_step: int = 100  # the step whose weights the lottery ticket rewinds to (0: the initialization)
    lth_mode: str = "rewind"  # "rewind" | "finetune" (no rewind) | "random" (random mask, rewound)
    sparsity: float = 0.8  # fraction of W_state's block entries pruned (lth) / gated off (dynamic)
    sparsity_in: float = 0.5  # fraction of each row of W_in pruned (lth)
    gumbel_tau: float = 1.0  # temperature of the Gumbel-softmax gates (dynamic phase, training)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.phases, str):  # a list from JSON or Python
            self.phases = ",".join(self.phases)
        self.phases = ",".join(p.strip() for p in self.phases.split(",") if p.strip())
        names = self.phases.split(",")
        if names[:1] != ["dense"] or any(p not in PHASES for p in names) or names != sorted(names, key=PHASES.index) \
                or len(set(names)) != len(names):
            raise ValueError(f"phases must start with 'dense' and list {PHASES} in order, got {self.phases!r}")
        for name in ("d_model", "n_layers", "m", "top_k", "block_size", "r", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.top_k > self.m:
            raise ValueError(f"top_k ({self.top_k}) must be ≤ m ({self.m})")
        if self.m % self.block_size:
            raise ValueError(f"block_size ({self.block_size}) must divide m ({self.m})")
        if self.topk_mode not in TOPK_MODES:
            raise ValueError(f"topk_mode must be one of {TOPK_MODES}, got {self.topk_mode!r}")
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {QUANTIZE}, got {self.quantize!r}")
        if self.lth_mode not in LTH_MODES:
            raise ValueError(f"lth_mode must be one of {LTH_MODES}, got {self.lth_mode!r}")
        if not 0.0 < self.rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1], got {self.rho}")
        for name in ("sparsity", "sparsity_in"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("dense_steps", "lth_steps", "rewind_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.gumbel_tau <= 0 or self.ternary_weight < 0:
            raise ValueError("gumbel_tau must be > 0 and ternary_weight ≥ 0")

    @property
    def phase_list(self) -> list[str]:
        return self.phases.split(",")

    def kept(self, n: int, sparsity: float) -> int:
        """How many of n entries survive pruning to `sparsity` (rounded so the sparsity reached is ≥ the target)."""
        return max(1, math.floor((1.0 - sparsity) * n + 1e-9))


class Weights(NamedTuple):
    """A layer's effective weights for one call: what forward and step both use."""

    w_state: Tensor  # (m, m) block-diagonal: gated/masked, quantized, rescaled
    blocks: Tensor  # (nb, b, b) the same blocks
    w_in: Tensor  # (d, m) masked
    penalty: Tensor  # () ‖W − Q(W)‖² over the unpruned entries (0 unless ternary)


# -- the layer ------------------------------------------------------------------------------------------------------

class SSMALayer(nn.Module):
    """One SSMA block (module docstring): h (B, L, d) → the residual update (B, L, d); state (S, M, Z)."""

    def __init__(self, c: SSMAConfig):
        super().__init__()
        d, m, b, r = c.d_model, c.m, c.block_size, c.r
        nb = m // b
        self.d, self.m, self.nb, self.b, self.r, self.k = d, m, nb, b, r, c.top_k
        self.mode, self.rho, self.tau = c.topk_mode, c.rho, c.gumbel_tau
        self.ternary = c.quantize == "ternary"
        self.keep_state = c.kept(b * b, c.sparsity)  # surviving entries per W_state block (lth, dynamic)
        self.keep_in = c.kept(m, c.sparsity_in)  # surviving entries per row of W_in (lth)
        self.norm = nn.LayerNorm(d)
        self.w_state = nn.Parameter(torch.randn(nb, b, b) / math.sqrt(b))  # blocks of W_state
        self.w_in = nn.Parameter(torch.randn(d, m))  # row i: how input channel i drives its row of S
        self.b_in = nn.Parameter(torch.zeros(d, m))
        self.c_s = nn.Parameter(torch.randn(d, m) / math.sqrt(m))  # readout of S
        self.c_m = nn.Parameter(torch.randn(d, m) / math.sqrt(m))  # readout of M
        gamma = torch.linspace(0.5, 0.99, m)  # memory timescales from 2 to 100 steps (the hierarchy)
        self.gamma_logit = nn.Parameter(torch.log(gamma / (1 - gamma)))
        self.u_proj = nn.Linear(d, r, bias=False)  # U
        self.v_proj = nn.Linear(d, r, bias=False)  # V
        lam = torch.linspace(0.8, 0.99, r)
        self.lam_logit = nn.Parameter(torch.log(lam / (1 - lam)))
        self.ffn = nn.Sequential(nn.Linear(d, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, d))
        self.dropout = nn.Dropout(c.dropout)
        self.gate_logits = nn.Parameter(torch.zeros(nb * b * b))  # dynamic phase; 1-D: no weight decay
        self.register_buffer("mask_state", torch.ones(nb, b, b))  # lottery-ticket masks (1 = kept)
        self.register_buffer("mask_in", torch.ones(d, m))
        self.register_buffer("served_w_state", torch.zeros(m, m))  # the effective weights of an export_form copy
        self.register_buffer("served_w_in", torch.zeros(d, m))

    def state_spec(self) -> list[StateField]:
        return [StateField("S", (self.d, self.m)), StateField("M", (self.d, self.m)), StateField("Z", (self.r, self.d))]

    # -- weights ---------------------------------------------------------------------------------------------------
    def state_gate(self, dynamic: bool, sample: bool) -> Tensor:
        """W_state's mask (nb, b, b), values exactly 0 / 1: the lottery-ticket mask, or in the dynamic phase the top
        keep_state gate logits per block (Gumbel-perturbed with a straight-through softmax gradient when sampling)."""
        if not dynamic:
            return self.mask_state
        logits = self.gate_logits.view(self.nb, self.b * self.b)
        if not sample:
            return topk_mask(logits, self.keep_state).to(logits.dtype).view(self.nb, self.b, self.b)
        u = torch.rand_like(logits).clamp(1e-9, 1.0 - 1e-9)
        z = (logits - torch.log(-torch.log(u))) / self.tau  # Gumbel(0, 1) noise
        hard = topk_mask(z, self.keep_state).to(z.dtype)
        soft = torch.softmax(z, -1) * self.keep_state
        return (hard + (soft - soft.detach())).view(self.nb, self.b, self.b)  # value: hard; gradient: soft

    def weights(self, dynamic: bool, sample: bool) -> Weights:
        """The effective weights: gate, then (ternary) quantization with a straight-through gradient, then the rho
        rescale per block. Parameters only: export_form stores the result, so a bundle's step graph has them as
        constants (the ONNX exporter's constant folding does not reach through abs / sign / topk)."""
        gate = self.state_gate(dynamic, sample)
        w = self.w_state * gate  # (nb, b, b)
        penalty = w.new_zeros(())
        if self.ternary:
            q = ternary_quantize(w.detach(), (gate.detach() != 0).to(w.dtype))
            penalty = ((w - q) ** 2).sum()
            w = q + (w - w.detach())  # exactly q in value, identity gradient (straight-through)
        col = w.abs().sum(-2).amax(-1)  # (nb,) largest column absolute sum of each block
        scale = torch.where(col > self.rho, self.rho / col.clamp_min(self.rho), torch.ones_like(col))  # exactly 1
        w = w * scale.view(-1, 1, 1)  # when the block is within bounds (rho / rho need not round to 1)
        return Weights(block_diagonal(w), w, self.w_in * self.mask_in, penalty)

    def served(self) -> Weights:
        """The stored effective weights of a frozen (export_form) model."""
        nb, b = self.nb, self.b
        blocks = torch.diagonal(self.served_w_state.view(nb, b, nb, b), dim1=0, dim2=2).permute(2, 0, 1)
        return Weights(self.served_w_state, blocks, self.served_w_in, self.served_w_in.new_zeros(()))

    # -- the recurrence --------------------------------------------------------------------------------------------
    def select(self, a: Tensor) -> Tensor:
        """TopK_k(ReLU(a)) per row: a (..., m) → (..., m) with at most k non-zeros (module docstring)."""
        if self.k >= self.m:
            return torch.relu(a)
        if self.mode == "shift":
            t = torch.topk(a, self.k + 1, dim=-1).values[..., self.k :].clamp_min(0.0)  # (..., 1) (k+1)-th largest
            return torch.relu(a - t)
        v = torch.relu(a)
        return torch.where(topk_mask(v, self.k), v, torch.zeros_like(v))

    def cell(self, S: Tensor, inj: Tensor, w_state: Tensor) -> Tensor:
        """One time step of the non-linear recurrence, shared by forward and step: S (B, d, m), inj = diag(u) W_in +
        b_in (B, d, m) → S_t = TopK_k(ReLU(S W_state + inj))."""
        return self.select(S @ w_state + inj)  # (B, d, m)

    def forward(self, h: Tensor, state: State, w: Weights) -> tuple[Tensor, State]:
        """h (B, L, d), state (S (B, d, m), M (B, d, m), Z (B, r, d)) → update (B, L, d), final state."""
        S, M0, Z0 = state
        u = self.norm(h)  # (B, L, d)
        inj = u.unsqueeze(-1) * w.w_in + self.b_in  # (B, L, d, m)
        Ss = []
        for inj_t in inj.unbind(1):  # non-linear: sequential (the step's own cell); unbind, not inj[:, t]: one
            # backward node for all steps instead of a full-size zero gradient per step
            S = self.cell(S, inj_t, w.w_state)
            Ss.append(S)
        S_seq = torch.stack(Ss, 1)  # (B, L, d, m)
        gamma = torch.sigmoid(self.gamma_logit)  # (m,)
        M_seq = linear_scan(gamma.view(1, 1, 1, -1), (1 - gamma) * S_seq, M0, dim=1)  # (B, L, d, m), linear: a scan
        z = (S_seq * self.c_s).sum(-1) + (M_seq * self.c_m).sum(-1)  # (B, L, d)
        lam = torch.sigmoid(self.lam_logit)  # (r,)
        kv = ((1 - lam) * self.v_proj(u)).unsqueeze(-1) * u.unsqueeze(-2)  # (B, L, r, d)
        Z_seq = linear_scan(lam.view(1, 1, -1, 1), kv, Z0, dim=1)  # (B, L, r, d)
        ell = (self.u_proj(u).unsqueeze(-1) * Z_seq).sum(-2)  # (B, L, d)
        return self.dropout(self.ffn(z + ell)), (S, M_seq[:, -1], Z_seq[:, -1])

    def step(self, h: Tensor, state: State, w: Weights) -> tuple[Tensor, State]:
        """h (B, d), state (S, M, Z) → update (B, d), new state. Pure."""
        S, M, Z = state
        u = self.norm(h)  # (B, d)
        S = self.cell(S, u.unsqueeze(-1) * w.w_in + self.b_in, w.w_state)
        gamma = torch.sigmoid(self.gamma_logit)  # (m,)
        M = gamma * M + (1 - gamma) * S  # (B, d, m)
        z = (S * self.c_s).sum(-1) + (M * self.c_m).sum(-1)  # (B, d)
        lam = torch.sigmoid(self.lam_logit)
        Z = lam.view(-1, 1) * Z + ((1 - lam) * self.v_proj(u)).unsqueeze(-1) * u.unsqueeze(-2)  # (B, r, d)
        ell = (self.u_proj(u).unsqueeze(-1) * Z).sum(-2)  # (B, d)
        return self.dropout(self.ffn(z + ell)), (S, M, Z)


# -- the model ------------------------------------------------------------------------------------------------------

@register("ssma")
class SSMA(StreamingModel):
    """Input projection → n_layers SSMA blocks (residual) → LayerNorm → ForecastHead. x (B, L, D_in) → (B, L, H, K)."""

    sequential_forward = True  # the state matrix's top-k recurrence is a loop over time

    Config = SSMAConfig

    def __init__(self, config: SSMAConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = nn.Linear(c.d_input, c.d_model)
        self.layers = nn.ModuleList(SSMALayer(c) for _ in range(c.n_layers))
        self.final_norm = nn.LayerNorm(c.d_model)
        self.head = ForecastHead(c.d_model, c.horizon, c.n_targets, c.target_index)
        self.register_buffer("phase", torch.zeros((), dtype=torch.long))  # index into PHASES
        self.register_buffer("phase_start", torch.zeros((), dtype=torch.long))  # step the current phase began
        self.register_buffer("rewind_at", torch.zeros((), dtype=torch.long))  # step the rewind copy is from
        self.register_buffer("frozen", torch.zeros((), dtype=torch.long))  # 1: serve the stored weights (export_form)
        self.register_buffer("rewind_copy", nn.utils.parameters_to_vector(self.parameters()).detach().clone())

    # -- contract --------------------------------------------------------------------------------------------------
    def state_spec(self) -> list[StateField]:
        return [StateField(f"layer{i}.{f.name}", f.shape) for i, layer in enumerate(self.layers)
                for f in layer.state_spec()]

    @property
    def phase_name(self) -> str:
        return PHASES[int(self.phase)]

    def weights(self, sample: bool | None = None) -> list[Weights]:
        """Every layer's effective weights for this call; Gumbel gates sampled when `sample` (default: in training).
        A frozen model (export_form) returns its stored ones."""
        if int(self.frozen):
            if self.training:
                raise RuntimeError("a frozen SSMA (export_form) serves fixed weights; train the model it came from")
            return [layer.served() for layer in self.layers]
        dynamic = self.phase_name == "dynamic"
        sample = self.training if sample is None else sample
        return [layer.weights(dynamic, sample) for layer in self.layers]

    def _run(self, x: Tensor, state: State | None) -> tuple[Tensor, State, Tensor]:
        """x (B, L, D_in) → y (B, L, H, K), final state, the summed ternary penalty."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        ws = self.weights()
        h = self.encoder(x)  # (B, L, d)
        new: list[Tensor] = []
        for layer, s, w in zip(self.layers, split_state(state, [3] * len(self.layers)), ws):
            dh, s = layer(h, s, w)
            h = h + dh
            new.extend(s)
        penalty = torch.stack([w.penalty for w in ws]).sum()
        return self.head(self.final_norm(h), x), tuple(new), penalty

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        y, new, _ = self._run(x, state)
        return y, new

    def training_forward(self, x: Tensor, state: State | None = None,
                         last_only: bool = False) -> tuple[Tensor, dict[str, Tensor], State]:
        """The forecasts and, with quantize = "ternary", the auxiliary term ternary_weight · Σ ‖W − Q(W)‖²."""
        y, new, penalty = self._run(x, state)
        aux = {"ternary_penalty": self.config.ternary_weight * penalty} if self.config.quantize == "ternary" else {}
        return (y[:, -1:] if last_only else y), aux, new

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), state → y_t (B, H, K), new state. Pure."""
        h = self.encoder(x_t)  # (B, d)
        new: list[Tensor] = []
        for layer, s, w in zip(self.layers, split_state(state, [3] * len(self.layers)), self.weights()):
            dh, s = layer.step(h, s, w)
            h = h + dh
            new.extend(s)
        return self.head(self.final_norm(h), x_t), tuple(new)

    # -- the schedule ----------------------------------------------------------------------------------------------
    def training_event(self, step: int, plateau: bool) -> dict[str, Any] | None:
        """Save the rewind copy at rewind_step; move to the next phase of config.phases when the current one has run
        its budget (dense_steps / lth_steps, 0: no budget) or training plateaus. The lottery-ticket event asks for an
        optimizer reset (the weights were rewound)."""
        c = self.config
        event: dict[str, Any] | None = None
        phases = c.phase_list
        current = self.phase_name
        if current == "dense" and step == c.rewind_step and "lth" in phases:
            self._save_rewind(step)
            event = {"rewind_point": step}
        nxt = phases[phases.index(current) + 1] if phases.index(current) + 1 < len(phases) else None
        if nxt is None:
            return event
        budget = c.dense_steps if current == "dense" else c.lth_steps
        if not (plateau or (budget > 0 and step - int(self.phase_start) >= budget)):
            return event
        info = self._prune_and_rewind() if nxt == "lth" else self._start_dynamic()
        self.phase.fill_(PHASES.index(nxt))
        self.phase_start.fill_(step)
        return {"phase": nxt, **info, "w_state_sparsity": self.describe()["w_state_sparsity"]}

    @torch.no_grad()
    def _save_rewind(self, step: int) -> None:
        self.rewind_copy.copy_(nn.utils.parameters_to_vector(self.parameters()))
        self.rewind_at.fill_(step)

    @torch.no_grad()
    def _prune_and_rewind(self) -> dict[str, Any]:
        """Magnitude masks of the trained W_state (per block) and W_in (per row), or random ones; then every parameter
        back to the rewind copy (unless lth_mode is "finetune")."""
        mode = self.config.lth_mode
        for i, layer in enumerate(self.layers):
            ws, wi = layer.w_state.abs(), layer.w_in.abs()
            if mode == "random":
                g = torch.Generator().manual_seed(1000 + i)
                ws, wi = (torch.rand(t.shape, generator=g).to(t) for t in (ws, wi))
            flat = ws.reshape(layer.nb, layer.b * layer.b)
            layer.mask_state.copy_(topk_mask(flat, layer.keep_state).reshape_as(ws))
            layer.mask_in.copy_(topk_mask(wi, layer.keep_in))
        if mode != "finetune":
            offset = 0
            for p in self.parameters():
                p.copy_(self.rewind_copy[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        return {"reset_optimizer": mode != "finetune", "lth_mode": mode,
                "rewound_to_step": int(self.rewind_at) if mode != "finetune" else None}

    @torch.no_grad()
    def _start_dynamic(self) -> dict[str, Any]:
        """Gate logits whose hard top-k is the current mask (the lottery ticket, or magnitude pruning from dense):
        kept entries GATE_MARGIN above pruned ones, ordered within by |W|."""
        for layer in self.layers:
            mag = layer.w_state.abs()
            rank = mag / (mag.amax() * (1 + 1e-6) + 1e-30)  # [0, 1)
            layer.gate_logits.copy_((GATE_MARGIN * (layer.mask_state + rank)).reshape(-1))
        return {"gumbel_tau": self.config.gumbel_tau}

    # -- facts -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def describe(self) -> dict[str, Any]:
        """Phase, W_state / W_in sparsity (fraction of zeros of the served weights, within W_state's blocks),
        quantization and distinct W_state values (all layers; and the most in any block), state size."""
        ws = self.weights(sample=False)
        blocks = torch.stack([w.blocks for w in ws])  # (n_layers, nb, b, b)
        w_in = torch.stack([w.w_in for w in ws])
        per_block = max(int(torch.unique(b).numel()) for b in blocks.flatten(0, 1))
        return {
            "phase": self.phase_name,
            "phases": self.config.phases,
            "w_state_sparsity": round(float((blocks == 0).to(torch.float64).mean()), 6),
            "w_in_sparsity": round(float((w_in == 0).to(torch.float64).mean()), 6),
            "quantize": self.config.quantize,
            "ternary": self.config.quantize == "ternary",
            "w_state_distinct_values": int(torch.unique(blocks).numel()),
            "w_state_distinct_values_per_block": per_block,
            "rewound_to_step": int(self.rewind_at),
            "top_k": f"{self.config.top_k} of {self.config.m} per row ({self.config.topk_mode})",
            "state_bytes_per_cell": self.state_bytes_per_cell(),
        }

    def export_form(self) -> SSMA:
        """A frozen copy (eval mode) that serves its effective weights as stored tensors: gates, ternary quantizer and
        rescale run once here, so the exported step graph carries W_state's ternary values as constants and no
        quantizer. Same function, bit for bit; same state_dict keys (a bundle's weights load into a fresh model)."""
        served = copy.deepcopy(self).eval()
        with torch.no_grad():
            for layer, w in zip(served.layers, served.weights(sample=False)):
                layer.served_w_state.copy_(w.w_state)
                layer.served_w_in.copy_(w.w_in)
            served.frozen.fill_(1)
        return served


def SSMA_Model(**hyperparameters: Any) -> StreamingModel:
    """The seed's entry point under its own names: `SSMA_Model(input_dim=4, output_dim=1, d_model=64, num_layers=4,
    r=8, m=16, top_k=4, horizon=12)`; create_model maps num_layers / input_dim / output_dim to the config's fields."""
    return create_model("ssma", **hyperparameters)


__all__ = ["SSMA", "SSMAConfig", "SSMALayer", "SSMA_Model", "block_diagonal", "ternary_quantize", "topk_mask"]
