"""The streaming model contract shared by every model of the zoo.

A model maps normalized KPIs to multi-horizon forecasts in two equivalent ways:

- parallel: `forward(x)` with x (B, L, D_in) → y (B, L, H, K); y[:, t] depends only on x[:, :t+1]
  (forecasts of K targets for t+1 … t+H). `forward_with_state(x, state)` also takes an initial
  state and returns the state after the last position, so windows can be chained.
- recurrent: `step(x_t, state)` with x_t (B, D_in) → (y_t (B, H, K), new_state). A pure function
  (no in-place writes, no caches on the module) so it traces to ONNX. The state is a tuple of real
  tensors with the batch first, described per cell by `state_spec()`.

Running `step` over a sequence reproduces `forward` (float64 ≤ 1e-10, float32 ≤ 1e-4 relative).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]
NORMALIZATIONS = ("none", "causal")  # ModelConfig.normalization (models.framing)
CHANNEL_MODES = ("mixed", "independent")  # ModelConfig.channels (models.framing)


@dataclass(frozen=True)
class StateField:
    """One tensor of a model's recurrent state: its name and its shape for a single cell."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class ModelConfig:
    """Fields every model shares. Subclasses add their hyperparameters; all serialize to JSON.

    target_index: input columns that are the K targets. When set, the head forecasts the change
    from the last observed target value (a last-value residual), which every model benefits from.
    normalization ("none" | "causal", rate norm_rate, learnable affine norm_affine) and channels
    ("mixed" | "independent"): the input framing every model can have (models.framing).
    """

    d_input: int = 1
    n_targets: int = 1
    horizon: int = 1
    target_index: tuple[int, ...] | None = None
    dropout: float = 0.0
    normalization: str = "none"
    norm_rate: float = 0.02
    norm_affine: bool = True
    channels: str = "mixed"

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {self.channels!r}")
        if not 0.0 < self.norm_rate <= 1.0:
            raise ValueError(f"norm_rate must be in (0, 1], got {self.norm_rate}")
        framed = self.normalization != "none" or self.channels != "mixed"
        if framed and self.target_index is None and self.d_input == self.n_targets:
            self.target_index = tuple(range(self.n_targets))  # every input column is a target
        if self.target_index is not None:
            self.target_index = tuple(int(i) for i in self.target_index)
        for name in ("d_input", "n_targets", "horizon"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.target_index is not None:
            if len(self.target_index) != self.n_targets:
                raise ValueError(f"target_index has {len(self.target_index)} entries, n_targets is {self.n_targets}")
            if any(not 0 <= i < self.d_input for i in self.target_index):
                raise ValueError(f"target_index {self.target_index} out of range for d_input={self.d_input}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def require_targets(self, why: str) -> None:
        """For models that read the target columns themselves: every input a target when target_index is
        unset and d_input == n_targets; else a ValueError naming the class and `why` it needs them."""
        if self.target_index is not None:
            return
        if self.d_input != self.n_targets:
            raise ValueError(f"{type(self).__name__}.target_index is required when d_input ({self.d_input}) ≠ "
                             f"n_targets ({self.n_targets}): {why}, so it must know which input columns the "
                             "targets are")
        self.target_index = tuple(range(self.n_targets))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))  # tuples → lists: the JSON form

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)


def mark_ssm_param(p: nn.Parameter, lr: float | None = None) -> nn.Parameter:
    """Tag an SSM parameter (A, Δt, B/C of a kernel) for its own optimizer group: no weight decay,
    learning rate capped (S4 reference practice: these are sensitive to large steps)."""
    p._ssm_optim = {"lr": lr}  # type: ignore[attr-defined]
    return p


class StreamingModel(nn.Module):
    """Base class of every forecaster. Subclasses set `config` and implement the three abstract methods."""

    config: ModelConfig
    name: ClassVar[str] = ""  # registry name, set by @register
    # True when the parallel mode is a Python loop over time (a nonlinear recurrence: SSMA, NSM), so its cost grows
    # per position at the interpreter's pace (`ms3m bench train` reports it; short tests train such models on
    # shorter crops)
    sequential_forward: ClassVar[bool] = False

    # -- to implement -------------------------------------------------------------------------
    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D_in), optional initial state → y (B, L, H, K) and the state after x[:, -1]."""
        raise NotImplementedError

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), state → y_t (B, H, K), new state. Pure: traces to ONNX."""
        raise NotImplementedError

    def state_spec(self) -> list[StateField]:
        """Names and per-cell shapes of the state tuple, in order."""
        raise NotImplementedError

    # -- provided -----------------------------------------------------------------------------
    def training_forward(self, x: Tensor, state: State | None = None,
                         last_only: bool = False) -> tuple[Tensor, dict[str, Tensor], State]:
        """Forecasts for a training batch from `state` (zero if None), auxiliary terms and the final state (for
        truncated BPTT). An auxiliary term is a scalar tensor to add (MS³M: load balancing, the objective-weighted
        compute cost) or a pair (weight, member forecasts (B, L, E, H, K)) whose error against the target is
        added with that weight (MS³M: each expert's own forecast); see training.trainer.training_loss.
        last_only: forecasts (and member forecasts) of the last position only, (B, 1, H, K) (window protocol)."""
        y, new_state = self.forward_with_state(x, state)
        return (y[:, -1:] if last_only else y), {}, new_state

    def forward_last(self, x: Tensor, state: State | None = None) -> Tensor:
        """x (B, L, D_in) → the forecast at the last position, (B, H, K): `forward(x, state)[:, -1]`. Models whose
        forecast heads dominate the cost (MS³M) compute that position only."""
        return self.forward(x, state)[:, -1]

    def forward(self, x: Tensor, state: State | None = None) -> Tensor:
        """x (B, L, D_in) → y (B, L, H, K). Subclasses may override with a faster stateless path."""
        return self.forward_with_state(x, state)[0]

    def training_event(self, step: int, plateau: bool) -> dict[str, Any] | None:
        """The model's own training schedule (SSMA's dense → lottery-ticket → dynamic phases, NSM's pruning), called
        by the trainer after each optimizer step: `step` steps done, `plateau` when validation has not improved for
        `patience` evaluations. Returns None, or an event the trainer logs (a JSON-able dict, written to
        history.jsonl). An event with "phase" starts a new training phase: the trainer restarts early stopping and
        the best checkpoint (the result is the last phase's best) and, with "reset_optimizer": True (after a
        rewind of the weights), clears AdamW's moments. Default: no schedule (None; a plateau stops training)."""
        return None

    def export_form(self) -> StreamingModel:
        """The model a bundle stores and serves: the same function in its cheapest form (NSM: pruned state
        nodes compacted away). Default: the model itself."""
        return self

    def describe(self) -> dict[str, Any]:
        """Facts about the trained model a bundle records under "model_info" (sparsity, quantization, active
        state nodes). Default: none."""
        return {}

    def init_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        """Zero state for `batch` cells, in the model's parameter dtype unless given."""
        ref = next(self.parameters(), None)
        device = device or (ref.device if ref is not None else None)
        dtype = dtype or (ref.dtype if ref is not None else torch.float32)
        return tuple(torch.zeros((batch, *f.shape), device=device, dtype=dtype) for f in self.state_spec())

    def state_bytes_per_cell(self, bytes_per_value: int = 4) -> int:
        return sum(f.numel for f in self.state_spec()) * bytes_per_value

    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float = 1e-3) -> list[dict[str, Any]]:
        """AdamW groups: weights with decay; biases, norms and embeddings without; SSM parameters
        (marked with mark_ssm_param) without decay and with lr = min(lr, their own cap or ssm_lr)."""
        decay, no_decay, ssm = [], [], []
        for _, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if hasattr(p, "_ssm_optim"):
                ssm.append(p)
            elif p.ndim >= 2:
                decay.append(p)
            else:
                no_decay.append(p)
        groups = [
            {"params": decay, "weight_decay": weight_decay, "lr": lr, "group": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr, "group": "no_decay"},
        ]
        by_lr: dict[float, list[nn.Parameter]] = {}
        for p in ssm:
            cap = p._ssm_optim["lr"] or ssm_lr
            by_lr.setdefault(min(lr, cap), []).append(p)
        for group_lr, params in sorted(by_lr.items()):
            groups.append({"params": params, "weight_decay": 0.0, "lr": group_lr, "group": "ssm"})
        return [g for g in groups if g["params"]]

    def ssm_poles(self) -> Tensor | None:
        """Discrete-time poles Ā of every SSM layer, flattened (complex), or None for non-SSM models.
        Stability by construction means |Ā| < 1 always."""
        poles = [m.discrete_poles().reshape(-1) for m in self.modules()
                 if m is not self and hasattr(m, "discrete_poles")]
        return torch.cat(poles) if poles else None


class ForecastHead(nn.Module):
    """Multi-horizon head: features (..., d_model) → forecasts (..., H, K).

    With target_index set, adds the last observed (normalized) target values, so the network
    learns the change from the last value rather than the level.
    """

    def __init__(self, d_model: int, horizon: int, n_targets: int, target_index: tuple[int, ...] | None = None):
        super().__init__()
        self.horizon, self.n_targets = horizon, n_targets
        self.proj = nn.Linear(d_model, horizon * n_targets)
        self.target_index = list(target_index) if target_index is not None else None

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        """h (..., d_model) features, x (..., D_in) inputs at the same positions → (..., H, K)."""
        y = self.proj(h)  # (..., H·K), horizon-major
        if self.target_index is not None:
            # tiled along the flat axis rather than broadcast over H: same sums, and onnxruntime
            # broadcasts along a tiny inner axis several times slower
            last = x[..., self.target_index]  # (..., K)
            y = y + last.repeat(*([1] * (last.dim() - 1)), self.horizon)
        if y.dim() == 2:  # a step: a constant reshape (unflatten exports as shape arithmetic)
            return y.view(-1, self.horizon, self.n_targets)
        return y.unflatten(-1, (self.horizon, self.n_targets))  # (..., H, K)


def split_state(state: State, sizes: list[int]) -> list[State]:
    """Split a flat state tuple into consecutive groups of the given sizes."""
    out, i = [], 0
    for n in sizes:
        out.append(tuple(state[i : i + n]))
        i += n
    if i != len(state):
        raise ValueError(f"state has {len(state)} tensors, expected {i}")
    return out


def check_state(model: StreamingModel, state: State, batch: int) -> None:
    """Raise ValueError when `state` does not match the model's state spec for `batch` cells."""
    spec = model.state_spec()
    if len(state) != len(spec):
        raise ValueError(f"{model.name}: state has {len(state)} tensors, the model's spec has {len(spec)}")
    for f, t in zip(spec, state):
        if tuple(t.shape) != (batch, *f.shape):
            raise ValueError(f"{model.name}: state '{f.name}' has shape {tuple(t.shape)}, expected {(batch, *f.shape)}")


__all__ = [
    "ForecastHead",
    "ModelConfig",
    "State",
    "StateField",
    "StreamingModel",
    "check_state",
    "field",
    "mark_ssm_param",
    "split_state",
]
